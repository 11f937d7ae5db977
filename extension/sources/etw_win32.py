"""The Win32 side of the ETW session: the :class:`~extension.sources.etw_session.TraceApi` calls on
advapi32 through ctypes, and the structures they take (evntrace.h, evntcons.h).

Every field has an explicit width (ULONG is 32 bits on Windows, ``c_ulong`` is 64 on Linux; WCHAR is
16 bits, ``c_wchar`` is 32 on Linux), so the layouts are the Windows x64 ones on any 64-bit Python:
the tests check their sizes and offsets against the documented x64 values, and decode an EVENT_RECORD
built in memory. advapi32 itself is loaded only when a :class:`Win32TraceApi` is made, and only on
Windows. **Not run on Windows yet.**
"""

from __future__ import annotations

import ctypes
import threading
import time
import uuid
from typing import Any, Final

from extension.sources.base import CaptureError
from extension.sources.etw_session import ERROR_SUCCESS, EventCallback, SessionLimits, SessionStats

ULONG = ctypes.c_uint32
USHORT = ctypes.c_uint16
UCHAR = ctypes.c_uint8
ULONG64 = ctypes.c_uint64
LONGLONG = ctypes.c_int64
WCHAR = ctypes.c_uint16
TRACEHANDLE = ctypes.c_uint64

WNODE_FLAG_TRACED_GUID: Final = 0x00020000
EVENT_TRACE_REAL_TIME_MODE: Final = 0x00000100
EVENT_TRACE_CONTROL_QUERY: Final = 0
EVENT_TRACE_CONTROL_STOP: Final = 1
EVENT_CONTROL_CODE_ENABLE_PROVIDER: Final = 1
PROCESS_TRACE_MODE_REAL_TIME: Final = 0x00000100
PROCESS_TRACE_MODE_EVENT_RECORD: Final = 0x10000000
INVALID_PROCESSTRACE_HANDLE: Final = 0xFFFFFFFFFFFFFFFF
ERROR_INVALID_HANDLE: Final = 6  # what an invalid trace handle without a last error is reported as
CLOCK_QPC: Final = 1  # Wnode.ClientContext: QueryPerformanceCounter time stamps
MAX_NAME_CHARS: Final = 1024  # room for the logger name after EVENT_TRACE_PROPERTIES


class GUID(ctypes.Structure):
    _fields_ = [("Data1", ULONG), ("Data2", USHORT), ("Data3", USHORT), ("Data4", UCHAR * 8)]

    @classmethod
    def parse(cls, text: str) -> GUID:
        raw = uuid.UUID(text).bytes_le
        return cls.from_buffer_copy(raw)


class WNODE_HEADER(ctypes.Structure):
    _fields_ = [
        ("BufferSize", ULONG),
        ("ProviderId", ULONG),
        ("HistoricalContext", ULONG64),
        ("TimeStamp", LONGLONG),
        ("Guid", GUID),
        ("ClientContext", ULONG),
        ("Flags", ULONG),
    ]


class EVENT_TRACE_PROPERTIES(ctypes.Structure):
    _fields_ = [
        ("Wnode", WNODE_HEADER),
        ("BufferSize", ULONG),
        ("MinimumBuffers", ULONG),
        ("MaximumBuffers", ULONG),
        ("MaximumFileSize", ULONG),
        ("LogFileMode", ULONG),
        ("FlushTimer", ULONG),
        ("EnableFlags", ULONG),
        ("AgeLimit", ctypes.c_int32),
        ("NumberOfBuffers", ULONG),
        ("FreeBuffers", ULONG),
        ("EventsLost", ULONG),
        ("BuffersWritten", ULONG),
        ("LogBuffersLost", ULONG),
        ("RealTimeBuffersLost", ULONG),
        ("LoggerThreadId", ctypes.c_void_p),
        ("LogFileNameOffset", ULONG),
        ("LoggerNameOffset", ULONG),
    ]


class PropertiesBuffer(ctypes.Structure):
    """EVENT_TRACE_PROPERTIES followed by the room ControlTrace and StartTrace write the name into."""

    _fields_ = [("Properties", EVENT_TRACE_PROPERTIES), ("Name", WCHAR * MAX_NAME_CHARS)]


class EVENT_DESCRIPTOR(ctypes.Structure):
    _fields_ = [
        ("Id", USHORT),
        ("Version", UCHAR),
        ("Channel", UCHAR),
        ("Level", UCHAR),
        ("Opcode", UCHAR),
        ("Task", USHORT),
        ("Keyword", ULONG64),
    ]


class EVENT_HEADER(ctypes.Structure):
    _fields_ = [
        ("Size", USHORT),
        ("HeaderType", USHORT),
        ("Flags", USHORT),
        ("EventProperty", USHORT),
        ("ThreadId", ULONG),
        ("ProcessId", ULONG),
        ("TimeStamp", LONGLONG),
        ("ProviderId", GUID),
        ("EventDescriptor", EVENT_DESCRIPTOR),
        ("ProcessorTime", ULONG64),  # union of KernelTime/UserTime and ProcessorTime
        ("ActivityId", GUID),
    ]


