"""Process enrichment on Windows, on this Linux machine: SIDs decoded from bytes, the cache's rules
(pid reuse by creation time, exited processes, denied ones, account names per SID) on a fake of the
process API, the ctypes binding driven through fake DLLs that write what Windows writes into the
caller's buffers, and the collector filling the store's rows from ETW events through it all."""

from __future__ import annotations

import ctypes
import hashlib
import ipaddress
import sqlite3
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from extension.enrich import platform_process_cache
from extension.enrich_windows import (
    STATUS_INFO_LENGTH_MISMATCH,
    UNICODE_STRING_SIZE,
    Win32ProcessApi,
    WindowsProcessCache,
    WinProcess,
    filetime_to_epoch,
    sid_rid,
    sid_string,
)
from extension.sources.etw import OBSERVE_AGAIN_NS, EtwSource, process_record

FILETIME_2026 = (1_780_000_000 + 11_644_473_600) * 10_000_000  # 2026-05-28 as a FILETIME


def sid_bytes(authority: int, *subs: int) -> bytes:
    return bytes([1, len(subs)]) + authority.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (sid_bytes(5, 18), "S-1-5-18"),  # LocalSystem
        (
            sid_bytes(5, 21, 3_623_811_015, 3_361_044_348, 30_300_820, 1001),
            "S-1-5-21-3623811015-3361044348-30300820-1001",
        ),
        (sid_bytes(1, 0), "S-1-1-0"),  # Everyone
        (sid_bytes(0xFFFFFFFF, 7), "S-1-4294967295-7"),
        (sid_bytes(1 << 32, 7), "S-1-0x000100000000-7"),  # authorities past 32 bits are shown in hex
        (sid_bytes(5), "S-1-5"),
        (sid_bytes(5, *range(15)), "S-1-5-" + "-".join(str(n) for n in range(15))),
    ],
)  # fmt: skip
def test_sids_from_bytes(raw: bytes, text: str) -> None:
    assert sid_string(raw) == text


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"\x01\x01\x00", "at least 8 bytes"),
        (bytes([2, 0, 0, 0, 0, 0, 0, 5]), "revision 2"),
        (bytes([1, 16]) + bytes(6) + bytes(64), "16 sub-authorities"),
        (sid_bytes(5, 18)[:-1], "has 12 bytes, not 11"),
        (sid_bytes(5, 18) + b"\x00", "has 12 bytes, not 13"),
    ],
)
def test_malformed_sids_are_refused_with_the_reason(raw: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        sid_string(raw)


def test_rids_and_filetimes() -> None:
    assert sid_rid("S-1-5-21-1-2-3-1001") == 1001 and sid_rid("S-1-5-18") == 18 and sid_rid("S-1-5") == 0
    assert filetime_to_epoch(FILETIME_2026) == 1_780_000_000
    assert filetime_to_epoch(FILETIME_2026 + 9_999_999) == 1_780_000_000  # whole seconds
    assert filetime_to_epoch(0) == 0 and filetime_to_epoch(10_000_000) == 0  # unknown, before 1970


# --- the cache on a fake of the process API ------------------------------------------------------


@dataclass
class FakeProcesses:
    """Processes by pid as Windows would show them; ``denied`` pids cannot be opened for a snapshot."""

    running: dict[int, WinProcess] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)
    denied: set[int] = field(default_factory=set)
    snapshots: int = 0
    account_lookups: int = 0

    def creation_time(self, pid: int) -> int | None:
        process = self.running.get(pid)
        return process.creation if process is not None else None

    def snapshot(self, pid: int) -> WinProcess | None:
        self.snapshots += 1
        return None if pid in self.denied else self.running.get(pid)

    def account_name(self, sid: str) -> str:
        self.account_lookups += 1
        return self.accounts.get(sid, "")


def win_process(
    pid: int, path: str, *, creation: int = FILETIME_2026, sid: str = "S-1-5-21-1-2-3-1001"
) -> WinProcess:
    return WinProcess(pid, creation, path, parent_pid=4242, cmdline=f'"{path}" --flag', sid=sid)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_reads_a_process_while_it_runs_and_keeps_it_after_it_exits(tmp_path: Path) -> None:
    exe = tmp_path / "curl.exe"
    exe.write_bytes(b"MZ" + bytes(1000))
    api = FakeProcesses(accounts={"S-1-5-21-1-2-3-1001": "CORP\\alice"})
    api.running[1234] = win_process(1234, str(exe))
    clock = Clock()
    cache = WindowsProcessCache(api, clock=clock, recheck_seconds=1.0)
    cache.observe(process_record(1234, 1))
    info = cache.lookup(1234, "")
    assert (info.name, info.path, info.sha256) == (
        "curl.exe",
        str(exe),
        hashlib.sha256(exe.read_bytes()).hexdigest(),
    )
    assert (info.start_time, info.parent_pid, info.cmdline) == (1_780_000_000, 4242, f'"{exe}" --flag')
    assert (info.username, info.uid) == ("CORP\\alice", 1001)
    assert api.snapshots == 1
    del api.running[1234]  # it exits; flows drained later still name it
    clock.now += 5
    assert cache.lookup(1234, "") == info and api.snapshots == 1
    assert cache.stats()["observed"] == 1


