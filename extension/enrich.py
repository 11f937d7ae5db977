"""Enrichment of kernel records: pid -> process facts, uid -> user name, address -> host name.

Everything here is called from the collector's one-second drain loop, so nothing may block it for
long:

* :class:`FileHasher` hashes an executable once per (device, inode, mtime, size) and then answers
  from a bounded cache.
* :class:`ProcessCache` reads ``/proc`` when the kernel first reports a process (it still runs then)
  and remembers the answer, so flows drained after the process exited keep their path and hash.
  When ``/proc`` is already gone it falls back to what the kernel sent.
* :class:`UserNames` caches ``pwd`` lookups (NSS may be slow: LDAP, sssd).
* :class:`HostnameResolver` never blocks: it answers from a cache and queues reverse lookups for a
  background thread. Names a process actually resolved (learned from DNS answers by
  :class:`DnsLearner`, fed by the kernel) beat reverse lookups, which are useless behind CDNs.

Every input from outside (``/proc`` contents, packets) is validated; bad input is counted and skipped.
"""

from __future__ import annotations

import collections
import hashlib
import io
import ipaddress
import logging
import os
import queue
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from extension.events import ProcessRecord

try:
    import pwd
except ImportError:  # Windows: users are named from the process token (extension.enrich_windows)
    pwd = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# open() flags for hashing: not following into a terminal, not inherited, not blocking on a FIFO
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)
for _flag in ("O_NONBLOCK", "O_CLOEXEC", "O_NOCTTY", "O_NOINHERIT"):
    _OPEN_FLAGS |= getattr(os, _flag, 0)

__all__ = [
    "DnsLearner",
    "FileHasher",
    "HostnameResolver",
    "PacketError",
    "ProcessCache",
    "ProcessInfo",
    "ProcessLookup",
    "UdpDatagram",
    "UserNames",
    "extract_udp_datagram",
    "kernel_dev_to_st_dev",
    "local_hostname",
    "parse_dns_answers",
    "platform_process_cache",
]

K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A bounded mapping that forgets the least recently used key. Not thread-safe by itself."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.max_entries = max_entries
        self._data: collections.OrderedDict[K, V] = collections.OrderedDict()
        self.evictions = 0

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        return self._data.get(key)

    def put(self, key: K, value: V) -> list[tuple[K, V]]:
        """Store ``value``; returns the entries evicted to make room."""
        self._data[key] = value
        self._data.move_to_end(key)
        evicted = []
        while len(self._data) > self.max_entries:
            evicted.append(self._data.popitem(last=False))
            self.evictions += 1
        return evicted

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))


# --- executables ---------------------------------------------------------------------------------

FileKey = tuple[int, int, int, int]  # st_dev, st_ino, st_mtime_ns, st_size