class ETW_BUFFER_CONTEXT(ctypes.Structure):
    _fields_ = [("ProcessorNumber", UCHAR), ("Alignment", UCHAR), ("LoggerId", USHORT)]


class EVENT_RECORD(ctypes.Structure):
    _fields_ = [
        ("EventHeader", EVENT_HEADER),
        ("BufferContext", ETW_BUFFER_CONTEXT),
        ("ExtendedDataCount", USHORT),
        ("UserDataLength", USHORT),
        ("ExtendedData", ctypes.c_void_p),
        ("UserData", ctypes.c_void_p),
        ("UserContext", ctypes.c_void_p),
    ]


class EVENT_TRACE_HEADER(ctypes.Structure):
    _fields_ = [
        ("Size", USHORT),
        ("FieldTypeFlags", USHORT),
        ("Version", ULONG),
        ("ThreadId", ULONG),
        ("ProcessId", ULONG),
        ("TimeStamp", LONGLONG),
        ("Guid", GUID),
        ("ProcessorTime", ULONG64),
    ]


class EVENT_TRACE(ctypes.Structure):
    _fields_ = [
        ("Header", EVENT_TRACE_HEADER),
        ("InstanceId", ULONG),
        ("ParentInstanceId", ULONG),
        ("ParentGuid", GUID),
        ("MofData", ctypes.c_void_p),
        ("MofLength", ULONG),
        ("ClientContext", ULONG),
    ]


class SYSTEMTIME(ctypes.Structure):
    _fields_ = [
        (name, USHORT)
        for name in ("wYear", "wMonth", "wDayOfWeek", "wDay", "wHour", "wMinute", "wSecond", "wMilliseconds")
    ]


class TIME_ZONE_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("Bias", ctypes.c_int32),
        ("StandardName", WCHAR * 32),
        ("StandardDate", SYSTEMTIME),
        ("StandardBias", ctypes.c_int32),
        ("DaylightName", WCHAR * 32),
        ("DaylightDate", SYSTEMTIME),
        ("DaylightBias", ctypes.c_int32),
    ]


class TRACE_LOGFILE_HEADER(ctypes.Structure):
    _fields_ = [
        ("BufferSize", ULONG),
        ("Version", ULONG),
        ("ProviderVersion", ULONG),
        ("NumberOfProcessors", ULONG),
        ("EndTime", LONGLONG),
        ("TimerResolution", ULONG),
        ("MaximumFileSize", ULONG),
        ("LogFileMode", ULONG),
        ("BuffersWritten", ULONG),
        ("LogInstanceGuid", GUID),  # union with StartBuffers, PointerSize, EventsLost, CpuSpeedInMHz
        ("LoggerName", ctypes.c_void_p),
        ("LogFileName", ctypes.c_void_p),
        ("TimeZone", TIME_ZONE_INFORMATION),
        ("BootTime", LONGLONG),
        ("PerfFreq", LONGLONG),
        ("StartTime", LONGLONG),
        ("ReservedFlags", ULONG),
        ("BuffersLost", ULONG),
    ]


EVENT_RECORD_CALLBACK = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)(None, ctypes.POINTER(EVENT_RECORD))


class EVENT_TRACE_LOGFILEW(ctypes.Structure):
    _fields_ = [
        ("LogFileName", ctypes.c_wchar_p),
        ("LoggerName", ctypes.c_wchar_p),
        ("CurrentTime", LONGLONG),
        ("BuffersRead", ULONG),
        ("ProcessTraceMode", ULONG),  # union with LogFileMode
        ("CurrentEvent", EVENT_TRACE),
        ("LogfileHeader", TRACE_LOGFILE_HEADER),
        ("BufferCallback", ctypes.c_void_p),
        ("BufferSize", ULONG),
        ("Filled", ULONG),
        ("EventsLost", ULONG),
        ("EventRecordCallback", EVENT_RECORD_CALLBACK),  # union with EventCallback
        ("IsKernelTrace", ULONG),
        ("Context", ctypes.c_void_p),
    ]


def trace_properties(limits: SessionLimits | None = None) -> PropertiesBuffer:
    """The EVENT_TRACE_PROPERTIES of a real-time session with ``limits``, the logger name's room after
    it (StartTrace copies the name there)."""
    limits = limits or SessionLimits()
    buffer = PropertiesBuffer()
    properties = buffer.Properties
    properties.Wnode.BufferSize = ctypes.sizeof(PropertiesBuffer)
    properties.Wnode.Flags = WNODE_FLAG_TRACED_GUID
    properties.Wnode.ClientContext = CLOCK_QPC
    properties.BufferSize = limits.buffer_kb
    properties.MinimumBuffers = limits.min_buffers
    properties.MaximumBuffers = limits.max_buffers
    properties.FlushTimer = limits.flush_seconds
    properties.LogFileMode = EVENT_TRACE_REAL_TIME_MODE
    properties.LoggerNameOffset = ctypes.sizeof(EVENT_TRACE_PROPERTIES)
    return buffer