def test_a_reused_pid_is_read_again_and_a_windows_path_is_named_by_its_last_part() -> None:
    api = FakeProcesses()
    api.running[88] = win_process(88, "C:\\Windows\\System32\\svchost.exe")
    clock = Clock()
    cache = WindowsProcessCache(api, clock=clock)
    assert cache.lookup(88, "").name == "svchost.exe"
    clock.now += 0.5  # within recheck_seconds: answered from the cache without asking Windows
    assert cache.lookup(88, "").name == "svchost.exe" and api.snapshots == 1
    api.running[88] = win_process(88, "C:\\Program Files\\Äpp\\äpp.exe", creation=FILETIME_2026 + 10**8)
    clock.now += 2
    again = cache.lookup(88, "")
    assert (again.name, again.start_time) == ("äpp.exe", 1_780_000_010)
    assert cache.stats()["pid_reuse"] == 1 and api.snapshots == 2
    assert again.sha256 == ""  # not a file on this machine: no hash, no error raised


def test_denied_unknown_and_unnamed_processes() -> None:
    api = FakeProcesses()
    api.running[4] = win_process(4, "", sid="S-1-5-18")
    api.denied.add(4)  # the System process: its creation time is readable, a snapshot is not
    api.running[700] = win_process(700, "C:\\a.exe", sid="S-1-5-21-9-9-9-1500")
    api.running[701] = win_process(701, "C:\\b.exe", sid="S-1-5-21-9-9-9-1500")
    cache = WindowsProcessCache(api, clock=Clock())
    system = cache.lookup(4, "")
    assert (system.pid, system.path, system.username) == (4, "", "")
    assert cache.lookup(9999, "", uid=0).path == ""  # never seen, not running
    first, second = cache.lookup(700, ""), cache.lookup(701, "")
    # an account Windows cannot name is shown by its SID, and each SID is looked up once
    assert first.username == second.username == "S-1-5-21-9-9-9-1500" and api.account_lookups == 1
    assert (first.uid, cache.lookup(0, "Idle").name) == (1500, "Idle")
    stats = cache.stats()
    assert stats["denied"] == 1 and stats["unknown"] == 2


def test_the_cache_is_bounded() -> None:
    api = FakeProcesses()
    for pid in range(1, 21):
        api.running[pid] = win_process(pid, f"C:\\p{pid}.exe")
    cache = WindowsProcessCache(api, clock=Clock(), max_entries=8)
    for pid in range(1, 21):
        cache.observe(process_record(pid, pid))
    assert len(cache) == 8 and cache.stats()["evictions"] == 12


def test_the_platform_picks_its_process_cache() -> None:
    with pytest.raises(OSError, match="needs Windows"):
        platform_process_cache("win32")  # the Win32 binding refuses off Windows
    assert type(platform_process_cache("linux")).__name__ == "ProcessCache"


# --- the ctypes binding through fake DLLs ---------------------------------------------------------


def _write_utf16(buffer: Any, text: str) -> int:
    data = text.encode("utf-16-le") + b"\x00\x00"
    ctypes.memmove(buffer, data, len(data))
    return len(text)


