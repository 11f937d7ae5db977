"""The ETW structures as ctypes lays them out, against the documented Windows x64 sizes and offsets
(every field has an explicit width, so a 64-bit Linux Python lays them out as Windows x64 does), the
session properties, and an EVENT_RECORD built in memory decoded as the callback decodes it. The
advapi32 calls themselves can only run on Windows."""

from __future__ import annotations

import ctypes
import sys
import uuid

import pytest

from extension.sources.base import CaptureError
from extension.sources.etw_events import PROVIDER_GUID
from extension.sources.etw_session import SessionLimits
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
