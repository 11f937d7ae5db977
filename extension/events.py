"""Record types shared by every part of the endpoint, and pure decoders of kernel records.

Nothing here does I/O: the capture sources hand raw bytes to the decoders, the collector enriches
the decoded records into :class:`SocketEvent` rows, and the store writes those rows.

The binary layouts below mirror ``extension/bpf/netflow.h``; ``tests/test_events.py`` builds records
byte by byte and checks the decoders, so a change on one side without the other fails a test.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

AF_INET = 2
AF_INET6 = 10
IPPROTO_TCP = 6
IPPROTO_UDP = 17

PROTOCOL_NAMES = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp"}
FAMILY_NUMBERS = {AF_INET: 4, AF_INET6: 6}


class Activity(enum.StrEnum):
    """What a row records. Documented in docs/endpoint.md ("Activity").

    Raw rows carry exactly one of these; a flow row carries the most significant activity of its
    window, in the order of ``ACTIVITY_RANK`` (highest first).
    """

    CONNECT_FAILED = "connect_failed"  # an outbound TCP connect that never reached ESTABLISHED
    CONNECT = "connect"  # this host opened a connection (TCP) or sent the first datagram (UDP)
    ACCEPT = "accept"  # a peer opened a connection to this host (TCP) or sent the first datagram (UDP)
    LISTEN = "listen"  # a TCP socket started listening
    DATA = "data"  # payload bytes moved on a connection or UDP peer pair
    CLOSE = "close"  # the connection was closed


# Higher wins when a flow window holds several activities. Kept in sync with flows_aggregate.sql.
ACTIVITY_RANK: dict[Activity, int] = {
    Activity.CONNECT_FAILED: 6,
    Activity.CONNECT: 5,
    Activity.ACCEPT: 4,
    Activity.LISTEN: 3,
    Activity.DATA: 2,
    Activity.CLOSE: 1,
}


class Direction(enum.StrEnum):
    OUTBOUND = "outbound"  # this host initiated
    INBOUND = "inbound"  # the peer initiated
    UNKNOWN = "unknown"


class DecodeError(ValueError):
    """A kernel record that cannot be decoded (truncated, unknown family or protocol)."""


def format_address(family: int, raw: bytes) -> str:
    """Canonical text form of a 16-byte kernel address; v4-mapped IPv6 addresses are shown as v4."""
    if family == AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    if family == AF_INET6:
        address = ipaddress.IPv6Address(raw[:16])
        mapped = address.ipv4_mapped
        return str(mapped) if mapped is not None else str(address)
    raise DecodeError(f"unknown address family {family}")


def effective_family(family: int, raw: bytes) -> int:
    """4 or 6 as shown to users: a v4-mapped IPv6 peer is reported as family 4."""
    if family == AF_INET6 and raw[:12] == b"\x00" * 10 + b"\xff\xff":
        return 4
    return FAMILY_NUMBERS[family]


def _decode_comm(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "replace")


# --- flow counters (the BPF LRU hash map) --------------------------------------------------------

# struct flow_key { u32 tgid; u32 uid; u16 family; u8 protocol; u8 pad; u16 lport; u16 rport;
#                   u8 laddr[16]; u8 raddr[16]; char comm[16]; }
FLOW_KEY = struct.Struct("<IIHBxHH16s16s16s")
# struct flow_value { u64 bytes_sent, bytes_received, sends, receives, first_ns, first_jiffies,
#                     last_jiffies, first_dir; }
FLOW_VALUE = struct.Struct("<8Q")
FIRST_SENT = 0
FIRST_RECEIVED = 1


@dataclass(frozen=True, slots=True)
class FlowKey:
    pid: int
    uid: int
    comm: str
    protocol: str  # "tcp" | "udp"
    family: int  # kernel address family of the socket (AF_INET / AF_INET6)
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    shown_family: int  # 4 or 6 as reported (v4-mapped peers are 4)


@dataclass(frozen=True, slots=True)
class FlowCounters:
    bytes_sent: int
    bytes_received: int
    sends: int
    receives: int
    first_ns: int  # CLOCK_MONOTONIC ns of the first call ...
    last_ns: int  # ... and of the last (to the kernel tick's resolution)
    first_dir: int  # FIRST_SENT or FIRST_RECEIVED: the direction of the call that created the entry


def decode_flow_key(raw: bytes) -> FlowKey:
    if len(raw) < FLOW_KEY.size:
        raise DecodeError(f"flow key of {len(raw)} bytes, expected {FLOW_KEY.size}")
    tgid, uid, family, proto, lport, rport, laddr, raddr, comm = FLOW_KEY.unpack_from(raw)
    if family not in FAMILY_NUMBERS:
        raise DecodeError(f"flow key with unknown address family {family}")
    if proto not in PROTOCOL_NAMES:
        raise DecodeError(f"flow key with unknown protocol {proto}")
    return FlowKey(
        pid=tgid,
        uid=uid,
        comm=_decode_comm(comm),
        protocol=PROTOCOL_NAMES[proto],
        family=family,
        local_address=format_address(family, laddr),
        local_port=lport,
        remote_address=format_address(family, raddr),
        remote_port=rport,
        shown_family=effective_family(family, raddr if any(raddr) else laddr),
    )


def decode_flow_value(raw: bytes, ns_per_tick: float) -> FlowCounters:
    """The kernel stores the clock at the first call and the tick count (jiffies) at the first and
    last: the last call's time is the first's plus the ticks between them."""
    if len(raw) < FLOW_VALUE.size:
        raise DecodeError(f"flow value of {len(raw)} bytes, expected {FLOW_VALUE.size}")
    sent, received, sends, receives, first_ns, first_tick, last_tick, first_dir = FLOW_VALUE.unpack_from(raw)
    if last_tick < first_tick or first_dir not in (FIRST_SENT, FIRST_RECEIVED):
        raise DecodeError(f"flow value with impossible ticks ({first_tick}..{last_tick}) or direction")
    last_ns = first_ns + round((last_tick - first_tick) * ns_per_tick)
    return FlowCounters(sent, received, sends, receives, first_ns, last_ns, first_dir)


# --- lifecycle and process records (the BPF ring buffer) -----------------------------------------

RECORD_SOCK_STATE = 1
RECORD_PROCESS = 2
RECORD_DNS = 3

# struct record_header { u32 kind; u32 size; }
RECORD_HEADER = struct.Struct("<II")
# struct sock_state_record { header; u64 ts_ns; u64 cookie; u32 tgid; u32 uid; u16 family;
#   u8 protocol; u8 pad; i32 oldstate; i32 newstate; u16 lport; u16 rport; u8 laddr[16];
#   u8 raddr[16]; char comm[16]; }
SOCK_STATE = struct.Struct("<IIQQIIHBxiiHH16s16s16s")
# struct process_record { header; u64 ts_ns; u64 start_ns; u32 tgid; u32 ppid; u32 uid; u32 dev;
#   u64 ino; i64 mtime_sec; u64 size; char comm[16]; u16 depth; char names[PATH_DEPTH][NAME_LEN]; }
PATH_DEPTH = 12
NAME_LEN = 64
PROCESS = struct.Struct(f"<IIQQIIIIQqQ16sH6x{PATH_DEPTH * NAME_LEN}s")
# struct dns_record { header; u32 len; u32 wire_len; u8 packet[DNS_MAX]; u8 pad[4]; }
DNS_MAX = 1500
DNS = struct.Struct(f"<IIII{DNS_MAX}s4x")

# TCP states (include/net/tcp_states.h)
TCP_ESTABLISHED = 1
TCP_SYN_SENT = 2
TCP_SYN_RECV = 3
TCP_FIN_WAIT1 = 4
TCP_FIN_WAIT2 = 5
TCP_TIME_WAIT = 6
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
TCP_LAST_ACK = 9
TCP_LISTEN = 10
TCP_CLOSING = 11
TCP_NEW_SYN_RECV = 12


@dataclass(frozen=True, slots=True)
class SockStateRecord:
    ts_ns: int
    cookie: int  # identifies the socket for the life of the capture (kernel socket cookie)
    pid: int  # current task: the owner only when the transition runs in process context
    uid: int
    comm: str
    protocol: str
    family: int
    oldstate: int
    newstate: int
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    shown_family: int


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """Sent by the kernel the first time a process is seen on the network, while it still runs."""

    ts_ns: int
    start_ns: int  # task start time, CLOCK_BOOTTIME ns: pid plus start time survives pid reuse
    pid: int
    ppid: int
    uid: int
    comm: str
    exe_dev: int
    exe_ino: int
    exe_mtime: int
    exe_size: int
    exe_path: str  # rebuilt from dentries in the kernel; relative to the mount it lives on


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """A DNS answer this host received (UDP from port 53), from its IP header on."""

    packet: bytes
    wire_len: int  # the packet's full length; more than len(packet) when the kernel cut it

    @property
    def truncated(self) -> bool:
        return self.wire_len > len(self.packet)


@dataclass(frozen=True, slots=True)
class ResolvedRecord:
    """A name a process resolved and the addresses it got, as the platform's resolver reported them
    (Windows: the DNS-Client ETW provider; Linux learns from DnsRecord packets instead)."""

    name: str
    addresses: tuple[str, ...]


Record = SockStateRecord | ProcessRecord | DnsRecord | ResolvedRecord


def _decode_path(depth: int, names: bytes) -> str:
    parts = []
    for index in range(min(depth, PATH_DEPTH)):
        chunk = names[index * NAME_LEN : (index + 1) * NAME_LEN]
        name = _decode_comm(chunk)
        if name and name != "/":
            parts.append(name)
    # the kernel walks from the file up to the root: reverse to read from the root down
    return "/" + "/".join(reversed(parts)) if parts else ""


def decode_record(raw: bytes) -> Record:
    """Decode one ring-buffer record; raises DecodeError for anything malformed."""
    if len(raw) < RECORD_HEADER.size:
        raise DecodeError(f"ring-buffer record of {len(raw)} bytes is shorter than its header")
    kind, size = RECORD_HEADER.unpack_from(raw)
    if size != len(raw):
        raise DecodeError(f"ring-buffer record says {size} bytes but {len(raw)} arrived")
    if kind == RECORD_SOCK_STATE:
        if len(raw) < SOCK_STATE.size:
            raise DecodeError(f"socket state record of {len(raw)} bytes, expected {SOCK_STATE.size}")
        (_, _, ts, cookie, tgid, uid, family, proto, old, new, lport, rport, laddr, raddr, comm) = (
            SOCK_STATE.unpack_from(raw)
        )
        if family not in FAMILY_NUMBERS:
            raise DecodeError(f"socket state record with unknown address family {family}")
        if proto not in PROTOCOL_NAMES:
            raise DecodeError(f"socket state record with unknown protocol {proto}")
        return SockStateRecord(
            ts_ns=ts,
            cookie=cookie,
            pid=tgid,
            uid=uid,
            comm=_decode_comm(comm),
            protocol=PROTOCOL_NAMES[proto],
            family=family,
            oldstate=old,
            newstate=new,
            local_address=format_address(family, laddr),
            local_port=lport,
            remote_address=format_address(family, raddr),
            remote_port=rport,
            shown_family=effective_family(family, raddr if any(raddr) else laddr),
        )
    if kind == RECORD_PROCESS:
        if len(raw) < PROCESS.size:
            raise DecodeError(f"process record of {len(raw)} bytes, expected {PROCESS.size}")
        (_, _, ts, start, tgid, ppid, uid, dev, ino, mtime, size_, comm, depth, names) = PROCESS.unpack_from(
            raw
        )
        return ProcessRecord(
            ts_ns=ts,
            start_ns=start,
            pid=tgid,
            ppid=ppid,
            uid=uid,
            comm=_decode_comm(comm),
            exe_dev=dev,
            exe_ino=ino,
            exe_mtime=mtime,
            exe_size=size_,
            exe_path=_decode_path(depth, names),
        )
    if kind == RECORD_DNS:
        if len(raw) < DNS.size:
            raise DecodeError(f"DNS record of {len(raw)} bytes, expected {DNS.size}")
        _, _, length, wire_len, packet = DNS.unpack_from(raw)
        if not 0 < length <= DNS_MAX or wire_len < length:
            raise DecodeError(f"DNS record with impossible lengths {length}/{wire_len}")
        return DnsRecord(packet=packet[:length], wire_len=wire_len)
    raise DecodeError(f"ring-buffer record of unknown kind {kind}")


# --- enriched rows, as stored ---------------------------------------------------------------------


@dataclass(slots=True)
class SocketEvent:
    """One row of the raw ``socket_events`` table (see sql/endpoint/schema.sql for each column)."""

    time: int  # epoch seconds of the traffic (last call) or of the lifecycle event
    activity: Activity
    pid: int
    process_name: str
    protocol: str
    family: int  # 4 or 6
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    uid: int = 0
    username: str = ""
    process_path: str = ""
    process_sha256: str = ""
    process_start_time: int = 0  # epoch seconds
    parent_pid: int = 0
    cmdline: str = ""
    direction: Direction = Direction.UNKNOWN
    local_hostname: str = ""
    remote_hostname: str = ""
    bytes_sent: int = 0
    bytes_received: int = 0
    sends: int = 0
    receives: int = 0
    first_seen: float = 0.0  # epoch seconds with sub-second precision
    last_seen: float = 0.0
    community_id: str = ""
