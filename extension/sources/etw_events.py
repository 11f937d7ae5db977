"""Microsoft-Windows-Kernel-Network events: decoders and the user-space aggregation of an ETW source.

Pure Python over bytes, importable on every platform: the Windows consumer
(:mod:`extension.sources.etw_session`) hands each event's id and user data here, and the same counters
as the eBPF source come out
(:class:`~extension.sources.base.Drain` of :class:`~extension.events.FlowKey` and
:class:`~extension.events.FlowCounters`).

The provider {7DD42A49-5329-4832-8DFD-43D979153A88} logs, per event id (its manifest's messages:
"%2 bytes transmitted from %4:%6 to %3:%5" and so on):

======  ==========================================================================================
ids     meaning
======  ==========================================================================================
10-16   TCP over IPv4: send, receive, connect, disconnect, retransmit, accept, reconnect
17      TCP over IPv4: connection attempt failed (Proto, FailureCode)
18      TCP over IPv4: bytes copied on behalf of the user
26-32   TCP over IPv6: as 10-16
33      TCP over IPv6: connection attempt failed, as 17 (not in every manifest; decoded if it comes)
34      TCP over IPv6: as 18
42, 43  UDP over IPv4: send, receive
49      UDP over IPv4: attempt failed, as 17
58, 59  UDP over IPv6: send, receive
======  ==========================================================================================

Payloads (little-endian, as ETW lays them out on x86 and ARM): ``PID`` (UInt32), ``size`` (UInt32),
``daddr`` and ``saddr`` (IPv4: 4 bytes; IPv6: 16 bytes, both in network byte order), ``dport`` and
``sport`` (UInt16 each, in network byte order), then fields per event (sequence numbers, connection
ids, TCP options) that the counters do not need and that are not read. ``saddr``/``sport`` are the
local end and ``daddr``/``dport`` the remote one, for receives too (the messages' "from ... to"
wording aside). The failure events carry ``Proto`` and ``FailureCode`` (UInt16 each) and no
addresses.

The process is the payload's ``PID``: the event header's process id is the context the event was
logged in, often the System process (4) or -1 for receives completed in a DPC.

**Not run on Windows yet**: these layouts are the manifest's, and the tests build payloads byte by byte
from them.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from extension.events import (
    AF_INET,
    AF_INET6,
    FIRST_RECEIVED,
    FIRST_SENT,
    FlowCounters,
    FlowKey,
    format_address,
)
from extension.sources.base import Drain

PROVIDER_NAME: Final = "Microsoft-Windows-Kernel-Network"
PROVIDER_GUID: Final = "7DD42A49-5329-4832-8DFD-43D979153A88"


class Kind(enum.StrEnum):
    SEND = "send"
    RECEIVE = "receive"
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    RETRANSMIT = "retransmit"
    ACCEPT = "accept"
    RECONNECT = "reconnect"
    FAILED = "failed"
    COPY = "copy"


_TCP_KINDS: Final = (
    Kind.SEND,
    Kind.RECEIVE,
    Kind.CONNECT,
    Kind.DISCONNECT,
    Kind.RETRANSMIT,
    Kind.ACCEPT,
    Kind.RECONNECT,
    Kind.FAILED,
    Kind.COPY,
)
# event id -> (protocol, IP version, kind)
EVENTS: Final[dict[int, tuple[str, int, Kind]]] = {
    **{10 + offset: ("tcp", 4, kind) for offset, kind in enumerate(_TCP_KINDS)},
    **{26 + offset: ("tcp", 6, kind) for offset, kind in enumerate(_TCP_KINDS)},
    42: ("udp", 4, Kind.SEND),
    43: ("udp", 4, Kind.RECEIVE),
    49: ("udp", 4, Kind.FAILED),
    58: ("udp", 6, Kind.SEND),
    59: ("udp", 6, Kind.RECEIVE),
}
_HEAD: Final = struct.Struct("<II")  # PID, size
_PORTS: Final = struct.Struct(">HH")  # dport, sport: network byte order
_FAILURE: Final = struct.Struct("<HH")  # Proto, FailureCode
V4_PREFIX: Final = _HEAD.size + 4 + 4 + _PORTS.size  # 20 bytes
V6_PREFIX: Final = _HEAD.size + 16 + 16 + _PORTS.size  # 44 bytes


class EtwDecodeError(ValueError):
    """An event that does not have the provider's layout; counted and skipped by the source."""


