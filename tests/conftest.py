"""Shared fixtures. Kernel tests need root, BTF and a BPF toolchain; where any is missing they are
skipped with the reason, never silently."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def kernel_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "kernel capture needs root: run the suite as root (CI does)"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "this kernel has no BTF (/sys/kernel/btf/vmlinux missing)"
    for tool in ("clang", "bpftool"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (apt-get install clang llvm libbpf-dev bpftool)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = kernel_skip_reason()
    if reason is None:
        return
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def bpf_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The BPF object, built once per test session."""
    from extension.bpf.build import build_object  # noqa: PLC0415

    return build_object(tmp_path_factory.mktemp("bpf"))


def read_rows(database: Path, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
    """Read the endpoint database from outside the store, as another process would."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    path.mkdir()
    yield path


# -- PostgreSQL for the fleet tests: the embedded server (or FLEET_TEST_DATABASE_URL), one per session,
# and a fresh database per test.


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    external = os.environ.get("FLEET_TEST_DATABASE_URL")
    if external:
        yield external
        return
    directory = Path(tempfile.mkdtemp(prefix="fleet-pg-", dir="/tmp"))
    try:
        from fleet_analytics.embedded import EmbeddedPostgres  # noqa: PLC0415

        with EmbeddedPostgres(directory) as pg:
            yield pg.dsn
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def dsn(server_dsn: str) -> Iterator[str]:
    """A fresh database per test on the shared server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    import psycopg2  # noqa: PLC0415 - only the fleet tests need it

    admin = psycopg2.connect(server_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    database_dsn = _database_url(server_dsn, name)
    try:
        yield database_dsn
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def _database_url(server_dsn: str, name: str) -> str:
    base, _, query = server_dsn.partition("?")
    return base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def migrated_template(server_dsn: str) -> Iterator[str]:
    """A database with every shipped migration applied, used as the template of `fleet_dsn`."""
    import psycopg2  # noqa: PLC0415

    from fleet_analytics.db import migrate  # noqa: PLC0415

    name = f"tmpl_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        migrate(_database_url(server_dsn, name))
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def fleet_dsn(server_dsn: str, migrated_template: str) -> Iterator[str]:
    """A fresh, migrated database per test (a copy of the template: fast)."""
    from tests.fleet_helpers import database_copy  # noqa: PLC0415 - only the fleet tests need it

    with database_copy(server_dsn, migrated_template) as dsn:
        yield dsn
