"""Shared fixtures. Kernel tests need root, BTF and a BPF toolchain; where any is missing they are
skipped with the reason, never silently."""

from __future__ import annotations

import os
import shutil
import sqlite3
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
