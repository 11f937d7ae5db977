"""The ETW session's control flow against a fake of the Win32 calls it makes (ETW cannot run here): a
stale session taken over, errors that say what to do, the provider enabled for IPv4 and IPv6, events
consumed on a thread into the counters, stop on close (also after a failed start), lost counts."""

from __future__ import annotations

import ipaddress
import queue
import threading

import pytest

from extension.sources.base import CaptureError
from extension.sources.etw_events import PROVIDER_GUID
from extension.sources.etw_session import (
    ERROR_ACCESS_DENIED,
    ERROR_ALREADY_EXISTS,
    ERROR_CANCELLED,
    ERROR_NO_SYSTEM_RESOURCES,
    ERROR_SUCCESS,
    KEYWORD_IPV4,
    KEYWORD_IPV6,
    EtwSession,
    EventCallback,
    SessionLimits,
    SessionStats,
)


def send_payload(pid: int, size: int, port: int) -> bytes:
    return (
        pid.to_bytes(4, "little")
        + size.to_bytes(4, "little")
        + ipaddress.ip_address("93.184.216.34").packed
        + ipaddress.ip_address("10.0.0.2").packed
        + port.to_bytes(2, "big")
        + (50000).to_bytes(2, "big")
    )


class FakeTraceApi:
    """Sessions by name, as the ETW controller keeps them; ProcessTrace delivers queued events to the
    callback until the session is stopped or the trace closed."""

    def __init__(self, *, existing: bool = False, start_status: int = ERROR_SUCCESS) -> None:
        self.sessions: set[str] = {"osquery-netflow"} if existing else set()
        self.start_status = start_status
        self.enable_status = ERROR_SUCCESS
        self.enable_statuses: dict[str, int] = {}  # by provider GUID, beats enable_status
        self.calls: list[tuple[object, ...]] = []
        # (event id, user data, ns) of Kernel-Network, or (provider GUID, event id, user data, ns)
        self.events: queue.Queue[tuple[int, bytes, int] | tuple[str, int, bytes, int] | None] = queue.Queue()
        self.callback: EventCallback | None = None
        self.processing = threading.Event()
        self.handled = threading.Semaphore(0)  # released after each event reaches the callback

    def start_trace(self, name: str, limits: SessionLimits) -> tuple[int, int]:
        self.calls.append(("start", name, limits.buffer_kb, limits.max_buffers))
        if self.start_status != ERROR_SUCCESS:
            return self.start_status, 0
        if name in self.sessions:
            return ERROR_ALREADY_EXISTS, 0
        self.sessions.add(name)
        return ERROR_SUCCESS, 77

    def stop_trace(self, name: str) -> int:
        self.calls.append(("stop", name))
        if name not in self.sessions:
            return 4201  # ERROR_WMI_INSTANCE_NOT_FOUND
        self.sessions.discard(name)
        self.events.put(None)  # ProcessTrace returns when its session stops
        return ERROR_SUCCESS

    def query_trace(self, name: str) -> tuple[int, SessionStats]:
        self.calls.append(("query", name))
        return ERROR_SUCCESS, SessionStats(events_lost=3, buffers_lost=1, buffers_written=40)

    def enable_provider(self, session: int, guid: str, level: int, keywords: int) -> int:
        self.calls.append(("enable", session, guid, level, keywords))
        return self.enable_statuses.get(guid, self.enable_status)

    def open_trace(self, name: str, callback: EventCallback) -> tuple[int, int]:
        self.calls.append(("open", name))
        self.callback = callback
        return ERROR_SUCCESS, 99

    def process_trace(self, trace: int) -> int:
        self.calls.append(("process", trace))
        self.processing.set()
        assert self.callback is not None
        while True:
            event = self.events.get()
            if event is None:
                return ERROR_CANCELLED
            if len(event) == 3:
                event = (PROVIDER_GUID, *event)
            self.callback(*event)
            self.handled.release()

    def close_trace(self, trace: int) -> int:
        self.calls.append(("close", trace))
        return ERROR_SUCCESS


def names(api: FakeTraceApi) -> list[object]:
    return [call[0] for call in api.calls]


def test_a_session_consumes_events_into_the_counters_and_stops_on_close() -> None:
    api = FakeTraceApi()
    session = EtwSession(api, clock_ns=lambda: 5_000)
    session.start()
    started = session.running
    assert api.processing.wait(5) and started
    assert ("enable", 77, PROVIDER_GUID, 4, KEYWORD_IPV4 | KEYWORD_IPV6) in api.calls
    for size in (100, 200):
        api.events.put((10, send_payload(42, size, 443), 1_000 + size))
    api.events.put((10, b"short", 2_000))
    assert all(api.handled.acquire(timeout=5) for _ in range(3))
    drained = session.drain(wall_time=1_800_000_000.0)
    ((key, counters),) = drained.flows
    assert (key.pid, key.remote_port, counters.bytes_sent, counters.sends) == (42, 443, 300, 2)
    assert drained.decode_errors == 1 and drained.monotonic_ns == 5_000
    assert session.stats() == SessionStats(events_lost=3, buffers_lost=1, buffers_written=40)
    session.close()
    assert not session.running and api.sessions == set()
    assert names(api)[-2:] == ["stop", "close"] and session.consumer_status == ERROR_CANCELLED
    session.close()  # twice is fine
    assert names(api).count("stop") == 1


def test_a_stale_session_left_by_a_crash_is_stopped_and_started_again() -> None:
    api = FakeTraceApi(existing=True)
    session = EtwSession(api)
    session.start()
    assert names(api)[:3] == ["start", "stop", "start"] and session.stale_sessions_stopped == 1
    session.close()
    assert api.sessions == set()


@pytest.mark.parametrize(
    ("status", "remedy"),
    [
        (ERROR_ACCESS_DENIED, "Administrator"),
        (ERROR_NO_SYSTEM_RESOURCES, "64 trace sessions"),
        (87, "Win32 error code"),
    ],
)
def test_start_failures_name_the_cause_and_the_fix(status: int, remedy: str) -> None:
    api = FakeTraceApi(start_status=status)
    with pytest.raises(CaptureError, match=remedy) as caught:
        EtwSession(api).start()
    assert f"error {status}" in caught.value.cause
    assert "stop" not in names(api)  # nothing was started, nothing to stop


def test_a_failure_after_the_start_stops_the_session() -> None:
    api = FakeTraceApi()
    api.enable_status = ERROR_ACCESS_DENIED
    with pytest.raises(CaptureError, match="EnableTraceEx2"):
        EtwSession(api).start()
    assert names(api) == ["start", "enable", "stop"] and api.sessions == set()


def test_buffer_limits_are_bounded_and_checked() -> None:
    api = FakeTraceApi()
    session = EtwSession(api, limits=SessionLimits(buffer_kb=128, max_buffers=16))
    session.start()
    assert api.calls[0] == ("start", "osquery-netflow", 128, 16)
    session.close()
    with pytest.raises(ValueError, match="buffer_kb"):
        SessionLimits(buffer_kb=2048)
    with pytest.raises(ValueError, match="min_buffers"):
        SessionLimits(min_buffers=10, max_buffers=4)
