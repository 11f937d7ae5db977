"""The endpoint's modules on a Python that looks like Windows': ``sys.platform`` is ``win32``, the
POSIX-only modules (fcntl, pwd, grp, termios, resource) and pyroute2 are absent, ``os.geteuid`` does
not exist, and pywin32's modules (which requirements.txt installs on Windows only) are stand-ins.
Every module the agent and the extension load there must import, and the settings must load. Also:
the install steps' pins in docs/windows.md are the pins of requirements.txt."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODULES = (
    "extension.settings",
    "extension.enrich",
    "extension.enrich_windows",
    "extension.collector",
    "extension.netstate",
    "extension.netstate_windows",
    "extension.sources.etw",
    "extension.sources.etw_win32",
    "extension.sources.etw_dns",
    "extension.windows_files",
    "extension.store",
    "extension.spool",
    "extension.forwarder",
    "extension.uplink",
    "extension.results",
    "extension.osquery_plugins",
    "extension.osquery_logger",
    "extension.osquery_main",
    "extension.__main__",
)

PROBE = """
import importlib, os, sys, types
import sqlite3, socket, ssl, ctypes, logging, json, threading, hashlib, ipaddress, struct, tomllib
for name in ("fcntl", "pwd", "grp", "termios", "resource", "pyroute2"):
    sys.modules[name] = None  # import fails as on Windows
for name in ("win32event", "win32pipe", "win32file", "win32api", "winerror", "pywintypes"):
    sys.modules[name] = types.ModuleType(name)  # pywin32, installed on Windows by requirements.txt
sys.platform = "win32"
del os.geteuid
for name, value in (("PROGRAMDATA", "C:\\\\ProgramData"), ("PROGRAMW6432", "C:\\\\Program Files")):
    os.environ.setdefault(name, value)  # always set on Windows x64; osquery-python reads both
failed = []
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except Exception as exc:
        failed.append(f"{module}: {type(exc).__name__}: {exc}")
from extension.settings import load
settings = load(environ={"ProgramData": "D:\\\\PD"})
print("data_dir", settings.data_dir)
print("failed", failed)
"""


def test_every_endpoint_module_imports_on_a_windows_like_python() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *MODULES], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "failed []" in result.stdout, result.stdout
    assert "data_dir D:\\PD" in result.stdout and "osquery-netflow" in result.stdout


def test_a_posix_only_import_would_be_caught(tmp_path: Path) -> None:
    """The probe is not vacuous: a module importing fcntl at the top fails in it."""
    package = tmp_path / "posixonly"
    package.mkdir()
    (package / "__init__.py").write_text("import fcntl\n")
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n{PROBE}", "posixonly"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert "posixonly: ModuleNotFoundError" in result.stdout, result.stdout + result.stderr


def test_the_windows_install_pins_are_the_requirements_pins() -> None:
    requirements = (ROOT / "requirements.txt").read_text()
    endpoint = requirements.split("# Runtime (endpoint)", 1)[1].split("\n# Runtime", 1)[0]
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", endpoint, flags=re.MULTILINE))
    assert {"dnspython", "osquery", "thrift", "pywin32"} <= set(pins)
    doc = (ROOT / "docs" / "windows.md").read_text()
    install = re.search(r"pip install ((?:[A-Za-z0-9_.-]+==\S+ ?)+)", doc)
    assert install is not None, "docs/windows.md has no pip install line with pins"
    documented = dict(item.split("==") for item in install.group(1).split())
    linux_only = {"pyroute2"}
    assert documented == {name: version for name, version in pins.items() if name not in linux_only}
