"""Enrichment against the real system: real files, real /proc, real child processes, real sockets.

Tests that need root (writing ns_last_pid, packet sockets, binding port 53) skip without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import logging
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset
import pytest

from extension.enrich import (
    DnsLearner,
    FileHasher,
    HostnameResolver,
    PacketError,
    ProcessCache,
    ProcessInfo,
    UserNames,
    extract_udp_datagram,
    kernel_dev_to_st_dev,
    local_hostname,
    parse_dns_answers,
)
from extension.events import ProcessRecord

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CLK_TCK = os.sysconf("SC_CLK_TCK")
SLEEP = os.path.realpath(shutil.which("sleep") or "/bin/sleep")
PID_LIMIT = 1 << 22  # PID_MAX_LIMIT: no process ever has a pid above this


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def kernel_dev(st_dev: int) -> int:
    """st_dev in the kernel's internal encoding (what the BPF program reads from sb->s_dev)."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def start_ns_of(pid: int) -> int:
    """The task start time as the kernel reports it (CLOCK_BOOTTIME ns), at /proc's precision."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = int(stat[stat.rfind(")") + 2 :].split()[19])
    return ticks * (1_000_000_000 // CLK_TCK)


def record_for(
    pid: int,
    exe: str | Path,
    *,
    start_ns: int = 0,
    comm: str = "proc",
    ppid: int = 1,
    uid: int = 0,
    exe_path: str | None = None,
    ino_delta: int = 0,
) -> ProcessRecord:
    """A ProcessRecord as the kernel would send it for a process running ``exe``."""
    st = os.stat(exe)
    return ProcessRecord(
        ts_ns=time.monotonic_ns(),
        start_ns=start_ns,
        pid=pid,
        ppid=ppid,
        uid=uid,
        comm=comm,
        exe_dev=kernel_dev(st.st_dev),
        exe_ino=st.st_ino + ino_delta,
        exe_mtime=st.st_mtime_ns // 1_000_000_000,
        exe_size=st.st_size,
        exe_path=str(exe) if exe_path is None else exe_path,
    )


def free_pid(offset: int = 0) -> int:
    pid = PID_LIMIT + 1000 + offset
    assert not Path(f"/proc/{pid}").exists()
    return pid


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    children: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(list(argv))
        children.append(child)
        wait_exec(child.pid)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()


def wait_exec(pid: int) -> None:
    """Popen returns once the child began its exec; its arguments show up in /proc a moment later."""
    assert wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes() != b"")


def stop(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not Path(f"/proc/{child.pid}").exists()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --- FileHasher ----------------------------------------------------------------------------------


def test_hash_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "tool"
    path.write_bytes(b"version one")
    hasher = FileHasher()

    assert hasher.hash_path(path) == hashlib.sha256(b"version one").hexdigest()
    assert (hasher.hits, hasher.misses) == (0, 1)
    assert hasher.hash_path(path) == hashlib.sha256(b"version one").hexdigest()
    assert (hasher.hits, hasher.misses) == (1, 1)

    # same size, new content and mtime: hashed again
    before = path.stat()
    path.write_bytes(b"version two")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))
    assert hasher.hash_path(path) == hashlib.sha256(b"version two").hexdigest()
    assert (hasher.hits, hasher.misses) == (1, 2)

    # new size, mtime forced back to the old value: the size alone forces a re-hash
    path.write_bytes(b"version three")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))
    assert hasher.hash_path(path) == hashlib.sha256(b"version three").hexdigest()
    assert (hasher.hits, hasher.misses) == (1, 3)


def test_hash_errors_yield_empty_and_never_block(tmp_path: Path) -> None:
    hasher = FileHasher()
    assert hasher.hash_path(tmp_path / "missing") == ""
    assert hasher.hash_path(tmp_path) == ""  # a directory
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert hasher.hash_path(fifo) == ""  # opening a FIFO for reading would block without O_NONBLOCK
    assert time.monotonic() - started < 1
    assert hasher.errors == 3
    assert hasher.misses == 0


def test_hash_cache_is_bounded_and_size_limited(tmp_path: Path) -> None:
    hasher = FileHasher(max_entries=2, max_file_bytes=100)
    files = []
    for index in range(3):
        path = tmp_path / f"f{index}"
        path.write_bytes(b"x" * (index + 1))
        files.append(path)
        hasher.hash_path(path)
    assert len(hasher) == 2
    assert hasher.stats()["evictions"] == 1
    hasher.hash_path(files[2])
    assert hasher.hits == 1
    hasher.hash_path(files[0])  # evicted: read again
    assert hasher.misses == 4

    big = tmp_path / "big"
    big.write_bytes(b"y" * 101)
    assert hasher.hash_path(big) == ""
    assert hasher.skipped == 1


def test_hash_of_a_running_process_whose_executable_was_deleted(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    copy = tmp_path / "mysleep"
    shutil.copy2(SLEEP, copy)
    child = spawn(str(copy), "30")
    expected = sha256_of(copy)
    copy.unlink()

    hasher = FileHasher()
    assert hasher.hash_process(child.pid) == expected
    info = ProcessCache(hasher=hasher).lookup(child.pid, "mysleep")
    assert info.path == f"{copy} (deleted)"
    assert info.sha256 == expected
    assert hasher.hits == 1  # the second hash of the same inode came from the cache


# --- ProcessCache --------------------------------------------------------------------------------


def test_live_child_process(spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    child = spawn("sleep", "30")
    hasher = FileHasher()
    cache = ProcessCache(hasher=hasher)

    info = cache.lookup(child.pid, "sleep")

    assert info.pid == child.pid
    assert info.name == "sleep"
    assert info.path == SLEEP
    assert info.sha256 == sha256_of(SLEEP)
    assert info.cmdline == "sleep 30"
    assert info.parent_pid == os.getpid()
    assert info.uid == os.getuid()
    assert time.time() - 30 <= info.start_time <= time.time() + 2
    assert hasher.misses == 1

    # the kernel reports it: nothing is hashed again, and the answer is the same
    cache.observe(record_for(child.pid, SLEEP, start_ns=start_ns_of(child.pid), comm="sleep"))
    assert hasher.misses == 1
    assert cache.lookup(child.pid, "sleep") == info
    assert cache.lookup(child.pid, "sleep", start_ns_of(child.pid)) == info


def test_process_that_exits_after_observe_keeps_its_facts(
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    child = spawn("sleep", "30")
    start_ns = start_ns_of(child.pid)
    cache = ProcessCache(recheck_seconds=0)
    cache.observe(record_for(child.pid, SLEEP, start_ns=start_ns, comm="sleep"))
    stop(child)

    info = cache.lookup(child.pid, "sleep")  # /proc is checked (recheck 0) and is gone
    assert info.path == SLEEP
    assert info.sha256 == sha256_of(SLEEP)
    assert info.cmdline == "sleep 30"
    assert cache.lookup(child.pid, "sleep", start_ns) == info


def test_observe_of_an_exited_process_falls_back_to_the_kernel_path(tmp_path: Path) -> None:
    exe = tmp_path / "tool"
    exe.write_bytes(b"\x7fELF pretend executable")
    pid = free_pid()
    start_ns = 5_000 * 1_000_000_000
    cache = ProcessCache()

    cache.observe(record_for(pid, exe, start_ns=start_ns, comm="tool", ppid=42, uid=1000))

    info = cache.lookup(pid, "ignored")
    assert info == cache.lookup(pid, "ignored", start_ns)
    assert info.name == "tool"
    assert info.path == str(exe)
    assert info.sha256 == hashlib.sha256(b"\x7fELF pretend executable").hexdigest()
    assert (info.parent_pid, info.uid, info.cmdline) == (42, 1000, "")
    boot_time = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime")
    )
    assert info.start_time == boot_time + 5_000
    assert cache.stats()["kernel_fallbacks"] == 1


def test_kernel_record_without_mtime_matches_on_device_inode_and_size(tmp_path: Path) -> None:
    # kernels whose struct inode has no i_mtime_sec send 0
    exe = tmp_path / "tool"
    exe.write_bytes(b"old kernel")
    record = record_for(free_pid(), exe, comm="tool")
    cache = ProcessCache()

    cache.observe(dataclasses.replace(record, exe_mtime=0))

    assert cache.lookup(record.pid, "tool").sha256 == hashlib.sha256(b"old kernel").hexdigest()


def test_kernel_path_of_another_file_is_kept_but_not_hashed(tmp_path: Path) -> None:
    exe = tmp_path / "tool"
    exe.write_bytes(b"replaced since the process started")
    pid = free_pid()
    cache = ProcessCache()

    cache.observe(record_for(pid, exe, ino_delta=1, comm="tool"))

    info = cache.lookup(pid, "tool")
    assert info.path == str(exe)
    assert info.sha256 == ""
    assert cache.stats()["kernel_path_unverified"] == 1


def test_kernel_identity_is_answered_from_the_hash_cache(tmp_path: Path) -> None:
    exe = tmp_path / "tool"
    exe.write_bytes(b"hashed while it ran")
    hasher = FileHasher()
    expected = hasher.hash_path(exe)
    record = record_for(free_pid(), exe, comm="tool", exe_path="/usr/lib/relative-to-its-mount/tool")
    exe.unlink()
    cache = ProcessCache(hasher=hasher)

    cache.observe(record)

    info = cache.lookup(record.pid, "tool")
    assert info.path == "/usr/lib/relative-to-its-mount/tool"
    assert info.sha256 == expected
    assert hasher.misses == 1


def test_start_time_mismatch_prefers_the_kernel_record(spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    child = spawn("sleep", "30")
    real_start = start_ns_of(child.pid)
    other_start = real_start - 500 * (1_000_000_000 // CLK_TCK)  # a process that held the pid before
    cache = ProcessCache()

    cache.observe(record_for(child.pid, SLEEP, start_ns=other_start, comm="old"))

    assert cache.stats()["start_mismatches"] == 1
    old = cache.lookup(child.pid, "old", other_start)
    assert (old.name, old.path, old.cmdline) == ("old", SLEEP, "")
    assert old.sha256 == sha256_of(SLEEP)
    current = cache.lookup(child.pid, "sleep", real_start)
    assert (current.name, current.cmdline) == ("sleep", "sleep 30")


def _spawn_with_pid(argv: list[str], pid: int) -> subprocess.Popen[bytes] | None:
    """Start ``argv`` as ``pid`` by steering the kernel's next pid (ns_last_pid); None if it fails."""
    for _ in range(50):
        try:
            Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        except OSError:
            return None
        child = subprocess.Popen(argv)
        if child.pid == pid:
            wait_exec(pid)
            return child
        child.kill()
        child.wait()
    return None