def kernel_dev_to_st_dev(dev: int) -> int:
    """A device number as the kernel keeps it (``sb->s_dev``: major << 20 | minor) as ``st_dev``."""
    return os.makedev(dev >> 20, dev & 0xFFFFF)


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What the kernel says about a file: compare with ``os.stat`` before trusting a path."""

    st_dev: int  # already in os.stat's encoding (see kernel_dev_to_st_dev)
    st_ino: int
    mtime_sec: int  # 0: unknown (kernels whose inode has no i_mtime_sec), not compared
    size: int

    def matches_key(self, key: FileKey) -> bool:
        st_dev, st_ino, mtime_ns, size = key
        return (
            st_dev == self.st_dev
            and st_ino == self.st_ino
            and size == self.size
            and (self.mtime_sec == 0 or mtime_ns // 1_000_000_000 == self.mtime_sec)
        )

    def matches(self, st: os.stat_result) -> bool:
        return self.matches_key((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))


class FileHasher:
    """SHA-256 of files, cached by (st_dev, st_ino, st_mtime_ns, st_size) in a bounded LRU.

    A file is opened first and identified with ``fstat`` on the open descriptor, so the hash always
    belongs to the identity it is cached under. Opening ``/proc/<pid>/exe`` works even when the
    executable was deleted or replaced since the process started. Thread-safe.
    """

    def __init__(self, max_entries: int = 4096, *, max_file_bytes: int = 1 << 30) -> None:
        self._cache: _Lru[FileKey, str] = _Lru(max_entries)
        self._by_inode: dict[tuple[int, int], FileKey] = {}
        self._lock = threading.Lock()
        self.max_file_bytes = max_file_bytes
        self.hits = 0
        self.misses = 0  # files actually read and hashed
        self.errors = 0  # not openable, not a regular file, changed while hashed
        self.skipped = 0  # larger than max_file_bytes

    def __len__(self) -> int:
        return len(self._cache)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._cache),
                "hits": self.hits,
                "misses": self.misses,
                "errors": self.errors,
                "skipped": self.skipped,
                "evictions": self._cache.evictions,
            }

    def hash_path(self, path: str | os.PathLike[str], *, expect: FileIdentity | None = None) -> str:
        """Hex SHA-256 of the file at ``path``; "" (logged at debug) when it cannot be read.

        With ``expect``, the file is hashed only if the opened file is that one (else "").
        """
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            self._count_error()
            log.debug("cannot open %s to hash it: %s", path, exc)
            return ""
        try:
            with open(fd, "rb", closefd=True) as handle:
                return self._hash_open(handle, path, expect)
        except OSError as exc:
            self._count_error()
            log.debug("cannot hash %s: %s", path, exc)
            return ""

    def hash_process(self, pid: int, proc_root: Path = Path("/proc")) -> str:
        """Hex SHA-256 of a running process's executable, through ``/proc/<pid>/exe``."""
        return self.hash_path(proc_root / str(pid) / "exe")

    def cached(self, identity: FileIdentity) -> str:
        """The hash of a file hashed before with this identity, or "" (never reads the file)."""
        with self._lock:
            key = self._by_inode.get((identity.st_dev, identity.st_ino))
            if key is None or not identity.matches_key(key):
                return ""
            digest = self._cache.get(key)
            if digest is None:
                return ""
            self.hits += 1
            return digest

    def _count_error(self) -> None:
        with self._lock:
            self.errors += 1

    def _hash_open(
        self, handle: io.BufferedReader, path: str | os.PathLike[str], expect: FileIdentity | None
    ) -> str:
        before = os.fstat(handle.fileno())
        if not stat.S_ISREG(before.st_mode):
            self._count_error()
            log.debug("not hashing %s: not a regular file", path)
            return ""
        if expect is not None and not expect.matches(before):
            self._count_error()
            log.debug("not hashing %s: it is not the file the kernel reported", path)
            return ""
        key = (before.st_dev, before.st_ino, before.st_mtime_ns, before.st_size)
        with self._lock:
            digest = self._cache.get(key)
            if digest is not None:
                self.hits += 1
                return digest
            if before.st_size > self.max_file_bytes:
                self.skipped += 1
                log.debug("not hashing %s: %d bytes is over the limit", path, before.st_size)
                return ""
            self.misses += 1
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
        after = os.fstat(handle.fileno())
        if (after.st_mtime_ns, after.st_size) != (before.st_mtime_ns, before.st_size):
            self._count_error()
            log.debug("not caching the hash of %s: it changed while it was read", path)
            return ""
        with self._lock:
            for old_key, _ in self._cache.put(key, digest):
                if self._by_inode.get((old_key[0], old_key[1])) == old_key:
                    del self._by_inode[(old_key[0], old_key[1])]
            self._by_inode[(key[0], key[1])] = key
        return digest


# --- processes -----------------------------------------------------------------------------------

MAX_CMDLINE_CHARS = 4096


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    name: str  # comm
    path: str  # the executable; "" when unknown. "... (deleted)" when it was deleted while running
    sha256: str  # hex SHA-256 of the executable; "" when unknown
    start_time: int  # epoch seconds; 0 when unknown
    parent_pid: int  # 0 when unknown
    cmdline: str  # arguments joined by spaces, at most MAX_CMDLINE_CHARS
    uid: int  # real uid (on Windows the RID of the token's user SID)
    username: str = ""  # on Windows DOMAIN\\name from the token; on Linux named from uid by UserNames


class ProcessLookup(Protocol):
    """What the collector asks of a platform's process cache (:class:`ProcessCache` on Linux,
    :class:`extension.enrich_windows.WindowsProcessCache` on Windows)."""

    def observe(self, record: ProcessRecord) -> None: ...

    def lookup(self, pid: int, comm: str, start_ns: int | None = None, *, uid: int = 0) -> ProcessInfo: ...

    def stats(self) -> dict[str, int]: ...


def platform_process_cache(platform: str = sys.platform) -> ProcessLookup:
    """This platform's process cache: ``/proc`` on Linux, the Win32 API on Windows."""
    if platform == "win32":
        from extension.enrich_windows import WindowsProcessCache  # noqa: PLC0415 - Windows only

        return WindowsProcessCache()
    return ProcessCache()


