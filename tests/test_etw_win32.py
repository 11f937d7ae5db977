"""The ETW structures as ctypes lays them out, against the documented Windows x64 sizes and offsets
(every field has an explicit width, so a 64-bit Linux Python lays them out as Windows x64 does), the
session properties, and an EVENT_RECORD built in memory decoded as the callback decodes it. The
advapi32 calls themselves can only run on Windows."""

from __future__ import annotations

import ctypes
import sys
import uuid
from typing import Any

import pytest

from extension.sources.base import CaptureError
from extension.sources.etw_events import PROVIDER_GUID
from extension.sources.etw_session import SessionLimits, SessionStats
from extension.sources.etw_win32 import (
    EVENT_HEADER,
    EVENT_RECORD,
    EVENT_TRACE,
    EVENT_TRACE_HEADER,
    EVENT_TRACE_LOGFILEW,
    EVENT_TRACE_PROPERTIES,
    EVENT_TRACE_REAL_TIME_MODE,
    GUID,
    TIME_ZONE_INFORMATION,
    TRACE_LOGFILE_HEADER,
    WNODE_FLAG_TRACED_GUID,
    WNODE_HEADER,
    Win32TraceApi,
    record_event,
    trace_properties,
)

pytestmark = pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="the layouts checked are x64's")


def test_structure_sizes_are_the_windows_x64_ones() -> None:
    assert ctypes.sizeof(GUID) == 16
    assert ctypes.sizeof(WNODE_HEADER) == 48
    assert ctypes.sizeof(EVENT_TRACE_PROPERTIES) == 120
    assert ctypes.sizeof(EVENT_HEADER) == 80
    assert ctypes.sizeof(EVENT_RECORD) == 112
    assert ctypes.sizeof(EVENT_TRACE_HEADER) == 48
    assert ctypes.sizeof(EVENT_TRACE) == 88
    assert ctypes.sizeof(TIME_ZONE_INFORMATION) == 0xAC
    assert ctypes.sizeof(TRACE_LOGFILE_HEADER) == 0x118
    assert ctypes.sizeof(EVENT_TRACE_LOGFILEW) == 0x1C0


def test_field_offsets_the_calls_rely_on() -> None:
    offsets = {
        (EVENT_TRACE_PROPERTIES, "BufferSize"): 48,
        (EVENT_TRACE_PROPERTIES, "EventsLost"): 88,
        (EVENT_TRACE_PROPERTIES, "RealTimeBuffersLost"): 100,
        (EVENT_TRACE_PROPERTIES, "LoggerThreadId"): 104,
        (EVENT_TRACE_PROPERTIES, "LoggerNameOffset"): 116,
        (EVENT_HEADER, "ProcessId"): 12,
        (EVENT_HEADER, "ProviderId"): 24,
        (EVENT_HEADER, "EventDescriptor"): 40,
        (EVENT_RECORD, "UserDataLength"): 86,
        (EVENT_RECORD, "UserData"): 96,
        (TRACE_LOGFILE_HEADER, "TimeZone"): 72,
        (TRACE_LOGFILE_HEADER, "BootTime"): 248,
        (EVENT_TRACE_LOGFILEW, "ProcessTraceMode"): 28,
        (EVENT_TRACE_LOGFILEW, "CurrentEvent"): 32,
        (EVENT_TRACE_LOGFILEW, "LogfileHeader"): 120,
        (EVENT_TRACE_LOGFILEW, "BufferCallback"): 400,
        (EVENT_TRACE_LOGFILEW, "EventRecordCallback"): 424,
        (EVENT_TRACE_LOGFILEW, "Context"): 440,
    }
    for (structure, field), offset in offsets.items():
        assert getattr(structure, field).offset == offset, f"{structure.__name__}.{field}"


def test_session_properties() -> None:
    buffer = trace_properties(SessionLimits(buffer_kb=128, min_buffers=8, max_buffers=32, flush_seconds=2))
    properties = buffer.Properties
    assert properties.Wnode.BufferSize == ctypes.sizeof(buffer) > ctypes.sizeof(EVENT_TRACE_PROPERTIES)
    assert properties.Wnode.Flags == WNODE_FLAG_TRACED_GUID
    assert properties.LogFileMode == EVENT_TRACE_REAL_TIME_MODE
    assert (properties.BufferSize, properties.MinimumBuffers, properties.MaximumBuffers) == (128, 8, 32)
    assert properties.FlushTimer == 2
    assert properties.LoggerNameOffset == ctypes.sizeof(EVENT_TRACE_PROPERTIES)  # the name follows


def test_an_event_record_decodes_to_the_provider_id_and_user_data() -> None:
    payload = bytes(range(20))
    data = ctypes.create_string_buffer(payload, len(payload))
    record = EVENT_RECORD()
    record.EventHeader.ProviderId = GUID.parse(PROVIDER_GUID)
    record.EventHeader.EventDescriptor.Id = 43
    record.EventHeader.ProcessId = 4  # the header's pid: not used (the payload's is)
    record.UserData = ctypes.cast(data, ctypes.c_void_p)
    record.UserDataLength = len(payload)
    assert record_event(record) == (PROVIDER_GUID, 43, payload)
    assert bytes(GUID.parse(PROVIDER_GUID)) == uuid.UUID(PROVIDER_GUID).bytes_le
    empty = EVENT_RECORD()
    assert record_event(empty)[2] == b""