_PROVIDERS: dict[bytes, str] = {}  # a provider GUID's 16 bytes -> its text form


def record_event(record: Any) -> tuple[str, int, bytes]:
    """(provider GUID, event id, user data) of an EVENT_RECORD (a pointer's ``contents``)."""
    header = record.EventHeader
    raw = bytes(header.ProviderId)
    provider = _PROVIDERS.get(raw)
    if provider is None:  # a session sees a handful of providers: each is spelled out once
        provider = _PROVIDERS[raw] = str(uuid.UUID(bytes_le=raw)).upper()
    length = int(record.UserDataLength)
    data = ctypes.string_at(record.UserData, length) if record.UserData and length else b""
    return provider, int(header.EventDescriptor.Id), data


class Win32TraceApi:
    """:class:`~extension.sources.etw_session.TraceApi` on advapi32 (Windows only)."""

    def __init__(self, advapi: Any = None) -> None:
        """``advapi``: advapi32 (loaded here on Windows; the tests pass a fake that writes what Windows
        writes)."""
        if advapi is None:
            windll: Any = getattr(ctypes, "WinDLL", None)  # only Windows' ctypes has it
            if windll is None:
                raise CaptureError(
                    "ETW capture needs Windows", "on Linux the agent captures with eBPF (the default source)"
                )
            advapi = windll("advapi32", use_last_error=True)
            advapi.OpenTraceW.restype = TRACEHANDLE
        self.advapi: Any = advapi
        self._callbacks: dict[int, Any] = {}  # kept alive while their trace is open
        self.callback_errors = 0
        self._lock = threading.Lock()

    def start_trace(self, name: str, limits: SessionLimits) -> tuple[int, int]:
        handle = TRACEHANDLE(0)
        buffer = trace_properties(limits)
        status = self.advapi.StartTraceW(ctypes.byref(handle), ctypes.c_wchar_p(name), ctypes.byref(buffer))
        return int(status), int(handle.value)

    def _control(self, name: str, code: int) -> tuple[int, PropertiesBuffer]:
        buffer = trace_properties()
        status = self.advapi.ControlTraceW(
            TRACEHANDLE(0), ctypes.c_wchar_p(name), ctypes.byref(buffer), ULONG(code)
        )
        return int(status), buffer

    def stop_trace(self, name: str) -> int:
        return self._control(name, EVENT_TRACE_CONTROL_STOP)[0]

    def query_trace(self, name: str) -> tuple[int, SessionStats]:
        status, buffer = self._control(name, EVENT_TRACE_CONTROL_QUERY)
        properties = buffer.Properties
        return status, SessionStats(
            events_lost=int(properties.EventsLost),
            buffers_lost=int(properties.RealTimeBuffersLost),
            buffers_written=int(properties.BuffersWritten),
        )

    def enable_provider(self, session: int, guid: str, level: int, keywords: int) -> int:
        provider = GUID.parse(guid)
        status = self.advapi.EnableTraceEx2(
            TRACEHANDLE(session),
            ctypes.byref(provider),
            ULONG(EVENT_CONTROL_CODE_ENABLE_PROVIDER),
            UCHAR(level),
            ULONG64(keywords),
            ULONG64(0),
            ULONG(0),
            None,
        )
        return int(status)

    def open_trace(self, name: str, callback: EventCallback) -> tuple[int, int]:
        def on_record(pointer: Any) -> None:
            try:
                provider, event_id, data = record_event(pointer.contents)
                callback(provider, event_id, data, time.monotonic_ns())
            except Exception:
                self.callback_errors += 1  # counted, shown with the decode errors

        thunk = EVENT_RECORD_CALLBACK(on_record)
        logfile = EVENT_TRACE_LOGFILEW()
        logfile.LoggerName = name
        logfile.ProcessTraceMode = PROCESS_TRACE_MODE_REAL_TIME | PROCESS_TRACE_MODE_EVENT_RECORD
        logfile.EventRecordCallback = thunk
        handle = int(self.advapi.OpenTraceW(ctypes.byref(logfile)))
        if handle == INVALID_PROCESSTRACE_HANDLE:
            last_error = getattr(ctypes, "get_last_error", None)  # Windows only
            return (int(last_error()) if last_error is not None else 0) or ERROR_INVALID_HANDLE, 0
        with self._lock:
            self._callbacks[handle] = (thunk, logfile)
        return ERROR_SUCCESS, handle

    def process_trace(self, trace: int) -> int:
        handle = TRACEHANDLE(trace)
        return int(self.advapi.ProcessTrace(ctypes.byref(handle), ULONG(1), None, None))

    def close_trace(self, trace: int) -> int:
        status = int(self.advapi.CloseTrace(TRACEHANDLE(trace)))
        with self._lock:
            self._callbacks.pop(trace, None)
        return status
