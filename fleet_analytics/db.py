"""PostgreSQL for the fleet service: named SQL files, and numbered forward-only migrations.

Every statement is a file under ``sql/fleet/`` (queries) or ``sql/fleet/migrations/`` (``NNNN_slug.sql``).
:func:`migrate` applies the files not yet applied, in order, each in its own transaction together with
its row in ``schema_migrations`` (version, name, sha256), under an advisory lock so that two migrators
never interleave. It refuses to run when an applied file was edited since or is missing: migrations
are forward only.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg2

log = logging.getLogger(__name__)

SQL_DIR: Final = Path(__file__).resolve().parent.parent / "sql" / "fleet"
MIGRATIONS_DIR: Final = SQL_DIR / "migrations"
MIGRATION_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """The migrations cannot be applied; the message names the file and what to do."""


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


@functools.cache
def load_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def find_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in order; a file name out of pattern or a repeated number is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_slug.sql (lower case); rename it")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version:04d} is also {found[version].name}; renumber one")
        found[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    return [found[version] for version in sorted(found)]


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration; returns the names applied (empty when up to date)."""
    migrations = find_migrations(directory)
    applied_now: list[str] = []
    try:
        conn = psycopg2.connect(dsn)
    except psycopg2.OperationalError as exc:
        raise MigrationError(
            f"cannot connect to PostgreSQL: {one_line(exc)}; check FLEET_DATABASE_URL"
        ) from None
    try:
        with conn, conn.cursor() as cur:
            cur.execute(load_sql("migrations_lock"))
            cur.execute(load_sql("migrations_table"))
            cur.execute(load_sql("migrations_applied"))
            applied: dict[int, tuple[str, str]] = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
        by_version = {migration.version: migration for migration in migrations}
        for version, (name, checksum) in sorted(applied.items()):
            current = by_version.get(version)
            if current is None:
                raise MigrationError(
                    f"migration {name} was applied but its file is gone; "
                    "restore it (migrations are forward only)"
                )
            if current.checksum != checksum:
                raise MigrationError(
                    f"migration {name} was edited after it was applied; restore it and put the change in a "
                    "new migration"
                )
        for migration in migrations:
            if migration.version in applied:
                continue
            with conn, conn.cursor() as cur:  # one transaction per migration, with its record
                cur.execute(load_sql("migrations_lock"))
                cur.execute(load_sql("migrations_applied"))
                if any(row[0] == migration.version for row in cur.fetchall()):
                    continue  # another migrator applied it meanwhile
                try:
                    cur.execute(migration.sql)
                except psycopg2.Error as exc:
                    raise MigrationError(f"migration {migration.name} failed: {one_line(exc)}") from None
                params: dict[str, Any] = {
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                }
                cur.execute(load_sql("migrations_record"), params)
            log.info("applied migration %s", migration.name)
            applied_now.append(migration.name)
    finally:
        conn.close()
    return applied_now
