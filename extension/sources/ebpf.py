"""Linux capture: the BPF program in ``extension/bpf/netflow.bpf.c``, loaded through libbpf (ctypes).

Hook sets are tried best first: ``fexit`` (fexit on the tcp/udp send and receive functions), then
``tracepoint`` (``tp_btf/sock_{send,recv}_length`` plus cgroup ``sendmsg``/``recvmsg`` hooks for the
peers of unconnected UDP). Both attach ``tp_btf/inet_sock_set_state`` for TCP lifecycle. The kernel
aggregates into two LRU hash maps used in turn; ``drain()`` flips them and empties the idle one.
"""

from __future__ import annotations

import ctypes
import errno
import gzip
import logging
import os
import struct
import time
from pathlib import Path

from extension.events import (
    FLOW_KEY,
    FLOW_VALUE,
    DecodeError,
    decode_flow_key,
    decode_flow_value,
    decode_record,
)
from extension.sources.base import CaptureError, Drain, RecordHandler, SourceStats
from extension.sources.libbpf import SAMPLE_FN, BpfCallError, BpfObject, Libbpf, get_libbpf

log = logging.getLogger(__name__)

HOOK_SETS: dict[str, tuple[str, ...]] = {
    "fexit": ("fexit/",),
    "tracepoint": ("tp_btf/sock_send_length", "tp_btf/sock_recv_length", "cgroup/"),
}
LIFECYCLE_SECTIONS = ("tp_btf/inet_sock_set_state",)
DNS_SECTIONS = ("cgroup_skb/ingress",)

# enum pnf_counter in netflow.h
C_INSERTS = (0, 1)
C_RINGBUF_LOST = 2
C_UPDATE_FAILED = 3
C_UDP_NO_PEER = 4
C_EVENTS = 5
C_DNS_TRUNCATED = 6
C_MAX = 7

CONTROL = struct.Struct("<II")
VALUE_CLOCK = struct.Struct("<QQ")  # first_ns, first_jiffies inside struct pnf_flow_value
VALUE_CLOCK_OFFSET = 32
BATCH = 4096


KNOWN_HZ = (100, 250, 300, 1000)


def configured_hz(config_gz: Path = Path("/proc/config.gz")) -> int | None:
    """CONFIG_HZ of the running kernel when /proc/config.gz is there, else None."""
    try:
        with gzip.open(config_gz, "rt") as config:
            for line in config:
                if line.startswith("CONFIG_HZ="):
                    return int(line.split("=", 1)[1])
    except (OSError, ValueError, EOFError):
        return None
    return None


class TickClock:
    """Nanoseconds per kernel tick (jiffy), to date the last call of a flow counter.

    Taken from CONFIG_HZ when the kernel publishes its config; otherwise calibrated from the
    (clock, tick) pairs the kernel stores in each new counter, once two pairs lie 5 s apart, and
    snapped to the nearest usual HZ. Until then 250 Hz is assumed (an error of at most one drain
    interval on the last-seen time of a counter)."""

    def __init__(self, hz: int | None = None) -> None:
        self.hz = hz or 250
        self.calibrated = hz is not None
        self._anchor: tuple[int, int] | None = None

    @property
    def ns_per_tick(self) -> float:
        return 1e9 / self.hz

    def observe(self, ns: int, tick: int) -> None:
        if self.calibrated:
            return
        if self._anchor is None or tick < self._anchor[1]:
            self._anchor = (ns, tick)
            return
        elapsed_ns = ns - self._anchor[0]
        if elapsed_ns < 5e9:
            return
        measured = (tick - self._anchor[1]) * 1e9 / elapsed_ns
        self.hz = min(KNOWN_HZ, key=lambda hz: abs(hz - measured))
        self.calibrated = True
        log.info("kernel tick rate calibrated: %.1f Hz measured, using %d Hz", measured, self.hz)


def cgroup2_mount() -> Path:
    """The cgroup v2 mount (``/sys/fs/cgroup`` on unified hosts, ``/sys/fs/cgroup/unified`` on hybrid)."""
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "cgroup2":
                    return Path(fields[1])
    except OSError:
        pass
    raise CaptureError(
        "no cgroup v2 file system is mounted (needed for the UDP peer hooks)",
        "mount it: mount -t cgroup2 none /sys/fs/cgroup/unified, or boot with systemd's unified hierarchy",
    )


