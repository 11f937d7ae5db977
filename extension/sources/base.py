"""The interface every capture backend implements (eBPF on Linux, ETW on Windows)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from extension.events import FlowCounters, FlowKey, Record


class CaptureError(RuntimeError):
    """Capture cannot start or continue. The message names the cause; ``remedy`` says what to do."""

    def __init__(self, cause: str, remedy: str) -> None:
        super().__init__(f"{cause}. {remedy}")
        self.cause = cause
        self.remedy = remedy


@dataclass(slots=True)
class Drain:
    """What one drain of the kernel counters produced."""

    flows: list[tuple[FlowKey, FlowCounters]] = field(default_factory=list)
    decode_errors: int = 0  # keys or values that could not be decoded (counted, skipped)
    evictions: int = 0  # LRU evictions in the drained buffer: counts lost to a full map
    monotonic_ns: int = 0  # CLOCK_MONOTONIC at the drain, to turn counter times into wall time
    wall_time: float = 0.0  # time.time() at the same instant


@dataclass(frozen=True, slots=True)
class SourceStats:
    backend: str  # "ebpf", "etw"
    hook_set: str  # e.g. "fexit", "tracepoint"
    events: int  # traffic calls counted in the kernel since start
    map_evictions: int
    ringbuf_lost: int
    update_failed: int
    udp_no_peer: int
    dns_truncated: int  # DNS answers too long to pass up whole (names in the cut part are missed)
    record_decode_errors: int
    hooks: tuple[str, ...] = ()  # attached programs, for status
    # the source's own cumulative counters, persisted as they grow and shown in net_agent_status's
    # counters (ETW: the session's lost events and buffers, its buffers written, DNS-Client queries)
    counters: Mapping[str, int] = field(default_factory=dict)


RecordHandler = Callable[[Record], None]


class EventSource(Protocol):
    """A started source counts traffic until closed. ``poll`` delivers lifecycle and process records
    to the handler (call it often: a process record must be handled while the process lives);
    ``drain`` returns and resets the traffic counters."""

    backend: str
    hook_set: str

    def poll(self, timeout_ms: int) -> int: ...

    def drain(self) -> Drain: ...

    def stats(self) -> SourceStats: ...

    def close(self) -> None: ...
