"""Process enrichment on Windows: pid -> image path, SHA-256, start time, parent, command line, user.

The ETW events carry only the pid. :class:`WindowsProcessCache` (the Windows counterpart of
:class:`extension.enrich.ProcessCache`, with the same ``observe``/``lookup`` interface) reads a process
when the capture source first reports it, while it still runs, and keeps the answer after it exits:

* image path: ``QueryFullProcessImageNameW`` (Win32 form, ``C:\\...``); the name is its last part;
* start time: ``GetProcessTimes`` (creation FILETIME). The cache is keyed by pid and creation time, so
  a reused pid never inherits another process's facts;
* parent pid and command line: ``NtQueryInformationProcess`` (ProcessBasicInformation, and
  ProcessCommandLineInformation, Windows 8.1 and later);
* user: the token's SID (``OpenProcessToken`` + ``GetTokenInformation(TokenUser)``), named by
  ``LookupAccountSidW`` as ``DOMAIN\\name`` (cached per SID), and the SID's last sub-authority (its
  RID) as the numeric uid, as osquery's own ``users`` table on Windows does;
* SHA-256: :class:`extension.enrich.FileHasher` on the image path.

All of it needs only ``PROCESS_QUERY_LIMITED_INFORMATION``, which the agent's service account
(LocalSystem) has on every process but protected ones; a protected process keeps its pid and empty
fields (counted as ``denied``).

:class:`Win32ProcessApi` is the ctypes binding (explicit-width buffers, so the same bytes are laid
out on Linux, where the tests drive it through fake DLLs that write what Windows writes).
**Not run on Windows yet.**
"""

from __future__ import annotations

import collections
import ctypes
import logging
import ntpath
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from extension.enrich import MAX_CMDLINE_CHARS, FileHasher, ProcessInfo, _Lru
from extension.events import ProcessRecord

log = logging.getLogger(__name__)

PROCESS_QUERY_LIMITED_INFORMATION: Final = 0x1000
TOKEN_QUERY: Final = 0x0008
TOKEN_USER_CLASS: Final = 1
PROCESS_BASIC_INFORMATION_CLASS: Final = 0
PROCESS_COMMAND_LINE_INFORMATION_CLASS: Final = 60
STATUS_SUCCESS: Final = 0
STATUS_INFO_LENGTH_MISMATCH: Final = 0xC0000004
STATUS_BUFFER_OVERFLOW: Final = 0x80000005
STATUS_BUFFER_TOO_SMALL: Final = 0xC0000023
ERROR_INSUFFICIENT_BUFFER: Final = 122
MAX_PATH_CHARS: Final = 32768  # the longest Win32 path (\\?\ form)
MAX_SID_SUB_AUTHORITIES: Final = 15
FILETIME_EPOCH_OFFSET: Final = 11_644_473_600  # seconds from 1601-01-01 to 1970-01-01
PBI_SIZE: Final = 48  # PROCESS_BASIC_INFORMATION on x64
PBI_PARENT_OFFSET: Final = 40  # InheritedFromUniqueProcessId
UNICODE_STRING_SIZE: Final = 16  # USHORT Length, USHORT MaximumLength, (pad), PWSTR Buffer


class HANDLE(ctypes.c_void_p):
    pass


class FILETIME(ctypes.Structure):
    _fields_ = [("dwLowDateTime", ctypes.c_uint32), ("dwHighDateTime", ctypes.c_uint32)]

    @property
    def value(self) -> int:
        return (int(self.dwHighDateTime) << 32) | int(self.dwLowDateTime)


def filetime_to_epoch(value: int) -> int:
    """A FILETIME (100 ns since 1601-01-01 UTC) in epoch seconds; 0 for zero or pre-1970 values."""
    seconds = value // 10_000_000 - FILETIME_EPOCH_OFFSET
    return seconds if value > 0 and seconds > 0 else 0


