"""PostgreSQL for the fleet service: named SQL files, and numbered forward-only migrations.

Every statement is a file under ``sql/fleet/`` (queries) or ``sql/fleet/migrations/`` (``NNNN_slug.sql``).
:func:`migrate` applies the files not yet applied, in order, each in its own transaction together with
its row in ``schema_migrations`` (version, name, sha256), under an advisory lock so that two migrators
never interleave. It refuses to run when an applied file was edited since or is missing: migrations
are forward only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg2
import psycopg2.extensions

log = logging.getLogger(__name__)

SQL_DIR: Final = Path(__file__).resolve().parent.parent / "sql" / "fleet"
MIGRATIONS_DIR: Final = SQL_DIR / "migrations"
MIGRATION_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """The migrations cannot be applied; the message names the file and what to do."""


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached or gave a transient failure (connection lost, timeout, deadlock,
    shutting down): the request is not acknowledged and may be retried."""


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


def _connect_for_migrations(dsn: str) -> psycopg2.extensions.connection:
    try:
        return psycopg2.connect(dsn, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        raise MigrationError(
            f"cannot connect to PostgreSQL: {one_line(exc)}; check FLEET_DATABASE_URL"
        ) from None


def pending(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """The names of the migrations not applied yet (all of them on an empty database)."""
    conn = _connect_for_migrations(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(load_sql("migrations_table_exists"))
            row = cur.fetchone()
            applied: set[int] = set()
            if row is not None and row[0]:
                cur.execute(load_sql("migrations_applied"))
                applied = {int(version) for version, _name, _checksum in cur.fetchall()}
    finally:
        conn.close()
    return [migration.name for migration in find_migrations(directory) if migration.version not in applied]


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration; returns the names applied (empty when up to date)."""
    migrations = find_migrations(directory)
    applied_now: list[str] = []
    conn = _connect_for_migrations(dsn)
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


# failures that say nothing about the request: the server is down, restarting, overloaded or timed out
TRANSIENT: Final = (psycopg2.OperationalError, psycopg2.InterfaceError)


class Database:
    """A pool of PostgreSQL connections for one process: connections are opened on demand, kept idle for
    reuse, at most ``pool_max`` at a time; the pool is rebuilt after a fork (gunicorn forks its workers
    after the app is created, and a connection must never be shared across processes)."""

    def __init__(self, dsn: str, *, pool_max: int = 8, statement_timeout_ms: int = 60_000) -> None:
        self.dsn = dsn
        self.pool_max = pool_max
        self.statement_timeout_ms = statement_timeout_ms
        self._idle: list[psycopg2.extensions.connection] = []
        self._slots = threading.BoundedSemaphore(pool_max)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.wait_seconds = 30.0  # for a free connection, before answering "busy"

    def _take(self) -> psycopg2.extensions.connection:
        if self._pid != os.getpid():  # forked: never use the parent's connections (psycopg2 does not
            with self._lock:  # end the parent's session when a child frees one)
                self._idle = []
                self._slots = threading.BoundedSemaphore(self.pool_max)
                self._pid = os.getpid()
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise DatabaseUnavailable(f"all {self.pool_max} PostgreSQL connections stayed busy")
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None and not conn.closed:
            return conn
        try:
            return psycopg2.connect(
                self.dsn,
                connect_timeout=5,
                application_name="fleet_analytics",
                options=f"-c statement_timeout={self.statement_timeout_ms}",
            )
        except TRANSIENT as exc:
            self._slots.release()
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {one_line(exc)}") from None

    def _give_back(self, conn: psycopg2.extensions.connection, *, discard: bool) -> None:
        if discard or conn.closed:
            with contextlib.suppress(psycopg2.Error):
                conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        self._slots.release()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """A pooled connection; DatabaseUnavailable for transient failures (the connection is then
        discarded, not returned to the pool)."""
        conn = self._take()
        discard = False
        try:
            yield conn
        except TRANSIENT as exc:
            discard = True
            raise DatabaseUnavailable(f"PostgreSQL failed: {one_line(exc)}") from None
        finally:
            if not conn.closed and conn.status != psycopg2.extensions.STATUS_READY:
                try:
                    conn.rollback()
                except TRANSIENT:
                    discard = True
            self._give_back(conn, discard=discard)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg2.extensions.cursor]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        with self.connection() as conn, conn, conn.cursor() as cur:
            yield cur

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        if self._pid == os.getpid():
            for conn in idle:
                with contextlib.suppress(psycopg2.Error):
                    conn.close()