@pytest.mark.skipif(sys.platform == "win32", reason="on Windows the binding loads advapi32")
def test_the_binding_says_it_needs_windows() -> None:
    with pytest.raises(CaptureError, match="needs Windows"):
        Win32TraceApi()


class FakeAdvapi:
    """advapi32's trace calls as the binding makes them: each checks what it receives and writes what
    Windows writes; ProcessTrace calls the registered EVENT_RECORD callback through its C thunk with
    records laid out in memory, as the ETW runtime does."""

    def __init__(self, records: list[tuple[str, int, bytes]]) -> None:
        self.records = records
        self.calls: list[tuple[object, ...]] = []
        self.callback: Any = None
        self.open_handle = 0xABC

    def StartTraceW(self, handle: Any, name: Any, properties: Any) -> int:
        buffer = properties._obj
        self.calls.append(("start", name.value, buffer.Properties.MaximumBuffers))
        handle._obj.value = 0x1234
        return 0

    def ControlTraceW(self, handle: Any, name: Any, properties: Any, code: Any) -> int:
        assert handle.value == 0  # by name
        self.calls.append(("control", name.value, code.value))
        if code.value == 0:  # query: Windows fills the session's counts in
            props = properties._obj.Properties
            props.EventsLost, props.RealTimeBuffersLost, props.BuffersWritten = 3, 2, 50
        return 0

    def EnableTraceEx2(self, session: Any, guid: Any, code: Any, level: Any, any_kw: Any, all_kw: Any,
                       timeout: Any, parameters: Any) -> int:  # fmt: skip
        provider = str(uuid.UUID(bytes_le=bytes(guid._obj))).upper()
        self.calls.append(("enable", session.value, provider, code.value, level.value, any_kw.value))
        assert (all_kw.value, timeout.value, parameters) == (0, 0, None)
        return 0

    def OpenTraceW(self, logfile: Any) -> int:
        log = logfile._obj
        self.calls.append(("open", log.LoggerName, hex(log.ProcessTraceMode)))
        self.callback = log.EventRecordCallback
        return self.open_handle

    def ProcessTrace(self, handles: Any, count: Any, start: Any, end: Any) -> int:
        assert count.value == 1 and start is None and end is None
        self.calls.append(("process", handles._obj.value))
        keep = []
        for provider, event_id, payload in self.records:
            data = ctypes.create_string_buffer(payload, len(payload))
            record = EVENT_RECORD()
            record.EventHeader.ProviderId = GUID.parse(provider)
            record.EventHeader.EventDescriptor.Id = event_id
            record.UserData = ctypes.cast(data, ctypes.c_void_p)
            record.UserDataLength = len(payload)
            keep.append((data, record))
            self.callback(ctypes.pointer(record))  # through the C thunk, as ETW calls it
        return 0

    def CloseTrace(self, handle: Any) -> int:
        self.calls.append(("close", handle.value))
        return 0


def test_the_binding_drives_advapi32_and_delivers_records_through_the_thunk() -> None:
    from extension.sources.etw_dns import DNS_CLIENT_GUID  # noqa: PLC0415

    records = [(PROVIDER_GUID, 10, b"\x01" * 20), (DNS_CLIENT_GUID, 3008, b"dns"), (PROVIDER_GUID, 11, b"")]
    advapi = FakeAdvapi(records)
    api = Win32TraceApi(advapi)
    assert api.start_trace("osquery-netflow", SessionLimits(max_buffers=32)) == (0, 0x1234)
    assert api.enable_provider(0x1234, PROVIDER_GUID, 4, 0x30) == 0
    got: list[tuple[str, int, bytes]] = []
    status, trace = api.open_trace("osquery-netflow", lambda p, i, d, _ns: got.append((p, i, d)))
    assert (status, trace) == (0, 0xABC)
    assert api.process_trace(trace) == 0
    assert got == records  # provider, id and user data, as built in memory
    assert api.query_trace("osquery-netflow") == (
        0,
        SessionStats(events_lost=3, buffers_lost=2, buffers_written=50),
    )
    assert api.stop_trace("osquery-netflow") == 0 and api.close_trace(trace) == 0
    assert advapi.calls == [
        ("start", "osquery-netflow", 32),
        ("enable", 0x1234, PROVIDER_GUID, 1, 4, 0x30),  # EVENT_CONTROL_CODE_ENABLE_PROVIDER
        ("open", "osquery-netflow", hex(0x10000100)),  # real time, EVENT_RECORD callbacks
        ("process", 0xABC),
        ("control", "osquery-netflow", 0),  # query
        ("control", "osquery-netflow", 1),  # stop
        ("close", 0xABC),
    ]
    assert api._callbacks == {}  # the thunk is released with its trace


def test_a_failing_callback_is_counted_not_raised_into_etw() -> None:
    advapi = FakeAdvapi([(PROVIDER_GUID, 10, b"x"), (PROVIDER_GUID, 11, b"y")])
    api = Win32TraceApi(advapi)

    def broken(_provider: str, event_id: int, _data: bytes, _ns: int) -> None:
        if event_id == 10:
            raise ValueError("a bug in a listener")

    _status, trace = api.open_trace("s", broken)
    assert api.process_trace(trace) == 0 and api.callback_errors == 1


def test_an_invalid_trace_handle_is_an_error() -> None:
    advapi = FakeAdvapi([])
    advapi.open_handle = 0xFFFFFFFFFFFFFFFF  # INVALID_PROCESSTRACE_HANDLE
    status, trace = Win32TraceApi(advapi).open_trace("s", lambda *_: None)
    assert status != 0 and trace == 0