def sid_string(raw: bytes) -> str:
    """A binary SID in its string form (``S-1-5-21-...``). Raises ValueError for malformed input."""
    if len(raw) < 8:
        raise ValueError(f"a SID has at least 8 bytes, not {len(raw)}")
    revision, count = raw[0], raw[1]
    if revision != 1:
        raise ValueError(f"SID revision {revision} (only revision 1 exists)")
    if count > MAX_SID_SUB_AUTHORITIES:
        raise ValueError(f"SID with {count} sub-authorities (at most {MAX_SID_SUB_AUTHORITIES})")
    if len(raw) != 8 + 4 * count:
        raise ValueError(f"a SID with {count} sub-authorities has {8 + 4 * count} bytes, not {len(raw)}")
    authority = int.from_bytes(raw[2:8], "big")
    shown = str(authority) if authority < 1 << 32 else f"0x{authority:012X}"
    subs = struct.unpack(f"<{count}I", raw[8:])
    return "-".join(["S-1", shown, *(str(sub) for sub in subs)])


def sid_rid(sid: str) -> int:
    """The relative id (last sub-authority) of a SID string; 0 when it has none."""
    parts = sid.split("-")
    return int(parts[-1]) if len(parts) > 3 else 0


@dataclass(frozen=True, slots=True)
class WinProcess:
    pid: int
    creation: int  # FILETIME of the start; identifies the process with its pid
    path: str
    parent_pid: int
    cmdline: str
    sid: str  # "" when the token could not be read


class ProcessApi(Protocol):
    """What the cache needs from Windows; :class:`Win32ProcessApi` in production."""

    def creation_time(self, pid: int) -> int | None:
        """The process's creation FILETIME, or None when it is gone (or not ours to open)."""
        ...

    def snapshot(self, pid: int) -> WinProcess | None: ...

    def account_name(self, sid: str) -> str:
        """``DOMAIN\\name`` of a SID, or "" when it cannot be named."""
        ...


class WindowsProcessCache:
    """pid -> :class:`~extension.enrich.ProcessInfo` on Windows; bounded, thread-safe, never raises."""

    def __init__(
        self,
        api: ProcessApi | None = None,
        *,
        hasher: FileHasher | None = None,
        max_entries: int = 8192,
        recheck_seconds: float = 1.0,
        name_ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api: ProcessApi = api if api is not None else Win32ProcessApi()
        self.hasher = hasher if hasher is not None else FileHasher()
        self.recheck_seconds = recheck_seconds
        self.name_ttl_seconds = name_ttl_seconds
        self._clock = clock
        # pid -> (creation FILETIME, what was read, when Windows last confirmed it)
        self._entries: _Lru[int, tuple[int, ProcessInfo, float]] = _Lru(max_entries)
        self._names: _Lru[str, tuple[str, float]] = _Lru(1024)
        self._lock = threading.RLock()
        self.counters: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._entries), "evictions": self._entries.evictions, **self.counters}

    def observe(self, record: ProcessRecord) -> None:
        """The capture source saw this pid for the first time (or again after a while): read it now."""
        if record.pid <= 0:
            self.counters["bad_records"] += 1
            return
        with self._lock:
            self.counters["observed"] += 1
            self._refresh(record.pid, self._clock())

    def lookup(self, pid: int, comm: str, start_ns: int | None = None, *, uid: int = 0) -> ProcessInfo:
        """What is known about a process (``start_ns`` is unused: ETW events carry no start time)."""
        del start_ns
        if pid <= 0:
            return ProcessInfo(pid, comm, "", "", 0, 0, "", uid)
        with self._lock:
            now = self._clock()
            cached = self._entries.get(pid)
            if cached is not None and now - cached[2] < self.recheck_seconds:
                self.counters["hits"] += 1
                return cached[1]
            info = self._refresh(pid, now)
            if info is not None:
                return info
            self.counters["unknown"] += 1
            return ProcessInfo(pid, comm, "", "", 0, 0, "", uid)

    def _refresh(self, pid: int, now: float) -> ProcessInfo | None:
        cached = self._entries.get(pid)
        creation = self.api.creation_time(pid)
        if creation is None:  # exited (or protected): what was seen while it ran is still the answer
            if cached is not None:
                self._entries.put(pid, (cached[0], cached[1], now))
                self.counters["hits"] += 1
                return cached[1]
            return None
        if cached is not None and cached[0] == creation:
            self._entries.put(pid, (creation, cached[1], now))
            self.counters["hits"] += 1
            return cached[1]
        if cached is not None:
            self.counters["pid_reuse"] += 1
        process = self.api.snapshot(pid)
        if process is None or process.creation != creation:  # gone, or replaced while read
            self.counters["denied" if process is None else "raced"] += 1
            return cached[1] if cached is not None else None
        info = self._info(process)
        self._entries.put(pid, (creation, info, now))
        return info

    def _info(self, process: WinProcess) -> ProcessInfo:
        username = self._account_name(process.sid) if process.sid else ""
        return ProcessInfo(
            pid=process.pid,
            name=ntpath.basename(process.path),
            path=process.path,
            sha256=self.hasher.hash_path(process.path) if process.path else "",
            start_time=filetime_to_epoch(process.creation),
            parent_pid=process.parent_pid,
            cmdline=process.cmdline[:MAX_CMDLINE_CHARS],
            uid=sid_rid(process.sid) if process.sid else 0,
            username=username,
        )

    def _account_name(self, sid: str) -> str:
        now = self._clock()
        cached = self._names.get(sid)
        if cached is not None and cached[1] > now:
            return cached[0]
        name = self.api.account_name(sid) or sid  # an unnamed account is shown by its SID
        self.counters["account_lookups"] += 1
        self._names.put(sid, (name, now + self.name_ttl_seconds))
        return name


