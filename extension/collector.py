"""The agent's loop: poll records -> drain counters -> track -> enrich -> store -> aggregate -> prune.

One thread does all of it, so the store needs no locking; the slow parts of enrichment (reverse DNS,
DNS snooping) run on their own threads and never block the drain. Each drained batch is written in
one transaction: a kill -9 loses at most the counters not yet drained, never a committed row, and
nothing is counted twice because the kernel deletes what it hands over.
"""

from __future__ import annotations

import functools
import logging
import os
import platform as host_platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from extension import __version__
from extension.community_id import community_id
from extension.enrich import (
    DnsLearner,
    HostnameResolver,
    ProcessLookup,
    UserNames,
    local_hostname,
    platform_process_cache,
)
from extension.events import (
    Activity,
    DnsRecord,
    ProcessRecord,
    Record,
    ResolvedRecord,
    SocketEvent,
    SockStateRecord,
)
from extension.results import ResultEmitter
from extension.settings import Settings
from extension.sources.base import EventSource, SourceStats
from extension.store import Store
from extension.tracker import LifecycleRow, Owner, Tracker, TrafficRow

log = logging.getLogger(__name__)


# Every counter of lost, cut or unattributed data the agent persists (docs/endpoint.md, "Losses").
LOSS_COUNTERS = (
    "map_evictions",
    "ringbuf_lost",
    "map_update_failed",
    "udp_no_peer",
    "dns_truncated",
    "decode_errors",
    "record_decode_errors",
    "unattributed_accepts",
    "late_rows",
)
TCP_LISTEN_HEX = "0A"


# Pure functions of the flow key, called for every row: a flow drained each second would otherwise
# parse its addresses again each time (about a quarter of the agent's CPU per row, by profile).
cached_community_id = functools.lru_cache(maxsize=65536)(community_id)
cached_local_hostname = functools.lru_cache(maxsize=4096)(local_hostname)


def is_loopback(address: str) -> bool:
    """For canonical text addresses (v4-mapped ones are already shown as IPv4)."""
    return address == "::1" or address.startswith("127.")


def read_listening_ports(
    proc_root: Path = Path("/proc"), platform: str = sys.platform
) -> set[tuple[str, int]]:
    """TCP ports in LISTEN now (from /proc/net/tcp and tcp6; on Windows the IP Helper's listener
    table): the direction of connections that were open before the agent started is inferred from them."""
    if platform == "win32":
        from extension.netstate_windows import read_listening_ports as windows_listeners  # noqa: PLC0415

        try:
            return windows_listeners()
        except OSError as exc:
            log.warning("%s: directions of connections older than the agent are unknown", exc)
            return set()
    ports: set[tuple[str, int]] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_root / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == TCP_LISTEN_HEX:
                try:
                    ports.add(("tcp", int(fields[1].rsplit(":", 1)[1], 16)))
                except (IndexError, ValueError):
                    continue
    return ports


@dataclass(frozen=True, slots=True)
class CollectorStatus:
    source: SourceStats
    rows_written: int
    flows_written: int
    drains: int
    last_drain_seconds: float
    unattributed_accepts: int


