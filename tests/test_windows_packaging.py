"""What the endpoint does differently on Windows, checked here with the platform named explicitly:
the data directory, waiting for osqueryd's named pipe, the console script osqueryd autoloads, and
the data-directory lock (its POSIX side; msvcrt exists only on Windows)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from extension.__main__ import _lock_exclusive, osquery_entry
from extension.osquery_main import (
    ERROR_FILE_NOT_FOUND,
    ERROR_SEM_TIMEOUT,
    _pipe_problem,
    _wait_for_socket,
)
from extension.settings import default_data_dir

PIPE = "\\\\.\\pipe\\osquery.em"


def test_the_data_directory_on_windows_is_under_programdata() -> None:
    path = default_data_dir("win32", {"ProgramData": "D:\\ProgramData"})
    assert str(path).startswith("D:\\ProgramData") and path.name == "osquery-netflow"
    assert str(default_data_dir("win32", {})).startswith("C:\\ProgramData")


def test_the_data_directory_on_linux_follows_xdg_for_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert default_data_dir("linux", {"XDG_STATE_HOME": "/home/u/.st"}) == Path("/home/u/.st/osquery-netflow")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_data_dir("linux", {}) == Path("/var/lib/osquery-netflow")


class PipeServer:
    """WaitNamedPipeW's answers: no pipe yet, then busy, then an instance waiting."""

    def __init__(self, answers: list[tuple[bool, int]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    def __call__(self, name: str, timeout_ms: int) -> tuple[bool, int]:
        self.calls.append((name, timeout_ms))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_the_extension_waits_for_osqueryds_named_pipe() -> None:
    server = PipeServer([(False, ERROR_FILE_NOT_FOUND), (False, ERROR_SEM_TIMEOUT), (True, 0)])
    problem = _wait_for_socket(
        PIPE, 5, platform="win32", problem=lambda path: _pipe_problem(path, server)
    )  # fmt: skip
    assert problem is None and len(server.calls) == 3
    assert server.calls[0] == (PIPE, 100)  # the pipe name exactly as osqueryd passed it


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ((False, ERROR_FILE_NOT_FOUND), "does not exist"),
        ((False, ERROR_SEM_TIMEOUT), "is busy"),
        ((False, 5), "cannot be opened (Win32 error 5)"),
    ],
)
def test_a_missing_pipe_is_named_after_the_timeout(answer: tuple[bool, int], why: str) -> None:
    server = PipeServer([answer])
    problem = _wait_for_socket(PIPE, 0.25, platform="win32", problem=lambda path: _pipe_problem(path, server))
    assert problem is not None and why in problem and len(server.calls) >= 2


def test_on_linux_the_socket_must_be_a_unix_socket(tmp_path: Path) -> None:
    plain = tmp_path / "osquery.em"
    plain.write_text("")
    assert _wait_for_socket(str(plain), 0, platform="linux") == "is not a socket"
    assert _wait_for_socket(str(tmp_path / "nothing"), 0, platform="linux") == "does not exist"


def test_the_console_script_is_the_osquery_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["osquery-netflow-extension.exe", "--bogus"])
    assert osquery_entry() == 2  # osqueryd's flags only, as `python -m extension osquery`
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert 'osquery-netflow-extension = "extension.__main__:osquery_entry"' in text


def test_the_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    path = tmp_path / "agent.lock"
    root = Path(__file__).resolve().parent.parent
    with open(path, "a+") as first:
        _lock_exclusive(first, platform="linux")
        probe = (
            "import sys; from extension.__main__ import _lock_exclusive\n"
            f"handle = open({str(path)!r}, 'a+')\n"
            "try:\n    _lock_exclusive(handle, platform='linux')\nexcept BlockingIOError:\n    sys.exit(3)\n"
        )
        other = subprocess.run([sys.executable, "-c", probe], check=False, cwd=root)
        assert other.returncode == 3
    other = subprocess.run([sys.executable, "-c", probe], check=False, cwd=root)
    assert other.returncode == 0  # released with the file