class FakeDlls:
    """kernel32, advapi32 and ntdll as the binding calls them: each call writes into the caller's
    buffers what Windows writes, with pointers into those buffers where Windows puts them."""

    def __init__(self, *, path: str, parent: int, cmdline: str, sid: bytes, account: tuple[str, str]) -> None:
        self.path, self.parent, self.cmdline, self.sid, self.account = path, parent, cmdline, sid, account
        self.open_handles: set[int] = set()
        self.next_handle = 0x100
        self.query_sizes: list[tuple[int, int]] = []
        self.freed: list[int] = []
        self.allocated: list[Any] = []

    def _new_handle(self) -> int:
        self.next_handle += 4
        self.open_handles.add(self.next_handle)
        return self.next_handle

    # kernel32
    def OpenProcess(self, access: Any, inherit: Any, pid: Any) -> int:
        assert access.value == 0x1000 and inherit.value == 0  # PROCESS_QUERY_LIMITED_INFORMATION only
        return 0 if pid.value == 4 else self._new_handle()

    def CloseHandle(self, handle: Any) -> int:
        self.open_handles.remove(handle.value)
        return 1

    def GetProcessTimes(self, handle: Any, *times: Any) -> int:
        assert handle.value in self.open_handles and len(times) == 4
        times[0]._obj.dwLowDateTime = FILETIME_2026 & 0xFFFFFFFF
        times[0]._obj.dwHighDateTime = FILETIME_2026 >> 32
        return 1

    def QueryFullProcessImageNameW(self, handle: Any, flags: Any, buffer: Any, size: Any) -> int:
        assert flags.value == 0 and size._obj.value == len(buffer)
        size._obj.value = _write_utf16(buffer, self.path)  # characters, without the terminator
        return 1

    def LocalFree(self, pointer: Any) -> None:
        self.freed.append(pointer.value)

    # ntdll
    def NtQueryInformationProcess(
        self, handle: Any, info_class: Any, buffer: Any, size: Any, needed: Any
    ) -> int:
        assert handle.value in self.open_handles
        self.query_sizes.append((info_class.value, size.value))
        if info_class.value == 0:  # PROCESS_BASIC_INFORMATION: the parent at offset 40
            struct.pack_into("<IIQQIIQQ", buffer, 0, 0, 0, 0x7FF0000, 1, 8, 0, 1234, self.parent)
            return 0
        text = self.cmdline.encode("utf-16-le")
        wanted = UNICODE_STRING_SIZE + len(text) + 2
        if size.value < wanted:
            needed._obj.value = wanted
            return STATUS_INFO_LENGTH_MISMATCH - (1 << 32)  # NTSTATUS is signed: negative as Windows returns
        struct.pack_into("<HHIQ", buffer, 0, len(text), len(text) + 2, 0, ctypes.addressof(buffer) + 16)
        ctypes.memmove(ctypes.addressof(buffer) + 16, text, len(text))
        return 0

    # advapi32
    def OpenProcessToken(self, handle: Any, access: Any, token: Any) -> int:
        assert access.value == 0x0008  # TOKEN_QUERY
        token._obj.value = self._new_handle()
        return 1

    def GetTokenInformation(self, token: Any, info_class: Any, buffer: Any, size: Any, needed: Any) -> int:
        assert token.value in self.open_handles and info_class.value == 1  # TokenUser
        # TOKEN_USER {PSID Sid; DWORD Attributes} then the SID itself, in the same buffer
        struct.pack_into("<QI", buffer, 0, ctypes.addressof(buffer) + 16, 0)
        ctypes.memmove(ctypes.addressof(buffer) + 16, self.sid, len(self.sid))
        needed._obj.value = 16 + len(self.sid)
        return 1

    def ConvertStringSidToSidW(self, text: Any, out: Any) -> int:
        if sid_string(self.sid) != text.value:
            return 0
        block = ctypes.create_string_buffer(self.sid)
        self.allocated.append(block)
        out._obj.value = ctypes.addressof(block)
        return 1

    def LookupAccountSidW(self, system: Any, sid: Any, name: Any, name_chars: Any, domain: Any,
                          domain_chars: Any, use: Any) -> int:  # fmt: skip
        assert system is None and ctypes.string_at(sid.value, len(self.sid)) == self.sid
        user, where = self.account
        if not user:
            return 0
        name_chars._obj.value = _write_utf16(name, user)
        domain_chars._obj.value = _write_utf16(domain, where)
        use._obj.value = 1  # SidTypeUser
        return 1


def fake_dlls(**overrides: Any) -> FakeDlls:
    values: dict[str, Any] = {
        "path": "C:\\Program Files\\Mozilla Firefox\\firefox.exe",
        "parent": 5120,
        "cmdline": '"C:\\Program Files\\Mozilla Firefox\\firefox.exe" -contentproc 🦊',
        "sid": sid_bytes(5, 21, 111, 222, 333, 1001),
        "account": ("bob", "CORP"),
    }
    values.update(overrides)
    return FakeDlls(**values)


def test_the_binding_reads_what_windows_writes() -> None:
    dlls = fake_dlls()
    api = Win32ProcessApi(dlls, dlls, dlls)
    process = api.snapshot(6000)
    assert process is not None
    assert process.path == "C:\\Program Files\\Mozilla Firefox\\firefox.exe"
    assert (process.creation, process.parent_pid) == (FILETIME_2026, 5120)
    assert process.cmdline == dlls.cmdline  # the buffer was grown to the size asked for
    assert [size for cls, size in dlls.query_sizes if cls == 60] == [1024]  # it fitted at once
    assert process.sid == "S-1-5-21-111-222-333-1001"
    assert api.account_name(process.sid) == "CORP\\bob" and len(dlls.freed) == 1
    assert api.creation_time(6000) == FILETIME_2026
    assert dlls.open_handles == set()  # every process and token handle closed
    assert api.snapshot(4) is None and api.creation_time(4) is None  # OpenProcess refused