@dataclass(frozen=True, slots=True)
class NetEvent:
    """A traffic or lifecycle event of one connection (or UDP peer pair)."""

    event_id: int
    kind: Kind
    protocol: str  # "tcp" | "udp"
    version: int  # 4 or 6: the event's IP version
    pid: int
    size: int  # bytes (0 for lifecycle events that carry none)
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int


@dataclass(frozen=True, slots=True)
class FailureEvent:
    """A failed connection attempt: the provider says only the protocol number and the error code."""

    event_id: int
    protocol: str
    version: int
    ip_protocol: int  # the payload's Proto (6 TCP, 17 UDP)
    failure_code: int


MAX_CACHED_ADDRESSES: Final = 65536
_ADDRESSES: dict[bytes, str] = {}  # packed address -> canonical text; emptied when full


def _address(raw: bytes) -> str:
    text = _ADDRESSES.get(raw)
    if text is not None:
        return text
    text = format_address(AF_INET if len(raw) == 4 else AF_INET6, raw)  # v4-mapped shown as v4
    if len(_ADDRESSES) >= MAX_CACHED_ADDRESSES:
        _ADDRESSES.clear()
    _ADDRESSES[raw] = text
    return text


def decode_event(event_id: int, payload: bytes) -> NetEvent | FailureEvent:
    """One event of the provider, from its id and user data; EtwDecodeError for anything else."""
    known = EVENTS.get(event_id)
    if known is None:
        raise EtwDecodeError(f"event id {event_id} is not one of {PROVIDER_NAME}'s TCP/UDP events")
    protocol, version, kind = known
    if kind is Kind.FAILED:
        if len(payload) < _FAILURE.size:
            raise EtwDecodeError(f"event {event_id}: {len(payload)} bytes, a failure has {_FAILURE.size}")
        ip_protocol, failure_code = _FAILURE.unpack_from(payload)
        return FailureEvent(event_id, protocol, version, ip_protocol, failure_code)
    width = 4 if version == 4 else 16
    least = V4_PREFIX if version == 4 else V6_PREFIX
    if len(payload) < least:
        raise EtwDecodeError(f"event {event_id}: {len(payload)} bytes, the IPv{version} layout needs {least}")
    pid, size = _HEAD.unpack_from(payload)
    daddr = payload[_HEAD.size : _HEAD.size + width]
    saddr = payload[_HEAD.size + width : _HEAD.size + 2 * width]
    dport, sport = _PORTS.unpack_from(payload, _HEAD.size + 2 * width)
    return NetEvent(
        event_id=event_id,
        kind=kind,
        protocol=protocol,
        version=version,
        pid=pid,
        size=size,
        local_address=_address(saddr),
        local_port=sport,
        remote_address=_address(daddr),
        remote_port=dport,
    )


@dataclass(slots=True)
class _Entry:
    key: FlowKey
    bytes_sent: int = 0
    bytes_received: int = 0
    sends: int = 0
    receives: int = 0
    first_ns: int = 0
    last_ns: int = 0
    first_dir: int = FIRST_SENT


# The traffic events, counted without decoding: event id -> (the event's protocol and IP version as
# one byte, a send?, the payload's least length). Everything else is decoded in full (rare events).
_TRAFFIC: Final[dict[int, tuple[bytes, bool, int]]] = {
    event_id: (
        bytes([(1 if protocol == "tcp" else 3) + (0 if version == 4 else 1)]),
        kind is Kind.SEND,
        V4_PREFIX if version == 4 else V6_PREFIX,
    )
    for event_id, (protocol, version, kind) in EVENTS.items()
    if kind in (Kind.SEND, Kind.RECEIVE)
}

# What the session's listener gets for an event: (the payload's pid, the decoded event). The event is
# None for a send or receive, which is counted without being decoded (its pid is all a listener needs);
# the pid is 0 for failures, which carry none.
Seen = tuple[int, "NetEvent | FailureEvent | None"]