# --- the ctypes binding --------------------------------------------------------------------------


def _utf16(buffer: Any, chars: int) -> str:
    """``chars`` UTF-16 code units from a c_uint16 array."""
    return ctypes.string_at(ctypes.addressof(buffer), 2 * chars).decode("utf-16-le", "replace")


class Win32ProcessApi:
    """:class:`ProcessApi` on kernel32, advapi32 and ntdll. The DLL arguments are for the tests."""

    def __init__(self, kernel32: Any = None, advapi32: Any = None, ntdll: Any = None) -> None:
        if kernel32 is None or advapi32 is None or ntdll is None:
            windll: Any = getattr(ctypes, "WinDLL", None)  # only Windows' ctypes has it
            if windll is None:
                raise OSError("process enrichment through the Win32 API needs Windows")
            kernel32 = kernel32 or windll("kernel32", use_last_error=True)
            advapi32 = advapi32 or windll("advapi32", use_last_error=True)
            ntdll = ntdll or windll("ntdll")
            kernel32.OpenProcess.restype = HANDLE
        self.kernel32 = kernel32
        self.advapi32 = advapi32
        self.ntdll = ntdll

    def _open(self, pid: int) -> HANDLE | None:
        handle = self.kernel32.OpenProcess(
            ctypes.c_uint32(PROCESS_QUERY_LIMITED_INFORMATION), ctypes.c_int(0), ctypes.c_uint32(pid)
        )
        value = handle.value if isinstance(handle, ctypes.c_void_p) else handle
        return HANDLE(value) if value else None

    def _creation(self, handle: HANDLE) -> int | None:
        times = [FILETIME() for _ in range(4)]  # creation, exit, kernel, user
        if not self.kernel32.GetProcessTimes(handle, *(ctypes.byref(item) for item in times)):
            return None
        return times[0].value

    def creation_time(self, pid: int) -> int | None:
        handle = self._open(pid)
        if handle is None:
            return None
        try:
            return self._creation(handle)
        finally:
            self.kernel32.CloseHandle(handle)

    def snapshot(self, pid: int) -> WinProcess | None:
        handle = self._open(pid)
        if handle is None:
            return None
        try:
            creation = self._creation(handle)
            if creation is None:
                return None
            return WinProcess(
                pid=pid,
                creation=creation,
                path=self._image_path(handle),
                parent_pid=self._parent_pid(handle),
                cmdline=self._command_line(handle),
                sid=self._token_sid(handle),
            )
        finally:
            self.kernel32.CloseHandle(handle)

    def _image_path(self, handle: HANDLE) -> str:
        buffer = (ctypes.c_uint16 * MAX_PATH_CHARS)()
        size = ctypes.c_uint32(MAX_PATH_CHARS)
        if not self.kernel32.QueryFullProcessImageNameW(
            handle, ctypes.c_uint32(0), buffer, ctypes.byref(size)
        ):
            return ""
        return _utf16(buffer, min(int(size.value), MAX_PATH_CHARS))

    def _query(self, handle: HANDLE, info_class: int, size: int) -> Any:
        """NtQueryInformationProcess into a buffer (a c_uint8 array) grown, twice at most, to the size
        it asks for; None when it fails."""
        for _ in range(3):
            buffer = (ctypes.c_uint8 * size)()
            needed = ctypes.c_uint32(0)
            status = (
                self.ntdll.NtQueryInformationProcess(
                    handle, ctypes.c_uint32(info_class), buffer, ctypes.c_uint32(size), ctypes.byref(needed)
                )
                & 0xFFFFFFFF
            )
            if status == STATUS_SUCCESS:
                return buffer
            if status not in (STATUS_INFO_LENGTH_MISMATCH, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL):
                return None
            if not needed.value or needed.value <= size or needed.value > 1 << 20:
                return None
            size = int(needed.value)
        return None

    def _parent_pid(self, handle: HANDLE) -> int:
        buffer = self._query(handle, PROCESS_BASIC_INFORMATION_CLASS, PBI_SIZE)
        if buffer is None or len(buffer) < PBI_SIZE:
            return 0
        return int(struct.unpack_from("<Q", bytes(buffer), PBI_PARENT_OFFSET)[0]) & 0xFFFFFFFF

    def _command_line(self, handle: HANDLE) -> str:
        """ProcessCommandLineInformation: a UNICODE_STRING whose Buffer points into the same buffer."""
        buffer = self._query(handle, PROCESS_COMMAND_LINE_INFORMATION_CLASS, 1024)
        if buffer is None or len(buffer) < UNICODE_STRING_SIZE:
            return ""
        raw = bytes(buffer)
        length, pointer = struct.unpack_from("<H", raw, 0)[0], struct.unpack_from("<Q", raw, 8)[0]
        offset = pointer - ctypes.addressof(buffer)
        if length % 2 or offset < UNICODE_STRING_SIZE or offset + length > len(raw):
            return ""  # the text must lie in the buffer Windows filled, after the header
        return raw[offset : offset + length].decode("utf-16-le", "replace")

    def _token_sid(self, handle: HANDLE) -> str:
        token = HANDLE()
        if not self.advapi32.OpenProcessToken(handle, ctypes.c_uint32(TOKEN_QUERY), ctypes.byref(token)):
            return ""
        try:
            buffer = (ctypes.c_uint8 * 256)()  # TOKEN_USER (16 bytes) + a SID (at most 68)
            needed = ctypes.c_uint32(0)
            if not self.advapi32.GetTokenInformation(
                token, ctypes.c_uint32(TOKEN_USER_CLASS), buffer, ctypes.c_uint32(256), ctypes.byref(needed)
            ):
                return ""
            sid_address = struct.unpack_from("<Q", bytes(buffer), 0)[0]
            start = ctypes.addressof(buffer)
            if not start <= sid_address <= start + 256 - 8:  # TOKEN_USER.Sid points into the buffer
                return ""
            count = ctypes.string_at(sid_address + 1, 1)[0]
            if count > MAX_SID_SUB_AUTHORITIES or sid_address + 8 + 4 * count > start + 256:
                return ""
            return sid_string(ctypes.string_at(sid_address, 8 + 4 * count))
        except ValueError as exc:
            log.debug("malformed SID in a process token: %s", exc)
            return ""
        finally:
            self.kernel32.CloseHandle(token)

    def account_name(self, sid: str) -> str:
        converted = ctypes.c_void_p()
        if not self.advapi32.ConvertStringSidToSidW(ctypes.c_wchar_p(sid), ctypes.byref(converted)):
            return ""
        try:
            name = (ctypes.c_uint16 * 256)()
            domain = (ctypes.c_uint16 * 256)()
            name_chars, domain_chars, use = ctypes.c_uint32(256), ctypes.c_uint32(256), ctypes.c_uint32(0)
            if not self.advapi32.LookupAccountSidW(
                None,
                converted,
                name,
                ctypes.byref(name_chars),
                domain,
                ctypes.byref(domain_chars),
                ctypes.byref(use),
            ):
                return ""
            user = _utf16(name, min(int(name_chars.value), 255))
            where = _utf16(domain, min(int(domain_chars.value), 255))
            return f"{where}\\{user}" if where else user
        finally:
            self.kernel32.LocalFree(converted)
