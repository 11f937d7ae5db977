"""Windows capture: the ETW source behind the same :class:`~extension.sources.base.EventSource` as eBPF.

The session (:mod:`extension.sources.etw_session`, on advapi32 through :mod:`extension.sources.etw_win32`)
counts traffic per flow in user space; :meth:`EtwSource.drain` hands the counters over on the
collector's cadence, as the eBPF source drains its kernel map. TCP lifecycle events become the same
:class:`~extension.events.SockStateRecord` transitions the eBPF program reports, so the connection
tracker (directions, connects, accepts, closes) runs unchanged:

=====================  ==========================================================================
ETW event              records (old state -> new state)
=====================  ==========================================================================
connect (12, 28)       SYN_SENT, then SYN_SENT -> ESTABLISHED: an outbound connection of the pid
accept (15, 31)        SYN_RECV -> ESTABLISHED: an inbound connection (the payload's pid is the
                       owner's, unlike the kernel's softirq context on Linux)
disconnect (13, 29)    ESTABLISHED -> FIN_WAIT1 (the close, by the pid), then -> CLOSE (forgotten)
=====================  ==========================================================================

A socket is identified by its 5-tuple (Windows has no socket cookie in these events). Reconnects,
retransmits, copies and failed attempts (which carry no addresses) are counted, not recorded. UDP has
no lifecycle: its peers come from the send and receive events themselves. **Not run on Windows yet.**
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from typing import Final

from extension.events import (
    AF_INET,
    AF_INET6,
    TCP_CLOSE,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT1,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    ProcessRecord,
    Record,
    ResolvedRecord,
    SockStateRecord,
)
from extension.sources.base import CaptureError, Drain, RecordHandler, SourceStats
from extension.sources.etw_dns import DNS_CLIENT_NAME, DnsQuery
from extension.sources.etw_events import PROVIDER_NAME, EtwCounters, FailureEvent, Kind, NetEvent, flow_key
from extension.sources.etw_session import SESSION_NAME, EtwSession, SessionLimits, TraceApi

log = logging.getLogger(__name__)

HOOK_SET: Final = "kernel-network"
MAX_QUEUED: Final = 65536  # lifecycle records waiting for poll() at most; beyond, counted as lost
OBSERVE_AGAIN_NS: Final = 60 * 1_000_000_000  # a pid is reported to the process cache again after this
MAX_OBSERVED: Final = 16384  # pids remembered as reported
TRANSITIONS: Final[dict[Kind, tuple[tuple[int, int], ...]]] = {
    Kind.CONNECT: ((TCP_CLOSE, TCP_SYN_SENT), (TCP_SYN_SENT, TCP_ESTABLISHED)),
    Kind.ACCEPT: ((TCP_SYN_RECV, TCP_ESTABLISHED),),
    Kind.DISCONNECT: ((TCP_ESTABLISHED, TCP_FIN_WAIT1), (TCP_FIN_WAIT1, TCP_CLOSE)),
}


def socket_cookie(event: NetEvent) -> int:
    """A stable 64-bit id of a connection from its 5-tuple, standing in for the kernel's socket cookie."""
    parts = (event.protocol, event.local_address, event.local_port, event.remote_address, event.remote_port)
    text = "|".join(str(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def lifecycle_records(event: NetEvent, monotonic_ns: int) -> list[SockStateRecord]:
    """The state transitions a TCP lifecycle event stands for (none for traffic or UDP)."""
    if event.protocol != "tcp" or event.kind not in TRANSITIONS:
        return []
    key = flow_key(event)
    return [
        SockStateRecord(
            ts_ns=monotonic_ns,
            cookie=socket_cookie(event),
            pid=event.pid,
            uid=0,
            comm="",
            protocol="tcp",
            family=AF_INET if event.version == 4 else AF_INET6,
            oldstate=old,
            newstate=new,
            local_address=event.local_address,
            local_port=event.local_port,
            remote_address=event.remote_address,
            remote_port=event.remote_port,
            shown_family=key.shown_family,
        )
        for old, new in TRANSITIONS[event.kind]
    ]


def process_record(pid: int, monotonic_ns: int) -> ProcessRecord:
    """A process seen on the network. ETW has only its pid: the process cache reads the rest."""
    return ProcessRecord(
        ts_ns=monotonic_ns, start_ns=0, pid=pid, ppid=0, uid=0, comm="",
        exe_dev=0, exe_ino=0, exe_mtime=0, exe_size=0, exe_path="",
    )  # fmt: skip


class EtwSource:
    backend = "etw"
    hook_set = HOOK_SET

    def __init__(
        self,
        api: TraceApi,
        *,
        on_record: RecordHandler,
        limits: SessionLimits | None = None,
        session_name: str = SESSION_NAME,
        dns: bool = True,
        max_flows: int = 65536,
    ) -> None:
        """``dns``: learn the names processes resolve from Microsoft-Windows-DNS-Client. ``max_flows``:
        the counters' table bound between drains (``EXTENSION_MAP_ENTRIES``, as the eBPF map's)."""
        self.on_record = on_record
        self._queue: collections.deque[Record] = collections.deque()
        self._observed: collections.OrderedDict[int, int] = collections.OrderedDict()  # pid -> ns
        self._ready = threading.Condition()
        self.records_lost = 0
        self.events = 0
        self.failures = 0
        self.decode_errors = 0
        self.evictions = 0
        self._stats_failed = False
        self.session = EtwSession(
            api,
            name=session_name,
            limits=limits,
            on_event=self._on_event,
            on_dns=self._on_dns if dns else None,
            counters=EtwCounters(max_flows=max_flows),
        )
        self.session.start()
        self.hooks = (PROVIDER_NAME, DNS_CLIENT_NAME) if self.session.dns_enabled else (PROVIDER_NAME,)

    def _on_dns(self, query: DnsQuery) -> None:
        if query.addresses:
            self._enqueue([ResolvedRecord(query.name, query.addresses)])

    def _on_event(self, pid: int, event: NetEvent | FailureEvent | None, monotonic_ns: int) -> None:
        # on the consumer thread, for every event: keep it short (event is None for sends and receives)
        self.events += 1
        if isinstance(event, FailureEvent):
            self.failures += 1
            return
        if pid > 0 and self._first_sight(pid, monotonic_ns):
            # the process runs now: have the collector read its image, user and start time at once
            records: list[Record] = [process_record(pid, monotonic_ns)]
        elif event is None:
            return
        else:
            records = []
        if event is not None:
            records.extend(lifecycle_records(event, monotonic_ns))
        if records:
            self._enqueue(records)

    def _enqueue(self, records: list[Record]) -> None:
        with self._ready:
            if len(self._queue) + len(records) > MAX_QUEUED:
                self.records_lost += len(records)
                return
            self._queue.extend(records)
            self._ready.notify()

    def _first_sight(self, pid: int, monotonic_ns: int) -> bool:
        """Is this pid new (or not reported for a while)? Only the consumer thread calls this."""
        last = self._observed.get(pid)
        if last is not None and monotonic_ns - last < OBSERVE_AGAIN_NS:
            return False
        self._observed[pid] = monotonic_ns
        self._observed.move_to_end(pid)
        while len(self._observed) > MAX_OBSERVED:
            self._observed.popitem(last=False)
        return True

    def poll(self, timeout_ms: int) -> int:
        """Hand the queued lifecycle records to the handler, waiting up to ``timeout_ms`` for one."""
        with self._ready:
            if not self._queue and timeout_ms > 0:
                self._ready.wait(timeout_ms / 1000.0)
            records = list(self._queue)
            self._queue.clear()
        for record in records:
            self.on_record(record)
        return len(records)

    def drain(self) -> Drain:
        drained = self.session.drain(wall_time=time.time())
        self.decode_errors += drained.decode_errors
        self.evictions += drained.evictions
        return drained

    def stats(self) -> SourceStats:
        counters = {
            "etw_lifecycle_records_lost": self.records_lost,
            "etw_failed_connects": self.failures,
            "etw_dns_queries": self.session.dns_queries,
            "etw_foreign_events": self.session.foreign_events,
        }
        lost = 0
        try:
            session = self.session.stats()
        except CaptureError as exc:  # the session is gone: say so once, keep the persisted counts
            if not self._stats_failed:
                log.warning("%s", exc)
            self._stats_failed = True
        else:
            lost = session.events_lost + session.buffers_lost
            counters |= {
                "etw_events_lost": session.events_lost,
                "etw_buffers_lost": session.buffers_lost,
                "etw_buffers_written": session.buffers_written,
            }
        return SourceStats(
            backend=self.backend,
            hook_set=self.hook_set,
            events=self.events,
            map_evictions=self.evictions,
            ringbuf_lost=lost + self.records_lost,
            update_failed=0,
            udp_no_peer=0,
            dns_truncated=0,
            record_decode_errors=self.decode_errors + self.session.dns_decode_errors,
            hooks=self.hooks,
            counters=counters,
        )

    def close(self) -> None:
        self.session.close()