@dataclass(slots=True)
class EtwCounters:
    """Per-flow counters kept in user space, as the eBPF source keeps them in a kernel map: bytes and
    calls each way, first and last time, the first call's direction. Sends and receives count;
    retransmits and copies are counted apart (their bytes were or will be counted by a send or a
    receive); lifecycle events are counted by kind. ``max_flows`` bounds the table: a new flow beyond
    it is dropped and counted (``evictions``), as a full LRU map would lose one.

    The hot path (sends and receives, nearly every event) keys a flow by the payload's own bytes (pid,
    addresses, ports) and decodes an event in full only for a flow not yet in the table: the Python
    work per event is a few dictionary operations (bench/etw_consumer.py)."""

    max_flows: int = 65536
    flows: dict[bytes, _Entry] = field(default_factory=dict)
    kinds: dict[Kind, int] = field(default_factory=dict)
    decode_errors: int = 0
    evictions: int = 0
    retransmitted_bytes: int = 0

    def add_raw(self, event_id: int, payload: bytes, monotonic_ns: int) -> Seen | None:
        """Count one event as it comes from ETW: (its pid, the decoded event or None for traffic), or
        None when it does not decode (counted in ``decode_errors``)."""
        traffic = _TRAFFIC.get(event_id)
        if traffic is None:
            return self._add_other(event_id, payload)
        group, sending, least = traffic
        if len(payload) < least:
            self.decode_errors += 1
            return None
        pid, size = _HEAD.unpack_from(payload)
        identity = group + payload[:4] + payload[_HEAD.size : least]
        entry = self.flows.get(identity)
        if entry is None:
            event = decode_event(event_id, payload)  # the layout is checked: only addresses remain
            if len(self.flows) >= self.max_flows:
                self.evictions += 1
                self._count(Kind.SEND if sending else Kind.RECEIVE)
                return pid, None
            assert isinstance(event, NetEvent)
            entry = _Entry(
                key=flow_key(event),
                first_ns=monotonic_ns,
                last_ns=monotonic_ns,
                first_dir=FIRST_SENT if sending else FIRST_RECEIVED,
            )
            self.flows[identity] = entry
        if sending:
            entry.bytes_sent += size
            entry.sends += 1
        else:
            entry.bytes_received += size
            entry.receives += 1
        entry.last_ns = max(entry.last_ns, monotonic_ns)
        self._count(Kind.SEND if sending else Kind.RECEIVE)
        return pid, None

    def _count(self, kind: Kind) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def _add_other(self, event_id: int, payload: bytes) -> Seen | None:
        try:
            event = decode_event(event_id, payload)
        except EtwDecodeError:
            self.decode_errors += 1
            return None
        if isinstance(event, FailureEvent):
            self._count(Kind.FAILED)
            return 0, event
        self._count(event.kind)
        if event.kind is Kind.RETRANSMIT:
            self.retransmitted_bytes += event.size
        return event.pid, event

    def add_all(self, events: Iterable[tuple[int, bytes, int]]) -> None:
        """:meth:`add_raw` for each (event id, user data, monotonic ns)."""
        for event_id, payload, monotonic_ns in events:
            self.add_raw(event_id, payload, monotonic_ns)

    def drain(self, monotonic_ns: int, wall_time: float) -> Drain:
        """The counters since the last drain, and a fresh table (as the eBPF source's lookup-and-delete)."""
        flows = [
            (
                entry.key,
                FlowCounters(
                    bytes_sent=entry.bytes_sent,
                    bytes_received=entry.bytes_received,
                    sends=entry.sends,
                    receives=entry.receives,
                    first_ns=entry.first_ns,
                    last_ns=entry.last_ns,
                    first_dir=entry.first_dir,
                ),
            )
            for entry in self.flows.values()
        ]
        drained = Drain(
            flows=flows,
            decode_errors=self.decode_errors,
            evictions=self.evictions,
            monotonic_ns=monotonic_ns,
            wall_time=wall_time,
        )
        self.flows = {}
        self.decode_errors = 0
        self.evictions = 0
        return drained


def flow_key(event: NetEvent) -> FlowKey:
    """The flow an event belongs to, keyed as the eBPF source keys it. Windows has no uid (the user is
    the process token's SID, resolved by enrichment) and no kernel comm: both stay empty here."""
    mapped = event.version == 6 and ":" not in event.remote_address  # a v4-mapped IPv6 peer
    return FlowKey(
        pid=event.pid,
        uid=0,
        comm="",
        protocol=event.protocol,
        family=AF_INET if event.version == 4 else AF_INET6,
        local_address=event.local_address,
        local_port=event.local_port,
        remote_address=event.remote_address,
        remote_port=event.remote_port,
        shown_family=4 if event.version == 4 or mapped else 6,
    )