@needs_root
def test_pid_reuse_is_detected(spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    cache = ProcessCache(recheck_seconds=0)
    first = spawn("sleep", "30")
    first_start = start_ns_of(first.pid)
    first_info = cache.lookup(first.pid, "sleep")
    assert first_info.path == SLEEP
    stop(first)
    time.sleep(3 / CLK_TCK)  # so the two start times differ at /proc's precision (clock ticks)

    second = _spawn_with_pid([sys.executable, "-c", "import time; time.sleep(30)"], first.pid)
    if second is None:
        pytest.skip("could not make the kernel reuse the pid")
    try:
        second_info = cache.lookup(first.pid, "python")
        assert second_info.path == os.path.realpath(sys.executable)
        assert "time.sleep(30)" in second_info.cmdline
        assert second_info.start_time >= first_info.start_time
        assert cache.stats()["pid_reuse"] == 1
        # pid plus start time still names each process
        assert cache.lookup(first.pid, "sleep", first_start) == first_info
        assert cache.lookup(first.pid, "python", start_ns_of(second.pid)) == second_info
    finally:
        second.kill()
        second.wait()


def test_unknown_and_vanished_processes(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    cache = ProcessCache()
    pid = free_pid()
    assert cache.lookup(pid, "ghost", uid=1234) == ProcessInfo(pid, "ghost", "", "", 0, 0, "", 1234)
    assert cache.lookup(pid, "ghost", 123 * 10**9) == ProcessInfo(pid, "ghost", "", "", 0, 0, "", 0)
    assert cache.lookup(0, "swapper/0") == ProcessInfo(0, "swapper/0", "", "", 0, 0, "", 0)
    assert len(cache) == 0

    # a process name with parentheses and spaces parses (comm is cut at 15 characters)
    odd = tmp_path / "we) ird (x"
    shutil.copy2(SLEEP, odd)
    child = spawn(str(odd), "30")
    info = cache.lookup(child.pid, "")
    assert info.name == "we) ird (x"
    assert info.parent_pid == os.getpid()


def test_process_cache_is_bounded(tmp_path: Path) -> None:
    exe = tmp_path / "tool"
    exe.write_bytes(b"tool")
    cache = ProcessCache(max_entries=2)
    pids = [free_pid(offset) for offset in range(3)]
    for pid in pids:
        cache.observe(record_for(pid, exe, comm=f"tool{pid}"))
    assert len(cache) == 2
    assert cache.lookup(pids[0], "gone").path == ""
    assert cache.lookup(pids[2], "x").name == f"tool{pids[2]}"


def test_malformed_proc_contents_are_counted_not_raised(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "77").mkdir(parents=True)
    (proc / "stat").write_text("cpu 1 2 3\nbtime 1700000000\n")
    (proc / "77" / "stat").write_text("77 (x) S not-a-number")
    (proc / "78").mkdir()
    (proc / "78" / "stat").write_text("garbage without parentheses")
    cache = ProcessCache(proc_root=proc)

    assert cache.lookup(77, "x").path == ""
    assert cache.lookup(78, "y").name == "y"
    assert cache.stats()["bad_proc"] == 2


def test_kernel_dev_encoding_matches_stat() -> None:
    st = os.stat(SLEEP)
    assert kernel_dev_to_st_dev(kernel_dev(st.st_dev)) == st.st_dev
    # a minor number above 255 (dynamic devices) survives the round trip too
    dev = os.makedev(259, 300)
    assert kernel_dev_to_st_dev((259 << 20) | 300) == dev


# --- UserNames -----------------------------------------------------------------------------------


def test_user_names() -> None:
    names = UserNames()
    unknown = next(uid for uid in range(3_999_999, 3_900_000, -1) if not _has_user(uid))
    assert names.lookup(0) == "root"
    assert names.lookup(unknown) == ""
    assert names.lookup(-1) == ""
    assert names.lookup(1 << 40) == ""
    lookups = names.lookups
    assert names.lookup(0) == "root"
    assert names.lookups == lookups  # cached


def _has_user(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


# --- HostnameResolver ----------------------------------------------------------------------------


class Gate:
    """A reverse-lookup function that blocks until released, to observe the resolver's thread."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: list[str] = []

    def __call__(self, address: str) -> str:
        self.calls.append(address)
        self.entered.set()
        if not self.release.wait(10):
            raise TimeoutError("gate never released")
        return self.answer


def test_loopback_and_unspecified_addresses_answer_immediately() -> None:
    with HostnameResolver() as resolver:
        for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "127.0.0.53"):
            assert resolver.lookup(address) == "localhost"
        assert resolver.lookup("0.0.0.0") == ""
        assert resolver.lookup("::") == ""
        assert resolver.lookup("not an address") == ""
        assert resolver.stats().get("queued", 0) == 0
        assert resolver.stats()["invalid"] == 1


def test_lookup_never_blocks_and_the_name_arrives_later() -> None:
    gate = Gate("Host-7.Example.NET.")
    with HostnameResolver(reverse_lookup=gate) as resolver:
        started = time.monotonic()
        assert resolver.lookup("198.51.100.7") == ""
        assert gate.entered.wait(5)
        assert resolver.lookup("198.51.100.7") == ""  # still resolving: not queued twice
        assert time.monotonic() - started < 1
        gate.release.set()
        assert resolver.wait_idle(5)
        assert resolver.lookup("198.51.100.7") == "host-7.example.net"
        assert resolver.lookup("::ffff:198.51.100.7") == "host-7.example.net"
        assert gate.calls == ["198.51.100.7"]


def test_failed_reverse_lookup_is_remembered() -> None:
    # the system resolver: 192.0.2.0/24 is TEST-NET-1, which has no PTR records anywhere
    with HostnameResolver() as resolver:
        assert resolver.lookup("192.0.2.123") == ""
        assert resolver.wait_idle(60)
        assert resolver.lookup("192.0.2.123") == ""
        stats = resolver.stats()
        assert stats["failed"] == 1
        assert stats["queued"] == 1  # the negative answer is cached, not asked again


def test_learned_names_beat_reverse_lookups() -> None:
    gate = Gate("ec2-203-0-113-9.compute.example.com")
    with HostnameResolver(reverse_lookup=gate) as resolver:
        assert resolver.lookup("203.0.113.9") == ""
        assert gate.entered.wait(5)
        resolver.learn("203.0.113.9", "www.example.test.")
        gate.release.set()
        assert resolver.wait_idle(5)
        assert resolver.lookup("203.0.113.9") == "www.example.test"
        assert resolver.stats()["reverse_ignored"] == 1


def test_learned_name_without_any_reverse_lookup() -> None:
    gate = Gate("never")
    with HostnameResolver(reverse_lookup=gate) as resolver:
        resolver.learn("2001:db8::9", "API.Example.Test")
        resolver.learn("203.0.113.10", "bad name with spaces")
        resolver.learn("0.0.0.0", "blocked.example.test")  # a sinkhole answer says nothing
        assert resolver.lookup("2001:0db8:0::9") == "api.example.test"
        assert resolver.lookup("0.0.0.0") == ""
        assert gate.calls == []
        assert resolver.stats()["invalid"] == 1


def test_resolver_is_bounded_lru() -> None:
    with HostnameResolver(max_entries=3, resolve=False) as resolver:
        for index in range(5):
            resolver.learn(f"203.0.113.{index}", f"host{index}.example.test")
        assert len(resolver) == 3
        assert resolver.lookup("203.0.113.0") == ""
        assert resolver.lookup("203.0.113.1") == ""
        assert resolver.lookup("203.0.113.4") == "host4.example.test"
        assert resolver.stats()["evictions"] == 2


def test_names_expire() -> None:
    now = [1000.0]
    gate = Gate("")  # reverse lookups fail
    gate.release.set()
    with HostnameResolver(
        ttl_seconds=60, negative_ttl_seconds=10, reverse_lookup=gate, clock=lambda: now[0]
    ) as resolver:
        resolver.learn("203.0.113.9", "www.example.test")
        now[0] += 59
        assert resolver.lookup("203.0.113.9") == "www.example.test"
        now[0] += 2
        assert resolver.lookup("203.0.113.9") == ""  # expired: asked again
        assert resolver.wait_idle(5)
        assert resolver.lookup("203.0.113.9") == ""
        now[0] += 11
        resolver.lookup("203.0.113.9")  # the negative answer expired too
        assert resolver.wait_idle(5)
        assert gate.calls == ["203.0.113.9", "203.0.113.9"]


def test_full_queue_drops_and_counts() -> None:
    gate = Gate("x.example.test")
    resolver = HostnameResolver(queue_size=1, reverse_lookup=gate)
    try:
        resolver.lookup("198.51.100.1")
        assert gate.entered.wait(5)  # the worker holds the first
        resolver.lookup("198.51.100.2")  # fills the queue
        resolver.lookup("198.51.100.3")  # dropped
        assert resolver.stats()["dropped"] == 1
        gate.release.set()
        assert resolver.wait_idle(5)
        assert resolver.lookup("198.51.100.2") == "x.example.test"
    finally:
        resolver.close()
    assert not any(thread.name.startswith("hostname-resolver") for thread in threading.enumerate())


def test_local_hostname() -> None:
    assert local_hostname("127.0.0.1") == "localhost"
    assert local_hostname("::1") == "localhost"
    assert local_hostname("0.0.0.0") == ""
    assert local_hostname("::") == ""
    assert local_hostname("nonsense") == ""
    assert local_hostname("192.0.2.2") == socket.gethostname().lower()


# --- DNS answers ---------------------------------------------------------------------------------


def dns_response(qname: str, qtype: str, *records: tuple[str, str, str]) -> dns.message.Message:
    response = dns.message.make_response(dns.message.make_query(qname, qtype))
    for owner, rtype, value in records:
        response.answer.append(dns.rrset.from_text(owner, 300, "IN", rtype, value))
    return response


def test_parse_answers_follows_cname_chains_to_the_asked_name() -> None:
    response = dns_response(
        "WwW.Example.Test",  # DNS 0x20 mixed case
        "A",
        ("www.example.test.", "CNAME", "www.example.test.cdn.test."),
        ("www.example.test.cdn.test.", "CNAME", "e1.cdn.test."),
        ("e1.cdn.test.", "A", "203.0.113.9"),
        ("e1.cdn.test.", "A", "203.0.113.10"),
        ("unrelated.test.", "A", "198.51.100.66"),  # not on the chain: ignored
    )
    assert sorted(parse_dns_answers(response.to_wire())) == [
        ("203.0.113.10", "www.example.test"),
        ("203.0.113.9", "www.example.test"),
    ]


def test_parse_answers_aaaa_and_direct() -> None:
    response = dns_response("api.example.test", "AAAA", ("api.example.test.", "AAAA", "2001:0db8:0:0::0009"))
    assert parse_dns_answers(response.to_wire()) == [("2001:db8::9", "api.example.test")]


def test_parse_answers_ignores_queries_errors_and_loops() -> None:
    query = dns.message.make_query("www.example.test", "A")
    assert parse_dns_answers(query.to_wire()) == []
    nxdomain = dns_response("nope.example.test", "A")
    nxdomain.set_rcode(dns.rcode.NXDOMAIN)
    assert parse_dns_answers(nxdomain.to_wire()) == []
    loop = dns_response(
        "a.test",
        "A",
        ("b.test.", "CNAME", "c.test."),
        ("c.test.", "CNAME", "b.test."),
        ("c.test.", "A", "203.0.113.1"),
    )
    assert parse_dns_answers(loop.to_wire()) == []


def test_parse_answers_rejects_garbage() -> None:
    wire = dns_response("www.example.test", "A", ("www.example.test.", "A", "203.0.113.9")).to_wire()
    for bad in (b"", b"\x00\x01garbage", wire[:-3], os.urandom(3)):
        with pytest.raises(PacketError):
            parse_dns_answers(bad)


# --- UDP datagrams from IP packets ---------------------------------------------------------------


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(src: str, dst: str, body: bytes, *, proto: int = 17, frag: int = 0, options: bytes = b"") -> bytes:
    ihl = (20 + len(options)) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        ihl * 4 + len(body),
        0x1234,
        frag,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + options + body


def ipv6(src: str, dst: str, body: bytes, *, next_header: int = 17) -> bytes:
    header = struct.pack(
        "!IHBB16s16s",
        0x60000000,
        len(body),
        next_header,
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return header + body


def test_udp_from_ipv4() -> None:
    packet = ipv4("192.0.2.53", "192.0.2.2", udp(53, 40000, b"answer"))
    datagram = extract_udp_datagram(packet + b"\x00" * 6)  # Ethernet padding after the IP packet
    assert datagram is not None
    assert (datagram.src_address, datagram.src_port) == ("192.0.2.53", 53)
    assert (datagram.dst_address, datagram.dst_port) == ("192.0.2.2", 40000)
    assert datagram.payload == b"answer"

    with_options = ipv4("192.0.2.53", "192.0.2.2", udp(53, 1, b"x"), options=b"\x01\x01\x01\x00")
    assert extract_udp_datagram(with_options) is not None
    assert extract_udp_datagram(with_options).payload == b"x"  # type: ignore[union-attr]


def test_udp_from_ipv6_with_extension_header() -> None:
    plain = ipv6("2001:db8::53", "2001:db8::2", udp(53, 40000, b"answer"))
    datagram = extract_udp_datagram(plain)
    assert datagram is not None
    assert (datagram.src_address, datagram.dst_address) == ("2001:db8::53", "2001:db8::2")
    assert datagram.payload == b"answer"

    hop_by_hop = bytes([17, 0]) + b"\x01\x04\x00\x00\x00\x00"  # next: UDP; PadN to 8 bytes
    extended = ipv6("2001:db8::53", "2001:db8::2", hop_by_hop + udp(53, 40000, b"answer"), next_header=0)
    datagram = extract_udp_datagram(extended)
    assert datagram is not None
    assert datagram.payload == b"answer"


def test_not_udp_or_fragments_are_skipped() -> None:
    assert extract_udp_datagram(ipv4("192.0.2.1", "192.0.2.2", b"\x00" * 20, proto=6)) is None
    assert extract_udp_datagram(ipv4("192.0.2.1", "192.0.2.2", udp(53, 1, b"x"), frag=0x2000)) is None
    assert extract_udp_datagram(ipv4("192.0.2.1", "192.0.2.2", b"tail", frag=0x0010)) is None
    assert extract_udp_datagram(ipv6("2001:db8::1", "2001:db8::2", b"\x00" * 20, next_header=6)) is None
    fragment = bytes([17, 0]) + struct.pack("!H", (8 << 3)) + b"\x00" * 4
    assert (
        extract_udp_datagram(ipv6("2001:db8::1", "2001:db8::2", fragment + b"x" * 8, next_header=44)) is None
    )


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x45\x00",  # truncated IPv4 header
        b"\x20" + b"\x00" * 40,  # IP version 2
        ipv4("192.0.2.1", "192.0.2.2", udp(53, 1, b"abc"))[:-2],  # total length past the end
        ipv4("192.0.2.1", "192.0.2.2", struct.pack("!HHHH", 53, 1, 200, 0)),  # UDP length past the end
        ipv4("192.0.2.1", "192.0.2.2", b"\x00\x35"),  # UDP header truncated
        ipv6("2001:db8::1", "2001:db8::2", udp(53, 1, b"abc"))[:-1],
        ipv6("2001:db8::1", "2001:db8::2", b"\x11\x05", next_header=0),  # extension past the end
    ],
)
def test_malformed_packets_raise(packet: bytes) -> None:
    with pytest.raises(PacketError):
        extract_udp_datagram(packet)


def test_dns_learner_handles_packets_and_counts_bad_ones() -> None:
    resolver = HostnameResolver(resolve=False)
    snooper = DnsLearner(resolver)
    wire = dns_response("www.example.test", "A", ("www.example.test.", "A", "203.0.113.9")).to_wire()

    assert snooper.handle_packet(ipv4("192.0.2.53", "192.0.2.2", udp(53, 40000, wire))) == 1
    assert snooper.handle_packet(ipv4("192.0.2.53", "192.0.2.2", udp(53, 40000, b"junk"))) == 0
    assert snooper.handle_packet(b"\x45garbage") == 0
    assert snooper.handle_packet(ipv4("192.0.2.2", "192.0.2.53", udp(40000, 53, wire))) == 0  # to a server

    assert resolver.lookup("203.0.113.9") == "www.example.test"
    assert snooper.counters["bad_packets"] == 2
    assert snooper.counters["responses"] == 1
    assert snooper.counters["skipped"] == 1
    assert snooper.counters["learned"] == 1


def test_logging_of_vanished_process_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    cache = ProcessCache()
    with caplog.at_level(logging.INFO, logger="extension.enrich"):
        cache.lookup(free_pid(), "gone")
        cache.observe(record_for(free_pid(1), SLEEP, comm="gone"))
    assert caplog.records == []