def test_a_long_command_line_makes_the_binding_grow_its_buffer() -> None:
    dlls = fake_dlls(cmdline="x" * 3000)
    process = Win32ProcessApi(dlls, dlls, dlls).snapshot(6000)
    assert process is not None and process.cmdline == "x" * 3000
    assert [size for cls, size in dlls.query_sizes if cls == 60] == [1024, UNICODE_STRING_SIZE + 6002]


def test_the_binding_with_an_account_windows_cannot_name() -> None:
    dlls = fake_dlls(account=("", ""))
    api = Win32ProcessApi(dlls, dlls, dlls)
    assert api.account_name("S-1-5-21-111-222-333-1001") == "" and len(dlls.freed) == 1
    assert api.account_name("S-1-5-18") == ""  # not convertible here: nothing to free
    cache = WindowsProcessCache(api, clock=Clock())
    assert cache.lookup(6000, "").username == "S-1-5-21-111-222-333-1001"


def test_the_binding_needs_windows_without_dlls() -> None:
    with pytest.raises(OSError, match="needs Windows"):
        Win32ProcessApi()


# --- the collector on ETW events ------------------------------------------------------------------


def test_first_sight_reports_a_pid_once_a_minute() -> None:
    from tests.test_etw_session import FakeTraceApi  # noqa: PLC0415

    source = EtwSource(FakeTraceApi(), on_record=lambda _record: None)
    try:
        assert source._first_sight(10, 1) and not source._first_sight(10, OBSERVE_AGAIN_NS)
        assert source._first_sight(10, OBSERVE_AGAIN_NS + 1) and source._first_sight(11, 2)
    finally:
        source.close()


def windows_collector(tmp_path: Path, processes: FakeProcesses) -> tuple[Any, Any, Any]:
    """The collector and store as the agent builds them on Windows, on a fake ETW session and a fake
    process API; reverse lookups off (names only from what the DNS client reports). Returns
    (collector, store, fake session)."""
    from extension.collector import Collector  # noqa: PLC0415
    from extension.settings import load  # noqa: PLC0415
    from extension.store import Store  # noqa: PLC0415
    from tests.test_etw_session import FakeTraceApi  # noqa: PLC0415

    settings = load(
        environ={"EXTENSION_DATA_DIR": str(tmp_path / "data"), "EXTENSION_RESOLVE_HOSTNAMES": "0"}
    )
    store = Store(tmp_path / "netflow.db", window_seconds=settings.window_seconds)
    api = FakeTraceApi()
    collector = Collector(
        settings=settings,
        store=store,
        source_factory=lambda on_record: EtwSource(api, on_record=on_record),
        processes=WindowsProcessCache(processes),
    )
    return collector, store, api


def test_the_collector_names_windows_processes_and_users_in_its_rows(tmp_path: Path) -> None:
    """ETW events in (fake session), the Windows process cache (fake process API, a real file to
    hash), the collector and store unchanged: the rows carry path, hash, user and its RID."""
    exe = tmp_path / "app.exe"
    exe.write_bytes(b"MZ windows binary")
    processes = FakeProcesses(accounts={"S-1-5-21-7-7-7-1104": "CORP\\carol"})
    processes.running[3100] = win_process(3100, str(exe), sid="S-1-5-21-7-7-7-1104")
    collector, _store, api = windows_collector(tmp_path, processes)
    try:
        body = (
            ipaddress.ip_address("198.51.100.7").packed
            + ipaddress.ip_address("10.0.0.2").packed
            + struct.pack(">HH", 443, 50000)
        )
        for event_id, size in ((12, 0), (10, 512), (11, 2048)):  # connect, send, receive
            api.events.put((event_id, struct.pack("<II", 3100, size) + body, time.monotonic_ns()))
        assert all(api.handled.acquire(timeout=5) for _ in range(3))
        collector.source.poll(0)  # as the collector's loop does between drains
        processes.running.clear()  # exited before the drain: read at first sight, so still named
        collector.drain_once()
    finally:
        collector.source.close()
    with sqlite3.connect(tmp_path / "netflow.db") as db:
        rows = db.execute(
            "SELECT activity, pid, process_name, process_path, process_sha256, username, uid, "
            "bytes_sent, bytes_received, direction FROM socket_events ORDER BY id"
        ).fetchall()
    digest = hashlib.sha256(exe.read_bytes()).hexdigest()
    named = [(str(exe), digest, "CORP\\carol", 1104)]
    assert {(row[3], row[4], row[5], row[6]) for row in rows} == set(named)
    assert [(row[0], row[7], row[8], row[9]) for row in rows] == [
        ("connect", 0, 0, "outbound"),
        ("data", 512, 2048, "outbound"),
    ]
    assert {row[2] for row in rows} == {"app.exe"} and processes.snapshots == 1