class Collector:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        source_factory: Callable[[Callable[[Record], None]], EventSource],
        clock: Callable[[], float] = time.time,
        results: ResultEmitter | None = None,
        processes: ProcessLookup | None = None,
    ) -> None:
        """``results``: standalone mode, the pack's rows as result-log lines into the spool.
        ``processes``: the process cache (this platform's by default)."""
        self.settings = settings
        self.results = results
        self.results_emitted = 0
        self.store = store
        self.clock = clock
        self.tracker = Tracker(listening=read_listening_ports())
        self.processes = processes if processes is not None else platform_process_cache()
        self.users = UserNames()
        self.hostnames = HostnameResolver(resolve=settings.resolve_hostnames)
        self.dns = DnsLearner(self.hostnames)
        self._pending_rows: list[SocketEvent] = []
        self._stop = threading.Event()
        self.rows_written = 0
        self.flows_written = 0
        self.drains = 0
        self.last_drain_seconds = 0.0
        self._last_prune = 0.0
        self._reported: dict[str, int] = {}
        self.source = source_factory(self._on_record)
        stats = self.source.stats()
        store.set_info(
            {
                "backend": stats.backend,
                "hook_set": stats.hook_set,
                "hooks": " ".join(stats.hooks),
                "started_at": int(clock()),
                "pid": os.getpid(),
                "kernel": host_platform.release(),
                "version": __version__,
                "window_seconds": settings.window_seconds,
            }
        )

    # --- records from the kernel -----------------------------------------------------------------

    def _on_record(self, record: Record) -> None:
        if isinstance(record, ProcessRecord):
            # the process is alive now: read /proc before it can exit
            self.processes.observe(record)
        elif isinstance(record, DnsRecord):
            self.dns.handle_packet(record.packet)
        elif isinstance(record, ResolvedRecord):
            self.dns.handle_resolved(record.name, record.addresses)
        elif isinstance(record, SockStateRecord):
            if self.settings.exclude_loopback and is_loopback(record.remote_address):
                return
            wall = self._wall_from_monotonic(record.ts_ns)
            for row in self.tracker.on_sock_state(record, wall):
                self._pending_rows.append(self._lifecycle_event(row))

    @staticmethod
    def _wall_from_monotonic(ns: int) -> float:
        # the sources stamp records with the monotonic clock: bpf_ktime_get_ns() is CLOCK_MONOTONIC,
        # which is what time.monotonic_ns() reads on Linux; the ETW source stamps with it directly
        return time.time() - (time.monotonic_ns() - ns) / 1e9

    # --- enrichment ------------------------------------------------------------------------------

    def _enrich(self, event: SocketEvent, owner: Owner) -> SocketEvent:
        """Fill in the process, user, host names and Community ID (all cached; never blocks)."""
        event.uid = owner.uid
        if owner.pid:
            info = self.processes.lookup(owner.pid, owner.comm, uid=owner.uid)
            event.process_name = info.name or owner.comm
            event.process_path = info.path
            event.process_sha256 = info.sha256
            event.process_start_time = info.start_time
            event.parent_pid = info.parent_pid
            event.cmdline = info.cmdline
            if info.username:  # Windows: the token's user, and its RID as the uid
                event.username = info.username
                event.uid = info.uid
            else:
                event.username = self.users.lookup(owner.uid)
        event.local_hostname = cached_local_hostname(event.local_address)
        if event.remote_port:
            event.remote_hostname = self.hostnames.lookup(event.remote_address)
            if event.local_port:
                event.community_id = cached_community_id(
                    event.protocol,
                    event.local_address,
                    event.local_port,
                    event.remote_address,
                    event.remote_port,
                )
        return event

    def _lifecycle_event(self, row: LifecycleRow) -> SocketEvent:
        event = SocketEvent(
            time=int(row.time),
            activity=row.activity,
            pid=row.owner.pid,
            process_name=row.owner.comm,
            protocol=row.protocol,
            family=row.family,
            local_address=row.local_address,
            local_port=row.local_port,
            remote_address=row.remote_address,
            remote_port=row.remote_port,
            direction=row.direction,
            first_seen=row.time,
            last_seen=row.time,
        )
        return self._enrich(event, row.owner)

    def _traffic_event(self, row: TrafficRow) -> SocketEvent:
        key, counters = row.key, row.counters
        event = SocketEvent(
            time=int(row.time_last),
            activity=Activity.DATA,
            pid=key.pid,
            process_name=key.comm,
            protocol=key.protocol,
            family=key.shown_family,
            local_address=key.local_address,
            local_port=key.local_port,
            remote_address=key.remote_address,
            remote_port=key.remote_port,
            direction=row.direction,
            bytes_sent=counters.bytes_sent,
            bytes_received=counters.bytes_received,
            sends=counters.sends,
            receives=counters.receives,
            first_seen=row.time_first,
            last_seen=row.time_last,
        )
        return self._enrich(event, Owner(key.pid, key.uid, key.comm))

    # --- the loop --------------------------------------------------------------------------------

    def drain_once(self, *, final: bool = False) -> int:
        """Drain the kernel, write one transaction, aggregate closed windows. Returns rows written."""
        started = time.monotonic()
        self.source.poll(0)  # records that arrived before the flip belong with this drain
        drain = self.source.drain()
        self.source.poll(0)
        traffic, lifecycle = self.tracker.on_drain(
            drain.flows, wall_time=drain.wall_time, monotonic_ns=drain.monotonic_ns
        )
        if final:
            lifecycle.extend(self.tracker.flush())
        rows = self._pending_rows
        self._pending_rows = []
        rows.extend(self._lifecycle_event(row) for row in lifecycle)
        for row in traffic:
            if self.settings.exclude_loopback and is_loopback(row.key.remote_address):
                continue
            rows.append(self._traffic_event(row))
        written = self.store.insert_batch(rows)
        if drain.evictions:
            log.warning(
                "%d flow entries were evicted from the full kernel map (raise EXTENSION_MAP_ENTRIES)",
                drain.evictions,
            )
        self._persist_losses(drain.evictions, drain.decode_errors)
        now = self.clock()
        self.flows_written += self.store.aggregate(
            now=now, grace_seconds=self.settings.grace_seconds, include_open=final
        )
        if self.results is not None:  # before pruning, which may remove rows not yet emitted
            self.results_emitted += self.results.emit()
        if now - self._last_prune >= 60 or final:
            self.store.prune(
                now=now,
                raw_retention_seconds=self.settings.raw_retention_seconds,
                flow_retention_seconds=self.settings.flow_retention_seconds,
            )
            self._last_prune = now
        self.rows_written += written
        self.drains += 1
        self.last_drain_seconds = time.monotonic() - started
        return written

    def _persist_losses(self, evictions: int, decode_errors: int) -> None:
        """Add what was lost or skipped since the last drain to the persisted counters."""
        stats = self.source.stats()
        current = {
            "ringbuf_lost": stats.ringbuf_lost,
            "map_update_failed": stats.update_failed,
            "udp_no_peer": stats.udp_no_peer,
            "dns_truncated": stats.dns_truncated,
            "record_decode_errors": stats.record_decode_errors,
            "unattributed_accepts": self.tracker.unattributed,
            **stats.counters,
        }
        deltas = {name: value - self._reported.get(name, 0) for name, value in current.items()}
        deltas["map_evictions"] = evictions
        deltas["decode_errors"] = decode_errors
        for name, delta in deltas.items():
            if delta > 0:
                self.store.add_counter(name, delta)
        self._reported = current

    def run(
        self, *, duration: float | None = None, on_tick: Callable[[Collector], None] | None = None
    ) -> None:
        """Drain every ``drain_interval`` until :meth:`stop` (or ``duration`` seconds), then a final
        drain and aggregation of the open window."""
        interval = self.settings.drain_interval
        deadline = None if duration is None else time.monotonic() + duration
        next_drain = time.monotonic() + interval
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                wait = min(next_drain, deadline or next_drain) - now
                if wait > 0:
                    # wake for records often: process records must be handled while the process lives
                    self.source.poll(int(min(wait, 0.05) * 1000))
                    continue
                self.drain_once()
                next_drain += interval
                if next_drain < time.monotonic():  # fell behind (suspend, slow disk): do not burst
                    next_drain = time.monotonic() + interval
                if on_tick is not None:
                    on_tick(self)
        finally:
            self.drain_once(final=True)

    def stop(self) -> None:
        self._stop.set()

    def status(self) -> CollectorStatus:
        return CollectorStatus(
            source=self.source.stats(),
            rows_written=self.rows_written,
            flows_written=self.flows_written,
            drains=self.drains,
            last_drain_seconds=self.last_drain_seconds,
            unattributed_accepts=self.tracker.unattributed,
        )

    def close(self) -> None:
        self.source.close()
        self.hostnames.close()
