"""The ETW real-time session of the Windows source: its control flow, over the few Win32 calls it makes.

:class:`TraceApi` names those calls (StartTrace, EnableTraceEx2, OpenTrace, ProcessTrace, CloseTrace,
ControlTrace for stop and query) in the shape this module needs; the Windows binding implements it
with ctypes (:mod:`extension.sources.etw_win32`), and the tests implement it with a fake. :class:`EtwSession`:

- starts a *named* session (``osquery-netflow`` by default). When a crashed run left one of that name
  behind (ERROR_ALREADY_EXISTS), it stops that one and starts again, once;
- bounds its buffers (:class:`SessionLimits`);
- enables Microsoft-Windows-Kernel-Network for IPv4 and IPv6 events only, and (``dns=True``)
  Microsoft-Windows-DNS-Client, whose completed queries name the addresses processes resolved
  (:mod:`extension.sources.etw_dns`); a failure to enable the latter is logged, not fatal;
- consumes the session on a thread (ProcessTrace blocks until the session stops), decoding each
  event into :class:`~extension.sources.etw_events.EtwCounters` under a lock; :meth:`drain` hands the
  counters over as the eBPF source's drain does;
- reads the session's lost-event and lost-buffer counts (ControlTrace query) for ``net_agent_status``;
- stops the session on :meth:`close`, also when the consumer failed.

Errors name the cause and what to do (:class:`~extension.sources.base.CaptureError`).
**Not run on Windows yet**: the control flow is tested against a fake of these calls.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from extension.sources.base import CaptureError, Drain
from extension.sources.etw_dns import DNS_CLIENT_GUID, QUERY_COMPLETED, DnsQuery, decode_dns_query
from extension.sources.etw_events import PROVIDER_GUID, EtwCounters, EtwDecodeError, FailureEvent, NetEvent

log = logging.getLogger(__name__)

SESSION_NAME: Final = "osquery-netflow"
ERROR_SUCCESS: Final = 0
ERROR_ACCESS_DENIED: Final = 5
ERROR_ALREADY_EXISTS: Final = 183
ERROR_NO_SYSTEM_RESOURCES: Final = 1450
ERROR_CANCELLED: Final = 1223
TRACE_LEVEL_INFORMATION: Final = 4
KEYWORD_IPV4: Final = 0x10  # KERNEL_NETWORK_KEYWORD_IPV4
KEYWORD_IPV6: Final = 0x20  # KERNEL_NETWORK_KEYWORD_IPV6
KEYWORDS_ALL: Final = 0xFFFFFFFFFFFFFFFF  # DNS-Client: every keyword (the level keeps it to a few per query)
JOIN_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """The session's buffers: ``buffer_kb`` each, between ``min_buffers`` and ``max_buffers``, flushed
    every ``flush_seconds`` (bounded memory: at most max_buffers x buffer_kb)."""

    buffer_kb: int = 64
    min_buffers: int = 4
    max_buffers: int = 64
    flush_seconds: int = 1

    def __post_init__(self) -> None:
        if not 4 <= self.buffer_kb <= 1024:
            raise ValueError(f"buffer_kb {self.buffer_kb}: use 4 to 1024")
        if not 2 <= self.min_buffers <= self.max_buffers <= 1024:
            raise ValueError("buffers: use 2 <= min_buffers <= max_buffers <= 1024")
        if not 1 <= self.flush_seconds <= 60:
            raise ValueError(f"flush_seconds {self.flush_seconds}: use 1 to 60")


@dataclass(frozen=True, slots=True)
class SessionStats:
    events_lost: int  # events the session could not buffer
    buffers_lost: int  # buffers the consumer did not take in time
    buffers_written: int


EventCallback = Callable[[str, int, bytes, int], None]  # provider GUID, event id, user data, monotonic ns


class TraceApi(Protocol):
    """The Win32 calls of a real-time ETW session; each returns the Win32 status as its first value."""

    def start_trace(self, name: str, limits: SessionLimits) -> tuple[int, int]:
        """StartTraceW: (status, session handle)."""
        ...

    def stop_trace(self, name: str) -> int:
        """ControlTraceW(EVENT_TRACE_CONTROL_STOP) by name: status."""
        ...

    def query_trace(self, name: str) -> tuple[int, SessionStats]:
        """ControlTraceW(EVENT_TRACE_CONTROL_QUERY) by name: (status, counts)."""
        ...

    def enable_provider(self, session: int, guid: str, level: int, keywords: int) -> int:
        """EnableTraceEx2(EVENT_CONTROL_CODE_ENABLE_PROVIDER): status."""
        ...

    def open_trace(self, name: str, callback: EventCallback) -> tuple[int, int]:
        """OpenTraceW on the real-time session, events to ``callback``: (status, trace handle)."""
        ...

    def process_trace(self, trace: int) -> int:
        """ProcessTrace: blocks until the session stops or the trace is closed; status."""
        ...

    def close_trace(self, trace: int) -> int:
        """CloseTrace: status."""
        ...


def _failure(call: str, status: int) -> CaptureError:
    remedies = {
        ERROR_ACCESS_DENIED: "run the agent as Administrator, LocalSystem or a member of "
        "Performance Log Users",
        ERROR_NO_SYSTEM_RESOURCES: "Windows allows 64 trace sessions at a time: stop one "
        "(logman query -ets) and start the agent again",
    }
    return CaptureError(
        f"{call} failed with Win32 error {status}",
        remedies.get(status, "see the Win32 error code; the agent cannot capture on this host as it is"),
    )


class EtwSession:
    def __init__(
        self,
        api: TraceApi,
        *,
        name: str = SESSION_NAME,
        limits: SessionLimits | None = None,
        counters: EtwCounters | None = None,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        on_event: Callable[[int, NetEvent | FailureEvent | None, int], None] | None = None,
        on_dns: Callable[[DnsQuery], None] | None = None,
    ) -> None:
        """``on_dns``: also enable Microsoft-Windows-DNS-Client and hand it every completed query."""
        self.api = api
        self.name = name
        self.limits = limits or SessionLimits()
        self.counters = counters or EtwCounters()
        self.clock_ns = clock_ns
        # sees every counted event after it is counted: (pid, the decoded event or None for traffic, ns)
        self.on_event = on_event
        self.on_dns = on_dns
        self.dns_enabled = False
        self.dns_queries = 0
        self.dns_decode_errors = 0
        self.foreign_events = 0  # from a provider this session did not ask for
        self.stale_sessions_stopped = 0
        self.consumer_status: int | None = None
        self._lock = threading.Lock()
        self._trace: int | None = None
        self._thread: threading.Thread | None = None
        self._started = False

    def start(self) -> None:
        status, handle = self.api.start_trace(self.name, self.limits)
        if status == ERROR_ALREADY_EXISTS:
            # a crashed run (or another agent) left a session of this name: take it over, once
            log.warning("ETW session %s exists (an earlier run did not stop it): stopping it", self.name)
            stopped = self.api.stop_trace(self.name)
            if stopped != ERROR_SUCCESS:
                raise _failure(f"stopping the stale ETW session {self.name}", stopped)
            self.stale_sessions_stopped += 1
            status, handle = self.api.start_trace(self.name, self.limits)
        if status != ERROR_SUCCESS:
            raise _failure(f"StartTrace({self.name})", status)
        self._started = True
        try:
            enabled = self.api.enable_provider(
                handle, PROVIDER_GUID, TRACE_LEVEL_INFORMATION, KEYWORD_IPV4 | KEYWORD_IPV6
            )
            if enabled != ERROR_SUCCESS:
                raise _failure("EnableTraceEx2(Microsoft-Windows-Kernel-Network)", enabled)
            if self.on_dns is not None:
                dns = self.api.enable_provider(handle, DNS_CLIENT_GUID, TRACE_LEVEL_INFORMATION, KEYWORDS_ALL)
                self.dns_enabled = dns == ERROR_SUCCESS
                if not self.dns_enabled:
                    log.warning(
                        "cannot enable Microsoft-Windows-DNS-Client (Win32 error %d): host names come "
                        "from reverse lookups only",
                        dns,
                    )
            opened, trace = self.api.open_trace(self.name, self._on_event)
            if opened != ERROR_SUCCESS:
                raise _failure(f"OpenTrace({self.name})", opened)
            self._trace = trace
            self._thread = threading.Thread(target=self._consume, name="etw-consumer", daemon=True)
            self._thread.start()
        except BaseException:
            self.close()
            raise

    def _on_event(self, provider: str, event_id: int, payload: bytes, monotonic_ns: int) -> None:
        if provider != PROVIDER_GUID:
            self._on_other(provider, event_id, payload)
            return
        with self._lock:
            seen = self.counters.add_raw(event_id, payload, monotonic_ns)
        if seen is not None and self.on_event is not None:
            self.on_event(seen[0], seen[1], monotonic_ns)

    def _on_other(self, provider: str, event_id: int, payload: bytes) -> None:
        if provider != DNS_CLIENT_GUID or self.on_dns is None:
            self.foreign_events += 1
            return
        if event_id != QUERY_COMPLETED:
            return  # the provider's other events (cache lookups, server changes): not needed
        try:
            query = decode_dns_query(payload)
        except EtwDecodeError as exc:
            self.dns_decode_errors += 1
            log.debug("skipping a DNS-Client event: %s", exc)
            return
        self.dns_queries += 1
        self.on_dns(query)

    def _consume(self) -> None:
        assert self._trace is not None
        status = self.api.process_trace(self._trace)
        self.consumer_status = status
        if status not in (ERROR_SUCCESS, ERROR_CANCELLED):
            log.error("ETW consumer stopped with Win32 error %d: capture has stopped", status)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def drain(self, wall_time: float | None = None) -> Drain:
        with self._lock:
            return self.counters.drain(
                monotonic_ns=self.clock_ns(), wall_time=time.time() if wall_time is None else wall_time
            )

    def stats(self) -> SessionStats:
        status, stats = self.api.query_trace(self.name)
        if status != ERROR_SUCCESS:
            raise _failure(f"querying the ETW session {self.name}", status)
        return stats

    def close(self) -> None:
        """Stop the session (ProcessTrace then returns), close the trace, join the consumer. Safe to
        call twice, and after a failed start."""
        if self._started:
            stopped = self.api.stop_trace(self.name)
            if stopped != ERROR_SUCCESS:
                log.warning("stopping the ETW session %s: Win32 error %d", self.name, stopped)
            self._started = False
        if self._trace is not None:
            self.api.close_trace(self._trace)
            self._trace = None
        if self._thread is not None:
            self._thread.join(timeout=JOIN_SECONDS)
            if self._thread.is_alive():
                log.warning("the ETW consumer did not return within %.0f s", JOIN_SECONDS)
            self._thread = None