@dataclass(frozen=True, slots=True)
class _ProcStat:
    comm: str
    ppid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat: clock ticks since boot


@dataclass(slots=True)
class _Entry:
    info: ProcessInfo
    start_ticks: int | None  # None: the start time is not known
    checked: float  # monotonic time /proc last confirmed (or could not deny) this entry


def _read_boot_time(proc_root: Path) -> int:
    try:
        with open(proc_root / "stat", "rb") as handle:
            for line in handle:
                if line.startswith(b"btime "):
                    value = int(line.split()[1])
                    if value > 0:
                        return value
    except (OSError, ValueError, IndexError) as exc:
        log.warning("cannot read the boot time from %s/stat (%s): process start times are 0", proc_root, exc)
        return 0
    log.warning("no btime in %s/stat: process start times are 0", proc_root)
    return 0


class ProcessCache:
    """pid -> :class:`ProcessInfo`, read from ``/proc`` while the process runs and kept after it exits.

    Entries are keyed by pid and start time (clock ticks since boot, as in ``/proc/<pid>/stat``), so a
    reused pid never inherits another process's facts. Bounded: the least recently used entries go.
    Never raises for a vanished process. Thread-safe (one lock; the callers are the drain loop).
    """

    def __init__(
        self,
        *,
        proc_root: Path = Path("/proc"),
        hasher: FileHasher | None = None,
        max_entries: int = 8192,
        recheck_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.proc_root = proc_root
        self.hasher = hasher if hasher is not None else FileHasher()
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._boot_time = _read_boot_time(proc_root)
        ticks = os.sysconf("SC_CLK_TCK")
        self._clk_tck = ticks if ticks > 0 else 100
        self._ns_per_tick = 1_000_000_000 // self._clk_tck
        self._entries: _Lru[tuple[int, int | None], _Entry] = _Lru(max_entries)
        self._latest: dict[int, int | None] = {}  # pid -> start ticks of its newest entry
        self._dead: _Lru[tuple[int, int], bool] = _Lru(max_entries)  # (pid, start) known to be gone
        self._gone: _Lru[int, float] = _Lru(max_entries)  # pid -> when /proc last had nothing
        self._lock = threading.RLock()
        self._warned_start_mismatch = False
        self.counters: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._entries), "evictions": self._entries.evictions, **self.counters}

    def start_ticks(self, start_ns: int) -> int:
        """Kernel task start time (CLOCK_BOOTTIME ns) in the clock ticks of ``/proc/<pid>/stat``."""
        return start_ns // self._ns_per_tick

    # -- public API --

    def observe(self, record: ProcessRecord) -> None:
        """The kernel saw this process on the network: read ``/proc`` now, while it still runs."""
        if record.pid <= 0:
            self.counters["bad_records"] += 1
            return
        with self._lock:
            self.counters["observed"] += 1
            expected = self.start_ticks(record.start_ns) if record.start_ns > 0 else None
            entry: _Entry | None = None
            proc = self._read_stat(record.pid)
            if proc is not None and (expected is None or proc.start_ticks == expected):
                entry = self._snapshot(record.pid, proc)
            elif proc is not None:
                # another process holds the pid already, or the BPF side and /proc disagree on what a
                # start time is (it must be the group leader's start_boottime)
                self.counters["start_mismatches"] += 1
                level = logging.DEBUG if self._warned_start_mismatch else logging.WARNING
                self._warned_start_mismatch = True
                log.log(
                    level,
                    "pid %d: kernel start time %d ticks, /proc says %d; using the kernel's data",
                    record.pid,
                    expected,
                    proc.start_ticks,
                )
            if entry is None:
                self.counters["kernel_fallbacks"] += 1
                entry = self._from_record(record, expected)
            elif not entry.info.path or not entry.info.sha256:
                entry = self._fill_from_record(entry, record)
            self._store(record.pid, entry)

    def lookup(self, pid: int, comm: str, start_ns: int | None = None, *, uid: int = 0) -> ProcessInfo:
        """What is known about a process; reads ``/proc`` for one not seen before.

        With ``start_ns`` (kernel CLOCK_BOOTTIME ns of the task start) the answer is about exactly
        that process even if its pid was reused since. Without it, ``/proc/<pid>/stat`` is checked
        (at most every ``recheck_seconds``) to notice a reused pid. A process that is gone and was
        never seen yields its ``comm`` as name and empty path and hash (``uid`` as given).
        """
        if pid <= 0:
            return self._unknown(pid, comm, uid)
        with self._lock:
            now = self._clock()
            if start_ns is not None and start_ns > 0:
                return self._lookup_exact(pid, comm, self.start_ticks(start_ns), uid, now)
            ticks = self._latest.get(pid)
            entry = self._entries.get((pid, ticks)) if pid in self._latest else None
            if entry is not None and now - entry.checked < self.recheck_seconds:
                self.counters["hits"] += 1
                return entry.info
            if entry is None:
                gone_at = self._gone.get(pid)
                if gone_at is not None and now - gone_at < self.recheck_seconds:
                    return self._unknown(pid, comm, uid)
            proc = self._read_stat(pid)
            if proc is None:
                if entry is not None:  # exited: what we saw while it ran is still the answer
                    entry.checked = now
                    self.counters["hits"] += 1
                    return entry.info
                self._gone.put(pid, now)
                self.counters["unknown"] += 1
                return self._unknown(pid, comm, uid)
            if entry is not None and entry.start_ticks == proc.start_ticks:
                complete = bool(entry.info.cmdline) or not entry.info.path
                if proc.comm == entry.info.name and complete:
                    entry.checked = now
                    self.counters["hits"] += 1
                    return entry.info
                # Same pid and start tick but another name: it exec'd (or the pid was reused within
                # one clock tick). No arguments yet: it was read in the middle of an exec. Read again.
                self.counters["refreshed"] += 1
            elif entry is not None:
                self.counters["pid_reuse"] += 1
                log.debug("pid %d was reused (start %s -> %d)", pid, entry.start_ticks, proc.start_ticks)
            fresh = self._snapshot(pid, proc)
            if fresh is None:  # vanished while we read it
                if entry is not None:
                    return entry.info
                self.counters["unknown"] += 1
                return self._unknown(pid, comm, uid)
            self._store(pid, fresh)
            return fresh.info

    # -- internals --

    def _lookup_exact(self, pid: int, comm: str, ticks: int, uid: int, now: float) -> ProcessInfo:
        entry = self._entries.get((pid, ticks))
        if entry is not None:
            self.counters["hits"] += 1
            return entry.info
        if (pid, ticks) not in self._dead:
            proc = self._read_stat(pid)
            if proc is not None and proc.start_ticks == ticks:
                fresh = self._snapshot(pid, proc)
                if fresh is not None:
                    self._store(pid, fresh)
                    return fresh.info
            else:
                # that process is gone for good (its pid is free or belongs to another process)
                self._dead.put((pid, ticks), True)
        # Known only by pid, start unknown (a kernel record without a start time)?
        loose = self._entries.get((pid, None))
        if loose is not None:
            self.counters["hits"] += 1
            return loose.info
        self.counters["unknown"] += 1
        return self._unknown(pid, comm, uid)

    @staticmethod
    def _unknown(pid: int, comm: str, uid: int) -> ProcessInfo:
        return ProcessInfo(pid, comm, "", "", 0, 0, "", uid)

    def _store(self, pid: int, entry: _Entry) -> None:
        for (old_pid, old_ticks), _ in self._entries.put((pid, entry.start_ticks), entry):
            if old_pid in self._latest and self._latest[old_pid] == old_ticks:
                del self._latest[old_pid]
        self._latest[pid] = entry.start_ticks
        self._gone.pop(pid)

    def _epoch(self, ticks: int | None) -> int:
        if ticks is None or not self._boot_time:
            return 0
        return self._boot_time + ticks // self._clk_tck

    def _proc(self, pid: int, name: str) -> Path:
        return self.proc_root / str(pid) / name

    def _read_stat(self, pid: int) -> _ProcStat | None:
        """Parse ``/proc/<pid>/stat``; None when the process is gone or the file is malformed."""
        try:
            with open(self._proc(pid, "stat"), "rb") as handle:
                raw = handle.read(4096)
        except OSError:  # ENOENT, ESRCH, EACCES: the process is gone or hidden
            return None
        text = raw.decode("utf-8", "replace")
        left, right = text.find("("), text.rfind(")")
        fields = text[right + 2 :].split() if right > left >= 0 else []
        try:
            if text[:left].strip() != str(pid) or len(fields) < 20:
                raise ValueError("unexpected layout")
            ppid, start = int(fields[1]), int(fields[19])
            if ppid < 0 or start < 0:
                raise ValueError("negative field")
        except ValueError as exc:
            self.counters["bad_proc"] += 1
            log.debug("pid %d: malformed %s (%s)", pid, self._proc(pid, "stat"), exc)
            return None
        return _ProcStat(comm=text[left + 1 : right], ppid=ppid, start_ticks=start)

    def _read_uid(self, pid: int) -> int | None:
        try:
            with open(self._proc(pid, "status"), "rb") as handle:
                for line in handle:
                    if line.startswith(b"Uid:"):
                        uid = int(line.split()[1])  # real, effective, saved, filesystem
                        return uid if uid >= 0 else None
        except OSError:
            return None
        except (ValueError, IndexError):
            self.counters["bad_proc"] += 1
        return None

    def _read_cmdline(self, pid: int) -> str:
        try:
            with open(self._proc(pid, "cmdline"), "rb") as handle:
                raw = handle.read(MAX_CMDLINE_CHARS * 4)
        except OSError:
            return ""
        args = raw.rstrip(b"\x00").split(b"\x00")
        return " ".join(arg.decode("utf-8", "replace") for arg in args)[:MAX_CMDLINE_CHARS]

    def _snapshot(self, pid: int, proc: _ProcStat) -> _Entry | None:
        """Everything /proc says about a running process; None if it changed hands while read."""
        self.counters["proc_reads"] += 1
        try:
            path = os.readlink(self._proc(pid, "exe"))
        except OSError:  # gone, a zombie, a kernel thread
            path = ""
        sha = self.hasher.hash_process(pid, self.proc_root) if path else ""
        cmdline = self._read_cmdline(pid)
        uid = self._read_uid(pid)
        again = self._read_stat(pid)
        if again is None or again.start_ticks != proc.start_ticks:
            self.counters["vanished"] += 1
            return None
        if uid is None:
            try:
                uid = os.stat(self._proc(pid, "")).st_uid  # effective uid, if status was unreadable
            except OSError:
                uid = 0
        info = ProcessInfo(
            pid=pid,
            name=proc.comm,
            path=path,
            sha256=sha if path else "",
            start_time=self._epoch(proc.start_ticks),
            parent_pid=proc.ppid,
            cmdline=cmdline,
            uid=uid,
        )
        return _Entry(info, proc.start_ticks, self._clock())

    def _kernel_executable(self, record: ProcessRecord) -> tuple[str, str]:
        """(path, sha256) from what the kernel sent: the hash only for a verified file."""
        identity = FileIdentity(
            st_dev=kernel_dev_to_st_dev(record.exe_dev),
            st_ino=record.exe_ino,
            mtime_sec=record.exe_mtime,
            size=record.exe_size,
        )
        sha = self.hasher.cached(identity) if record.exe_ino else ""
        if not sha and record.exe_path and record.exe_ino:
            try:
                st = os.stat(record.exe_path)
            except OSError:
                st = None
            if st is not None and identity.matches(st):
                sha = self.hasher.hash_path(record.exe_path, expect=identity)
            else:
                # the path is relative to its mount (a container's overlay, a separate /usr) or the
                # file was replaced: keep the name, but do not hash some other file under it
                self.counters["kernel_path_unverified"] += 1
        if sha:
            self.counters["kernel_hashes"] += 1
        return record.exe_path, sha

    def _from_record(self, record: ProcessRecord, ticks: int | None) -> _Entry:
        path, sha = self._kernel_executable(record)
        info = ProcessInfo(
            pid=record.pid,
            name=record.comm,
            path=path,
            sha256=sha,
            start_time=self._epoch(ticks),
            parent_pid=record.ppid,
            cmdline="",
            uid=record.uid,
        )
        return _Entry(info, ticks, self._clock())

    def _fill_from_record(self, entry: _Entry, record: ProcessRecord) -> _Entry:
        info = entry.info
        if info.path:  # /proc had the path but hashing failed: maybe the same file was hashed before
            identity = FileIdentity(
                kernel_dev_to_st_dev(record.exe_dev), record.exe_ino, record.exe_mtime, record.exe_size
            )
            sha = self.hasher.cached(identity) if record.exe_ino else ""
            path = info.path
        else:  # exited between the kernel event and now (a zombie has no exe link)
            path, sha = self._kernel_executable(record)
        if not sha and not path:
            return entry
        filled = ProcessInfo(
            pid=info.pid,
            name=info.name,
            path=path,
            sha256=sha or info.sha256,
            start_time=info.start_time,
            parent_pid=info.parent_pid,
            cmdline=info.cmdline,
            uid=info.uid,
        )
        return _Entry(filled, entry.start_ticks, entry.checked)