def test_the_windows_lock_needs_windows(tmp_path: Path) -> None:
    with open(tmp_path / "agent.lock", "a+") as handle, pytest.raises(ModuleNotFoundError, match="msvcrt"):
        _lock_exclusive(handle, platform="win32")


class FakeSecurityDlls:
    """advapi32 and kernel32 as create_private_directory calls them."""

    def __init__(self, *, convert_ok: bool = True, create_fails: bool = False) -> None:
        self.convert_ok = convert_ok
        self.create_fails = create_fails
        self.descriptor = ctypes.create_string_buffer(64)  # stands for the LocalAlloc'ed descriptor
        self.sddl = ""
        self.created: list[tuple[str, int, int]] = []
        self.freed: list[int] = []

    def ConvertStringSecurityDescriptorToSecurityDescriptorW(
        self, sddl: Any, revision: Any, out: Any, size: Any
    ) -> int:
        assert revision.value == 1 and size is None
        self.sddl = sddl.value
        if not self.convert_ok:
            return 0
        out._obj.value = ctypes.addressof(self.descriptor)
        return 1

    def CreateDirectoryW(self, path: Any, attributes: Any) -> int:
        sa = attributes._obj
        self.created.append((path.value, sa.nLength, sa.lpSecurityDescriptor))
        if self.create_fails or Path(path.value).exists():
            return 0
        Path(path.value).mkdir()
        return 1

    def LocalFree(self, pointer: Any) -> None:
        self.freed.append(pointer.value)


def test_the_data_directory_is_created_private_on_windows(tmp_path: Path) -> None:
    from extension.windows_files import PRIVATE_DIRECTORY_SDDL, create_private_directory  # noqa: PLC0415

    dlls = FakeSecurityDlls()
    target = tmp_path / "ProgramData" / "osquery-netflow"
    assert create_private_directory(target, advapi32=dlls, kernel32=dlls) and target.is_dir()
    descriptor = ctypes.addressof(dlls.descriptor)
    assert dlls.created == [(str(target), 24, descriptor)]  # SECURITY_ATTRIBUTES on x64 is 24 bytes
    assert dlls.sddl == PRIVATE_DIRECTORY_SDDL and dlls.sddl.startswith("D:P(")  # protected: no inheritance
    assert "BU" not in dlls.sddl and "WD" not in dlls.sddl and "AU" not in dlls.sddl  # no users, everyone
    assert dlls.freed == [descriptor]
    assert not create_private_directory(target, advapi32=dlls, kernel32=dlls)  # exists: left as it is
    assert dlls.freed == [descriptor, descriptor]


def test_a_failed_private_directory_names_the_call(tmp_path: Path) -> None:
    from extension.windows_files import create_private_directory  # noqa: PLC0415

    with pytest.raises(OSError, match="ConvertStringSecurityDescriptorToSecurityDescriptorW failed"):
        create_private_directory(
            tmp_path / "a", advapi32=FakeSecurityDlls(convert_ok=False), kernel32=FakeSecurityDlls()
        )
    dlls = FakeSecurityDlls(create_fails=True)
    with pytest.raises(OSError, match="CreateDirectoryW"):
        create_private_directory(tmp_path / "b", advapi32=dlls, kernel32=dlls)
    assert len(dlls.freed) == 1 and not (tmp_path / "b").exists()


def test_the_agent_creates_its_windows_data_directory_through_it(tmp_path: Path) -> None:
    from extension.__main__ import _lock_data_dir  # noqa: PLC0415
    from extension.store import StoreError  # noqa: PLC0415

    with pytest.raises(StoreError, match="needs Windows"):  # here the Win32 call is refused
        _lock_data_dir(tmp_path / "new", platform="win32")
    assert not (tmp_path / "new").exists()
