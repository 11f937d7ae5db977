"""Fleet-side migrations on a real PostgreSQL (the embedded one, or FLEET_TEST_DATABASE_URL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from fleet_analytics.db import MigrationError, find_migrations, migrate
from fleet_analytics.embedded import EmbeddedPostgres, EmbeddedPostgresError

ROOT = Path(__file__).resolve().parent.parent


def write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql)


def tables(dsn: str) -> set[str]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in cur.fetchall()}


def test_migrations_apply_in_order_once(dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "0002_b.sql", "ALTER TABLE a ADD COLUMN note text;")
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id integer PRIMARY KEY);")
    assert migrate(dsn, tmp_path) == ["0001_a.sql", "0002_b.sql"]
    assert migrate(dsn, tmp_path) == []  # idempotent
    assert tables(dsn) == {"a", "schema_migrations"}
    write(tmp_path, "0003_c.sql", "CREATE TABLE c (id integer);")
    assert migrate(dsn, tmp_path) == ["0003_c.sql"]


def test_a_failing_migration_leaves_nothing_behind(dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id integer);")
    write(tmp_path, "0002_bad.sql", "CREATE TABLE half (id integer); SELECT no_such_function();")
    with pytest.raises(MigrationError, match=r"migration 0002_bad\.sql failed: .*no_such_function"):
        migrate(dsn, tmp_path)
    assert tables(dsn) == {"a", "schema_migrations"}  # 0001 stays applied, 0002 left no table
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM schema_migrations")
        assert [row[0] for row in cur.fetchall()] == ["0001_a.sql"]


def test_applied_files_may_not_change_or_vanish(dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id integer);")
    migrate(dsn, tmp_path)
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id bigint);")
    with pytest.raises(MigrationError, match=r"0001_a\.sql was edited after it was applied"):
        migrate(dsn, tmp_path)
    (tmp_path / "0001_a.sql").unlink()
    with pytest.raises(MigrationError, match=r"0001_a\.sql was applied but its file is gone"):
        migrate(dsn, tmp_path)


def test_file_names(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "")
    write(tmp_path, "0001_b.sql", "")
    with pytest.raises(MigrationError, match=r"version 0001 is also 0001_a\.sql"):
        find_migrations(tmp_path)
    (tmp_path / "0001_b.sql").unlink()
    write(tmp_path, "2_Bad.sql", "")
    with pytest.raises(MigrationError, match=r"named NNNN_slug\.sql"):
        find_migrations(tmp_path)


def test_the_shipped_migrations_apply(dsn: str) -> None:
    assert migrate(dsn) == [migration.name for migration in find_migrations()]
    assert migrate(dsn) == []


def test_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(MigrationError, match=r"cannot connect to PostgreSQL: .*check FLEET_DATABASE_URL"):
        migrate("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_embedded_postgres_refuses_a_data_dir_under_root() -> None:
    with pytest.raises(EmbeddedPostgresError, match=r"cannot live under /root"):
        EmbeddedPostgres(Path("/root/fleet"))


def test_migrate_command_on_an_external_url(dsn: str) -> None:
    env = {**os.environ, "FLEET_DATABASE_URL": dsn, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "fleet_analytics", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("applied ")
    bad = subprocess.run(
        [sys.executable, "-m", "fleet_analytics", "migrate"],
        cwd=ROOT,
        env={**env, "FLEET_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: cannot connect to PostgreSQL")
    assert "Traceback" not in bad.stderr
