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
    SockStateRecord,
)
from extension.sources.base import Drain, RecordHandler, SourceStats
from extension.sources.etw_events import PROVIDER_NAME, FailureEvent, Kind, NetEvent, flow_key
from extension.sources.etw_session import SESSION_NAME, EtwSession, SessionLimits, TraceApi

HOOK_SET: Final = "kernel-network"
MAX_QUEUED: Final = 65536  # lifecycle records waiting for poll() at most; beyond, counted as lost
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
    ) -> None:
        self.on_record = on_record
        self._queue: collections.deque[SockStateRecord] = collections.deque()
        self._ready = threading.Condition()
        self.records_lost = 0
        self.events = 0
        self.failures = 0
        self.decode_errors = 0
        self.evictions = 0
        self.session = EtwSession(api, name=session_name, limits=limits, on_event=self._on_event)
        self.hooks = (PROVIDER_NAME,)
        self.session.start()

    def _on_event(self, event: NetEvent | FailureEvent, monotonic_ns: int) -> None:
        # on the consumer thread: keep it short
        self.events += 1
        if isinstance(event, FailureEvent):
            self.failures += 1
            return
        records = lifecycle_records(event, monotonic_ns)
        if not records:
            return
        with self._ready:
            if len(self._queue) + len(records) > MAX_QUEUED:
                self.records_lost += len(records)
                return
            self._queue.extend(records)
            self._ready.notify()

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
        try:
            session = self.session.stats()
            lost = session.events_lost + session.buffers_lost
        except Exception:
            lost = 0
        return SourceStats(
            backend=self.backend,
            hook_set=self.hook_set,
            events=self.events,
            map_evictions=self.evictions,
            ringbuf_lost=lost + self.records_lost,
            update_failed=0,
            udp_no_peer=0,
            dns_truncated=0,
            record_decode_errors=self.decode_errors,
            hooks=self.hooks,
        )

    def close(self) -> None:
        self.session.close()