def preflight() -> None:
    """Fail early, with the cause and the remedy, on what certainly prevents capture."""
    if os.geteuid() != 0:
        raise CaptureError(
            "kernel capture needs root (loading BPF programs needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)",
            "run it as root, e.g. sudo python -m extension ...",
        )
    if not Path("/sys/kernel/btf/vmlinux").exists():
        raise CaptureError(
            "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing)",
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 2020)",
        )


def check_object(libbpf: Libbpf, path: Path) -> None:
    """A file that is not our BPF object, or one built from another version of netflow.h, is the
    user's error (EXTENSION_BPF_OBJECT), not the kernel's: say so before trying any hook set."""
    remedy = "point EXTENSION_BPF_OBJECT at a netflow.bpf.o of this version, or unset it to build one"
    try:
        obj = BpfObject(libbpf, path)
    except BpfCallError as exc:
        raise CaptureError(f"cannot open the BPF object {path}: {exc.reason}", remedy) from None
    try:
        expected = {
            "flows_0": (FLOW_KEY.size, FLOW_VALUE.size, None),
            "control": (4, CONTROL.size, 1),
            "counters": (4, 8, C_MAX),
        }
        for name, (key_size, value_size, entries) in expected.items():
            try:
                found = obj.map_layout(name)
            except BpfCallError:
                raise CaptureError(f"the BPF object {path} has no map {name}", remedy) from None
            if found[:2] != (key_size, value_size) or (entries is not None and found[2] != entries):
                raise CaptureError(
                    f"the BPF object {path} was built from another version: map {name} has "
                    f"key/value/entries {found}, this agent expects {(key_size, value_size, entries)}",
                    remedy,
                )
    finally:
        obj.close()