# --- users ---------------------------------------------------------------------------------------


class UserNames:
    """uid -> user name through ``pwd`` (NSS), cached; "" for unknown uids. Never raises."""

    def __init__(
        self,
        *,
        max_entries: int = 1024,
        ttl_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache: _Lru[int, tuple[str, float]] = _Lru(max_entries)
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self.lookups = 0

    def lookup(self, uid: int) -> str:
        if uid < 0 or uid > 0xFFFFFFFF:
            return ""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(uid)
            if cached is not None and cached[1] > now:
                return cached[0]
        try:
            name = pwd.getpwuid(uid).pw_name if pwd is not None else ""
        except (KeyError, OverflowError, ValueError, OSError):
            name = ""
        with self._lock:
            self.lookups += 1
            self._cache.put(uid, (name, now + self._ttl))
        return name


# --- host names ----------------------------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_NAME_CHARS = 253


def _canonical_address(address: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(address.strip())
    except (ValueError, AttributeError):
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _clean_name(name: str) -> str:
    """A host name fit to store: lower case, no final dot, printable, at most 253 characters."""
    cleaned = name.strip().rstrip(".").lower()
    if not cleaned or len(cleaned) > MAX_NAME_CHARS or not cleaned.isprintable() or " " in cleaned:
        return ""
    return cleaned


def local_hostname(address: str) -> str:
    """The name of a local endpoint: "localhost" on loopback, this host's name otherwise, "" for the
    unspecified address (a socket bound to any address) or something that is not an address."""
    ip = _canonical_address(address)
    if ip is None or ip.is_unspecified:
        return ""
    if ip.is_loopback:
        return "localhost"
    try:
        return _clean_name(socket.gethostname())
    except OSError:
        return ""


def _reverse_lookup(address: str) -> str:
    name = socket.gethostbyaddr(address)[0]
    return "" if _canonical_address(name) is not None else name  # some resolvers echo the address


@dataclass(slots=True)
class _Name:
    name: str  # "" for a failed reverse lookup (negative entry)
    expires: float
    learned: bool  # from a DNS answer some process received


class HostnameResolver:
    """address -> host name without ever blocking the caller.

    :meth:`lookup` answers from the cache; on a miss it queues a reverse lookup for a background
    thread and returns "" (the name shows up on later lookups). :meth:`learn` records a name a process
    actually resolved; learned names beat reverse lookups. Bounded LRU with TTLs; failed reverse
    lookups are remembered for ``negative_ttl_seconds``. When the queue is full, lookups are dropped
    and counted.
    """

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        ttl_seconds: float = 3600.0,
        negative_ttl_seconds: float = 300.0,
        workers: int = 1,
        resolve: bool = True,
        queue_size: int = 1024,
        reverse_lookup: Callable[[str], str] = _reverse_lookup,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache: _Lru[str, _Name] = _Lru(max_entries)
        self._ttl = ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._resolve = resolve
        self._reverse = reverse_lookup
        self._clock = clock
        self._queue: queue.Queue[str] = queue.Queue(maxsize=max(1, queue_size))
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self.counters: collections.Counter[str] = collections.Counter()
        self._threads: list[threading.Thread] = []
        if resolve:
            for index in range(max(1, workers)):
                thread = threading.Thread(target=self._work, name=f"hostname-resolver-{index}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def __enter__(self) -> HostnameResolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._cache)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._cache),
                "evictions": self._cache.evictions,
                "pending": len(self._pending),
                **self.counters,
            }

    def lookup(self, address: str) -> str:
        """The known name of ``address`` or ""; never blocks (queues a reverse lookup on a miss)."""
        ip = _canonical_address(address)
        if ip is None:
            with self._lock:
                self.counters["invalid"] += 1
            return ""
        if ip.is_loopback:
            return "localhost"
        if ip.is_unspecified or ip.is_multicast:
            return ""
        key = str(ip)
        now = self._clock()
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                if entry.expires > now:
                    self.counters["hits"] += 1
                    return entry.name
                self._cache.pop(key)
            self.counters["misses"] += 1
            if not self._resolve or self._stop.is_set() or key in self._pending:
                return ""
            try:
                self._queue.put_nowait(key)
            except queue.Full:
                self.counters["dropped"] += 1
                return ""
            self._pending.add(key)
            self.counters["queued"] += 1
        return ""

    def learn(self, address: str, name: str) -> None:
        """Remember that a process resolved ``name`` to ``address`` (from a DNS answer)."""
        ip = _canonical_address(address)
        cleaned = _clean_name(name) if isinstance(name, str) else ""
        if ip is None or not cleaned:
            with self._lock:
                self.counters["invalid"] += 1
            return
        if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
            return  # sinkholed names (0.0.0.0, 127.0.0.1) say nothing about the address
        with self._lock:
            self._cache.put(str(ip), _Name(cleaned, self._clock() + self._ttl, learned=True))
            self.counters["learned"] += 1

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no reverse lookup is queued or running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def close(self) -> None:
        """Stop the background threads (a lookup stuck in the system resolver is left to die)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2.0)
        with self._idle:
            self._pending.clear()
            self._idle.notify_all()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                key = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                name = _clean_name(self._reverse(key))
            except Exception as exc:  # socket.herror/gaierror, or anything the resolver does
                log.debug("reverse lookup of %s failed: %s", key, exc)
                name = ""
            with self._idle:
                self._pending.discard(key)
                now = self._clock()
                current = self._cache.peek(key)
                if current is not None and current.learned and current.expires > now:
                    self.counters["reverse_ignored"] += 1  # a learned name beats a reverse lookup
                elif name:
                    self._cache.put(key, _Name(name, now + self._ttl, learned=False))
                    self.counters["resolved"] += 1
                else:
                    self._cache.put(key, _Name("", now + self._negative_ttl, learned=False))
                    self.counters["failed"] += 1
                self._idle.notify_all()


# --- DNS answers from the wire -------------------------------------------------------------------


class PacketError(ValueError):
    """A captured packet that is malformed (truncated, inconsistent lengths, not DNS)."""


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    src_address: str
    src_port: int
    dst_address: str
    dst_port: int
    payload: bytes


IPPROTO_UDP = 17
_IPV6_SKIPPABLE = {0, 43, 60}  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44


def _udp_segment(segment: bytes, src: IPAddress, dst: IPAddress) -> UdpDatagram:
    if len(segment) < 8:
        raise PacketError(f"UDP header truncated ({len(segment)} bytes)")
    sport, dport, length, _ = struct.unpack_from("!HHHH", segment)
    if length < 8 or length > len(segment):
        raise PacketError(f"UDP length {length} does not fit the {len(segment)} bytes captured")
    return UdpDatagram(str(src), sport, str(dst), dport, bytes(segment[8:length]))


def extract_udp_datagram(packet: bytes) -> UdpDatagram | None:
    """The UDP datagram in an IPv4 or IPv6 packet (starting at the IP header).

    Returns None for a well-formed packet that is not UDP or is a non-first (or incomplete) fragment;
    raises :class:`PacketError` for a malformed one.
    """
    if not packet:
        raise PacketError("empty packet")
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            raise PacketError(f"IPv4 header truncated ({len(packet)} bytes)")
        header_len = (packet[0] & 0x0F) * 4
        total = struct.unpack_from("!H", packet, 2)[0]
        if header_len < 20 or total < header_len or total > len(packet):
            raise PacketError(f"IPv4 lengths inconsistent (header {header_len}, total {total})")
        if struct.unpack_from("!H", packet, 6)[0] & 0x3FFF:  # more fragments, or not the first
            return None
        if packet[9] != IPPROTO_UDP:
            return None
        src4 = ipaddress.IPv4Address(packet[12:16])
        dst4 = ipaddress.IPv4Address(packet[16:20])
        return _udp_segment(packet[header_len:total], src4, dst4)
    if version == 6:
        if len(packet) < 40:
            raise PacketError(f"IPv6 header truncated ({len(packet)} bytes)")
        end = 40 + struct.unpack_from("!H", packet, 4)[0]
        if end == 40 or end > len(packet):
            raise PacketError(f"IPv6 payload length {end - 40} does not fit {len(packet)} bytes")
        src6 = ipaddress.IPv6Address(packet[8:24])
        dst6 = ipaddress.IPv6Address(packet[24:40])
        next_header, offset = packet[6], 40
        for _ in range(8):
            if next_header == IPPROTO_UDP:
                return _udp_segment(packet[offset:end], src6, dst6)
            if next_header in _IPV6_SKIPPABLE:
                if offset + 8 > end:
                    raise PacketError("IPv6 extension header truncated")
                next_header, offset = packet[offset], offset + (packet[offset + 1] + 1) * 8
            elif next_header == _IPV6_FRAGMENT:
                if offset + 8 > end:
                    raise PacketError("IPv6 fragment header truncated")
                if struct.unpack_from("!H", packet, offset + 2)[0] & 0xFFF9:  # offset, or more to come
                    return None
                next_header, offset = packet[offset], offset + 8
            else:
                return None
            if offset > end:
                raise PacketError("IPv6 extension headers run past the packet")
        return None
    raise PacketError(f"not an IP packet (version {version})")


_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
_MAX_CHAIN = 16


def parse_dns_answers(payload: bytes) -> list[tuple[str, str]]:
    """(address, name) pairs from the A/AAAA answers of a DNS response message.

    The name is the one that was asked for: CNAME chains are followed back from the address record
    to the question. Answers not connected to the question are ignored, as are queries, errors and
    anything but opcode QUERY. Raises :class:`PacketError` if ``payload`` is not a DNS message.
    """
    try:
        message = dns.message.from_wire(payload, ignore_trailing=True)
    except Exception as exc:  # dnspython raises many types on hostile input
        raise PacketError(f"not a DNS message: {exc}") from exc
    if not message.flags & dns.flags.QR:
        return []
    if message.opcode() != dns.opcode.QUERY or message.rcode() != dns.rcode.NOERROR:
        return []
    questions = {rrset.name for rrset in message.question if rrset.rdclass == dns.rdataclass.IN}
    alias_of: dict[dns.name.Name, dns.name.Name] = {}  # CNAME target -> the name that points to it
    for rrset in message.answer:
        if rrset.rdtype == dns.rdatatype.CNAME and rrset.rdclass == dns.rdataclass.IN:
            for rdata in rrset:
                alias_of.setdefault(rdata.target, rrset.name)
    pairs: list[tuple[str, str]] = []
    for rrset in message.answer:
        if rrset.rdtype not in _ADDRESS_TYPES or rrset.rdclass != dns.rdataclass.IN:
            continue
        asked: dns.name.Name | None = rrset.name
        for _ in range(_MAX_CHAIN):
            if asked is None or asked in questions:
                break
            asked = alias_of.get(asked)
        if asked is None or asked not in questions:
            continue
        name = _clean_name(asked.to_text(omit_final_dot=True))
        if not name:
            continue
        for rdata in rrset:
            ip = _canonical_address(str(rdata.address))
            if ip is not None and (pair := (str(ip), name)) not in pairs:
                pairs.append(pair)
    return pairs


class DnsLearner:
    """Learns the names processes resolve from the DNS answers this host receives.

    The kernel passes up every UDP datagram from port 53 delivered to a local socket (a cgroup
    ingress BPF program, see extension/bpf/netflow.bpf.c); :meth:`handle_packet` parses one and
    feeds (address, asked name) pairs to :meth:`HostnameResolver.learn`. Bad packets are counted and
    skipped. DNS over TCP, DoT and DoH are not seen.

    Why not a packet socket: an AF_PACKET socket for all protocols is a tap on the transmit path and
    the kernel clones every packet the host sends for it; one bound to IP makes every received packet
    shared, so the IP layer clones it. Either measured as a 15-20% slowdown of a loopback send loop
    (docs/benchmarks.md); the BPF program costs two small loads per packet.
    """

    def __init__(self, resolver: HostnameResolver) -> None:
        self.resolver = resolver
        self.counters: collections.Counter[str] = collections.Counter()

    def stats(self) -> dict[str, int]:
        return dict(self.counters)

    def handle_packet(self, packet: bytes) -> int:
        """Process one packet (starting at the IP header); returns the number of names learned."""
        self.counters["packets"] += 1
        try:
            datagram = extract_udp_datagram(packet)
            if datagram is None or datagram.src_port != 53:
                self.counters["skipped"] += 1
                return 0
            pairs = parse_dns_answers(datagram.payload)
        except PacketError as exc:
            self.counters["bad_packets"] += 1
            log.debug("skipping a bad DNS packet: %s", exc)
            return 0
        self.counters["responses"] += 1
        for address, name in pairs:
            self.resolver.learn(address, name)
        self.counters["learned"] += len(pairs)
        return len(pairs)

    def handle_resolved(self, name: str, addresses: tuple[str, ...]) -> int:
        """A query the platform's resolver reported as answered (Windows' DNS client); returns the
        number of names learned (the resolver validates and counts bad input)."""
        self.counters["responses"] += 1
        for address in addresses:
            self.resolver.learn(address, name)
        self.counters["learned"] += len(addresses)
        return len(addresses)