class EbpfSource:
    backend = "ebpf"

    def __init__(
        self,
        object_path: Path,
        *,
        map_entries: int = 65536,
        ringbuf_bytes: int = 1 << 20,
        exclude_loopback: bool = False,
        on_record: RecordHandler | None = None,
        hook_sets: tuple[str, ...] = ("fexit", "tracepoint"),
        dns: bool = False,
    ) -> None:
        """``dns``: also pass DNS answers up (a cgroup ingress program; see netflow.bpf.c)."""
        preflight()
        self.libbpf = get_libbpf()
        self._final_stats: SourceStats | None = None
        self.on_record = on_record
        self.map_entries = map_entries
        self.hook_set = ""
        self.refused: dict[str, str] = {}  # hook set -> why the kernel refused it
        self._obj: BpfObject | None = None
        self._ringbuf = 0
        self._cgroup_fd = -1
        self._sample_cb = SAMPLE_FN(self._on_sample)
        self._record_decode_errors = 0
        self._evictions = 0
        self._active = 0
        self._ncpus = self.libbpf.num_possible_cpus()
        self.ticks = TickClock(configured_hz())
        self.hooks: tuple[str, ...] = ()
        self._dns = dns
        check_object(self.libbpf, object_path)
        last_error: BpfCallError | None = None
        for hook_set in hook_sets:
            try:
                self._open(object_path, hook_set, map_entries, ringbuf_bytes, exclude_loopback)
                self.hook_set = hook_set
                break
            except BpfCallError as exc:
                self.refused[hook_set] = f"{exc.call}: {exc.reason}"
                log.info("hook set %s refused by the kernel (%s); trying the next one", hook_set, exc.call)
                log.debug("libbpf log for %s:\n%s", hook_set, exc.strerror)
                last_error = exc
                self._teardown()
        if not self.hook_set:
            detail = "; ".join(f"{name}: {why}" for name, why in self.refused.items())
            hint = ""
            if last_error is not None and last_error.errno == errno.EPERM:
                hint = " (EPERM: the kernel or a security module forbids these program types)"
            raise CaptureError(
                f"the kernel refused every BPF hook set{hint}: {detail}",
                "run as root on a kernel with BPF, BTF and tracepoints enabled; "
                "set EXTENSION_LOG_LEVEL=debug to see the verifier log",
            )
        log.info("capturing with hook set %s (%s)", self.hook_set, ", ".join(self.hooks))

    # --- set-up ----------------------------------------------------------------------------------

    def _open(
        self, path: Path, hook_set: str, map_entries: int, ringbuf_bytes: int, exclude_loopback: bool
    ) -> None:
        obj = BpfObject(self.libbpf, path)
        self._obj = obj
        prefixes = HOOK_SETS[hook_set] + LIFECYCLE_SECTIONS + (DNS_SECTIONS if self._dns else ())
        chosen = obj.set_autoload(lambda _name, section: section.startswith(prefixes))
        for name in ("flows_0", "flows_1"):
            obj.set_max_entries(name, map_entries)
        # The map-of-maps' inner template keeps its declared size: the kernel compares type, key and
        # value sizes and flags of hash maps in a map-of-maps, not their capacity.
        obj.set_max_entries("records", ringbuf_bytes)
        obj.load()
        self._control_fd = obj.map_fd("control")
        self._counters_fd = obj.map_fd("counters")
        self._outer_fd = obj.map_fd("flow_buffers")
        self._flow_fds = (obj.map_fd("flows_0"), obj.map_fd("flows_1"))
        self._write_control(0, exclude_loopback)
        self._exclude_loopback = exclude_loopback
        programs = obj.programs()
        for name in chosen:
            section = obj.section(programs[name])
            if section.startswith(("cgroup/", "cgroup_skb/")):
                if self._cgroup_fd < 0:
                    self._cgroup_fd = os.open(cgroup2_mount(), os.O_RDONLY | os.O_DIRECTORY)
                obj.attach(name, cgroup_fd=self._cgroup_fd)
            else:
                obj.attach(name)
        self.hooks = tuple(obj.section(programs[name]) for name in chosen)
        self._ringbuf = self.libbpf.check_ptr(
            "ring_buffer__new",
            self.libbpf.lib.ring_buffer__new(obj.map_fd("records"), self._sample_cb, None, None),
        )

    def _teardown(self) -> None:
        if self._ringbuf:
            self.libbpf.lib.ring_buffer__free(self._ringbuf)
            self._ringbuf = 0
        if self._obj is not None:
            self._obj.close()
            self._obj = None
        if self._cgroup_fd >= 0:
            os.close(self._cgroup_fd)
            self._cgroup_fd = -1

    def _write_control(self, active: int, exclude_loopback: bool) -> None:
        key = ctypes.c_uint32(0)
        value = ctypes.create_string_buffer(CONTROL.pack(active, int(exclude_loopback)), CONTROL.size)
        self.libbpf.check(
            "update control",
            self.libbpf.lib.bpf_map_update_elem(self._control_fd, ctypes.byref(key), value, 0),
        )

    # --- records (ring buffer) -------------------------------------------------------------------

    def _on_sample(self, _ctx: int | None, data: int | None, size: int) -> int:
        try:
            record = decode_record(ctypes.string_at(data, size) if data else b"")
        except DecodeError as exc:
            self._record_decode_errors += 1
            log.debug("skipped a ring-buffer record: %s", exc)
            return 0
        if self.on_record is not None:
            try:
                self.on_record(record)
            except Exception:  # a handler bug must not stop capture; it is logged with its traceback
                log.exception("record handler failed")
        return 0

    def poll(self, timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for lifecycle/process records and hand them to ``on_record``."""
        if not self._ringbuf:
            return 0
        # Process records wake the poll at once; lifecycle records are submitted without a wake-up
        # (cheaper in the kernel), so consume whatever is there after the wait as well.
        result = int(self.libbpf.lib.ring_buffer__poll(self._ringbuf, timeout_ms))
        if result < 0 and -result != errno.EINTR:
            raise BpfCallError("ring_buffer__poll", -result)
        consumed = int(self.libbpf.lib.ring_buffer__consume(self._ringbuf))
        if consumed < 0 and -consumed != errno.EINTR:
            raise BpfCallError("ring_buffer__consume", -consumed)
        return max(result, 0) + max(consumed, 0)

    # --- counters (flow maps) --------------------------------------------------------------------

    def _read_counters(self) -> list[int]:
        values = (ctypes.c_uint64 * self._ncpus)()
        totals = []
        for index in range(C_MAX):
            key = ctypes.c_uint32(index)
            self.libbpf.check(
                "lookup counters",
                self.libbpf.lib.bpf_map_lookup_elem(self._counters_fd, ctypes.byref(key), values),
            )
            totals.append(sum(values))
        return totals

    def _reset_counter(self, index: int) -> None:
        key = ctypes.c_uint32(index)
        zeros = (ctypes.c_uint64 * self._ncpus)()
        self.libbpf.check(
            "reset counter",
            self.libbpf.lib.bpf_map_update_elem(self._counters_fd, ctypes.byref(key), zeros, 0),
        )

    def _drain_map(self, fd: int) -> list[tuple[bytes, bytes]]:
        entries: list[tuple[bytes, bytes]] = []
        keys = ctypes.create_string_buffer(FLOW_KEY.size * BATCH)
        values = ctypes.create_string_buffer(FLOW_VALUE.size * BATCH)
        token_in = ctypes.c_uint64(0)
        token_out = ctypes.c_uint64(0)
        first = True
        while True:
            count = ctypes.c_uint32(BATCH)
            result = self.libbpf.lib.bpf_map_lookup_and_delete_batch(
                fd,
                None if first else ctypes.byref(token_in),
                ctypes.byref(token_out),
                keys,
                values,
                ctypes.byref(count),
                None,
            )
            raw_keys = keys.raw
            raw_values = values.raw
            for i in range(count.value):
                entries.append(
                    (
                        raw_keys[i * FLOW_KEY.size : (i + 1) * FLOW_KEY.size],
                        raw_values[i * FLOW_VALUE.size : (i + 1) * FLOW_VALUE.size],
                    )
                )
            if result < 0:
                if -result == errno.ENOENT:
                    return entries  # the end of the map
                raise BpfCallError("bpf_map_lookup_and_delete_batch", -result, self.libbpf.take_log())
            first = False
            token_in.value = token_out.value

    def drain(self) -> Drain:
        """Flip to the other buffer, wait out programs still writing the old one, empty it."""
        old = self._active
        new = old ^ 1
        self._write_control(new, self._exclude_loopback)
        self._active = new
        # Rewriting an entry of the map-of-maps makes the kernel wait for an RCU grace period: every
        # program that read the old `active` value has finished when this call returns.
        slot = ctypes.c_uint32(old)
        inner_fd = ctypes.c_uint32(self._flow_fds[old])
        self.libbpf.check(
            "sync flow buffers",
            self.libbpf.lib.bpf_map_update_elem(
                self._outer_fd, ctypes.byref(slot), ctypes.byref(inner_fd), 0
            ),
        )
        monotonic_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        wall = time.time()
        raw = self._drain_map(self._flow_fds[old])
        inserts = self._read_counters()[C_INSERTS[old]]
        self._reset_counter(C_INSERTS[old])
        drain = Drain(monotonic_ns=monotonic_ns, wall_time=wall)
        drain.evictions = max(inserts - len(raw), 0)
        self._evictions += drain.evictions
        for raw_key, raw_value in raw:
            first_ns, first_tick = VALUE_CLOCK.unpack_from(raw_value, VALUE_CLOCK_OFFSET)
            self.ticks.observe(first_ns, first_tick)
            try:
                value = decode_flow_value(raw_value, self.ticks.ns_per_tick)
                drain.flows.append((decode_flow_key(raw_key), value))
            except DecodeError as exc:
                drain.decode_errors += 1
                log.debug("skipped a flow entry: %s", exc)
        return drain

    def stats(self) -> SourceStats:
        if self._final_stats is not None:
            return self._final_stats  # closed: the figures as they were at close
        counters = self._read_counters()
        return SourceStats(
            backend=self.backend,
            hook_set=self.hook_set,
            events=counters[C_EVENTS],
            map_evictions=self._evictions,
            ringbuf_lost=counters[C_RINGBUF_LOST],
            update_failed=counters[C_UPDATE_FAILED],
            udp_no_peer=counters[C_UDP_NO_PEER],
            dns_truncated=counters[C_DNS_TRUNCATED],
            record_decode_errors=self._record_decode_errors,
            hooks=self.hooks,
        )

    def close(self) -> None:
        if self._obj is not None and self._final_stats is None:
            self._final_stats = self.stats()
        self._teardown()
