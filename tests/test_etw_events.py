"""Microsoft-Windows-Kernel-Network decoders and the ETW source's user-space counters, on payloads built
byte by byte from the provider's layout (ETW itself cannot run here)."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from extension.events import AF_INET, AF_INET6, FIRST_RECEIVED, FIRST_SENT
from extension.sources.etw_events import (
    EVENTS,
    V4_PREFIX,
    V6_PREFIX,
    EtwCounters,
    EtwDecodeError,
    FailureEvent,
    Kind,
    NetEvent,
    decode_event,
    flow_key,
)

TCP4 = {10: Kind.SEND, 11: Kind.RECEIVE, 12: Kind.CONNECT, 13: Kind.DISCONNECT, 14: Kind.RETRANSMIT,
        15: Kind.ACCEPT, 16: Kind.RECONNECT, 18: Kind.COPY}  # fmt: skip
TCP6 = {event_id + 16: kind for event_id, kind in TCP4.items()}
UDP = {42: ("udp", 4, Kind.SEND), 43: ("udp", 4, Kind.RECEIVE), 58: ("udp", 6, Kind.SEND),
       59: ("udp", 6, Kind.RECEIVE)}  # fmt: skip
FAILURES = {17: ("tcp", 4), 33: ("tcp", 6), 49: ("udp", 4)}


def payload(pid: int, size: int, daddr: str, saddr: str, dport: int, sport: int, tail: bytes = b"") -> bytes:
    """The provider's layout by hand: PID and size little-endian, the addresses' bytes as they are on
    the wire, the ports big-endian (network order), then the fields the decoder skips."""
    return (
        pid.to_bytes(4, "little")
        + size.to_bytes(4, "little")
        + ipaddress.ip_address(daddr).packed
        + ipaddress.ip_address(saddr).packed
        + dport.to_bytes(2, "big")
        + sport.to_bytes(2, "big")
        + tail
    )


def test_the_event_table_is_the_issues_list() -> None:
    wanted = {*range(10, 19), *range(26, 35), 42, 43, 49, 58, 59}
    assert set(EVENTS) == wanted
    for event_id, kind in {**TCP4, **TCP6}.items():
        assert EVENTS[event_id] == ("tcp", 4 if event_id < 26 else 6, kind)
    for event_id, known in UDP.items():
        assert EVENTS[event_id] == known


@pytest.mark.parametrize("event_id", sorted({**TCP4, **TCP6, **UDP}))
def test_every_connection_event_decodes_with_the_payloads_pid_addresses_and_ports(event_id: int) -> None:
    protocol, version, kind = EVENTS[event_id]
    local, remote = ("10.1.2.3", "93.184.216.34") if version == 4 else ("fd00::1:2", "2001:db8::8:9")
    tail = bytes(range(40))  # sequence numbers, connection id, TCP options: skipped
    event = decode_event(event_id, payload(4242, 1500, remote, local, 443, 50123, tail))
    assert event == NetEvent(
        event_id=event_id,
        kind=kind,
        protocol=protocol,
        version=version,
        pid=4242,
        size=1500,
        local_address=local,
        local_port=50123,
        remote_address=remote,
        remote_port=443,
    )


def test_boundary_values() -> None:
    most = decode_event(10, payload(0xFFFFFFFF, 0xFFFFFFFF, "255.255.255.255", "0.0.0.0", 65535, 0))
    assert isinstance(most, NetEvent)
    assert (most.pid, most.size, most.remote_address, most.local_address) == (
        4294967295,
        4294967295,
        "255.255.255.255",
        "0.0.0.0",
    )
    assert (most.remote_port, most.local_port) == (65535, 0)
    # ports in network order: 0x01BB is 443, read little-endian it would be 47873
    raw = bytearray(payload(1, 1, "1.1.1.1", "2.2.2.2", 443, 53))
    assert raw[16:20] == b"\x01\xbb\x00\x35"
    # the exact prefix is enough; one byte less is not
    assert isinstance(decode_event(42, payload(1, 0, "1.1.1.1", "2.2.2.2", 1, 2)[:V4_PREFIX]), NetEvent)
    with pytest.raises(EtwDecodeError, match="needs 20"):
        decode_event(42, payload(1, 0, "1.1.1.1", "2.2.2.2", 1, 2)[: V4_PREFIX - 1])
    with pytest.raises(EtwDecodeError, match="needs 44"):
        decode_event(58, payload(1, 0, "::1", "::2", 1, 2)[: V6_PREFIX - 1])
    with pytest.raises(EtwDecodeError, match="not one of"):
        decode_event(11 + 100, b"\x00" * 64)


def test_a_v4_mapped_ipv6_peer_is_shown_as_ipv4() -> None:
    event = decode_event(27, payload(7, 10, "::ffff:192.0.2.7", "::ffff:10.0.0.5", 80, 40000))
    assert isinstance(event, NetEvent)
    assert (event.remote_address, event.local_address) == ("192.0.2.7", "10.0.0.5")
    key = flow_key(event)
    assert (key.family, key.shown_family) == (AF_INET6, 4)
    plain = decode_event(27, payload(7, 10, "2001:db8::1", "fd00::5", 80, 40000))
    assert isinstance(plain, NetEvent)
    assert (flow_key(plain).family, flow_key(plain).shown_family) == (AF_INET6, 6)


@pytest.mark.parametrize(("event_id", "expected"), sorted(FAILURES.items()))
def test_failed_attempts_carry_the_protocol_and_error_code(event_id: int, expected: tuple[str, int]) -> None:
    protocol, version = expected
    code = 10061  # WSAECONNREFUSED
    event = decode_event(event_id, struct.pack("<HH", 6 if protocol == "tcp" else 17, code))
    assert event == FailureEvent(event_id, protocol, version, 6 if protocol == "tcp" else 17, code)
    with pytest.raises(EtwDecodeError, match="a failure has 4"):
        decode_event(event_id, b"\x06\x00\x4d")


def test_counters_sum_sends_and_receives_per_flow_and_drain_like_the_kernel_map() -> None:
    counters = EtwCounters()
    send = payload(100, 1000, "93.184.216.34", "10.0.0.2", 443, 50000)
    receive = payload(100, 5000, "93.184.216.34", "10.0.0.2", 443, 50000)
    other_pid = payload(200, 70, "93.184.216.34", "10.0.0.2", 443, 50001)
    udp = payload(300, 60, "10.0.0.53", "10.0.0.2", 53, 40000)
    counters.add_all(
        [
            (11, receive, 1_000),  # the flow's first call is a receive
            (10, send, 2_000),
            (10, send, 3_000),
            (14, send, 3_500),  # a retransmit: its bytes are not sent twice
            (12, send, 900),  # connect: counted as lifecycle, no bytes
            (10, other_pid, 4_000),
            (42, udp, 5_000),
            (17, struct.pack("<HH", 6, 10060), 6_000),
            (10, b"\x00" * 7, 7_000),  # malformed
            (99, send, 8_000),  # not the provider's
        ]
    )
    drained = counters.drain(monotonic_ns=9_000, wall_time=1_800_000_000.0)
    assert drained.decode_errors == 2 and drained.evictions == 0
    assert (drained.monotonic_ns, drained.wall_time) == (9_000, 1_800_000_000.0)
    flows = {(key.pid, key.protocol, key.remote_port): value for key, value in drained.flows}
    tcp = flows[(100, "tcp", 443)]
    assert (tcp.bytes_sent, tcp.bytes_received, tcp.sends, tcp.receives) == (2000, 5000, 2, 1)
    assert (tcp.first_ns, tcp.last_ns, tcp.first_dir) == (1_000, 3_000, FIRST_RECEIVED)
    assert flows[(200, "tcp", 443)].first_dir == FIRST_SENT
    (udp_key,) = [key for key, _ in drained.flows if key.protocol == "udp"]
    assert (udp_key.family, udp_key.shown_family, udp_key.local_address, udp_key.local_port) == (
        AF_INET,
        4,
        "10.0.0.2",
        40000,
    )
    assert counters.retransmitted_bytes == 1000
    assert counters.kinds[Kind.SEND] == 4 and counters.kinds[Kind.FAILED] == 1  # 2 + other pid + udp
    assert counters.kinds[Kind.CONNECT] == 1
    # drained: the next drain starts from nothing
    again = counters.drain(monotonic_ns=10_000, wall_time=1_800_000_001.0)
    assert again.flows == [] and again.decode_errors == 0


def test_a_full_table_drops_new_flows_and_counts_them() -> None:
    counters = EtwCounters(max_flows=2)
    for port in (1, 2, 3):
        counters.add_all([(10, payload(1, 10, "192.0.2.1", "10.0.0.1", port, 5000), port)])
    counters.add_all([(10, payload(1, 10, "192.0.2.1", "10.0.0.1", 1, 5000), 9)])  # a known flow counts
    drained = counters.drain(monotonic_ns=10, wall_time=0.0)
    assert drained.evictions == 1
    assert sorted((key.remote_port, value.sends) for key, value in drained.flows) == [(1, 2), (2, 1)]


def test_traffic_is_counted_without_decoding_a_known_flow_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from extension.sources import etw_events  # noqa: PLC0415

    decoded: list[int] = []
    real = etw_events.decode_event

    def counting(event_id: int, data: bytes) -> NetEvent | FailureEvent:
        decoded.append(event_id)
        return real(event_id, data)

    monkeypatch.setattr(etw_events, "decode_event", counting)
    counters = EtwCounters()
    flow = payload(4242, 1500, "2001:db8::7", "fd00::2", 443, 50123)
    seen = [counters.add_raw(26 + index % 2, flow, index) for index in range(1000)]  # v6 sends, receives
    assert decoded == [26]  # once, for the new flow
    assert set(seen) == {(4242, None)}  # traffic: the pid, no event
    connect = counters.add_raw(28, flow, 1000)
    assert connect is not None and connect[0] == 4242 and isinstance(connect[1], NetEvent)
    failure = counters.add_raw(33, struct.pack("<HH", 6, 10061), 1001)
    assert failure is not None and failure[0] == 0 and isinstance(failure[1], FailureEvent)
    ((key, value),) = counters.drain(monotonic_ns=2000, wall_time=0.0).flows
    assert (key.pid, key.remote_address, key.family) == (4242, "2001:db8::7", AF_INET6)
    assert (value.sends, value.receives, value.bytes_sent, value.first_ns, value.last_ns) == (
        500,
        500,
        750_000,
        0,
        999,
    )
    counters.add_raw(26, flow, 3000)  # after a drain the flow is new again: decoded once more
    assert decoded == [26, 28, 33, 26]


def test_flows_differing_only_in_protocol_version_or_pid_stay_apart() -> None:
    counters = EtwCounters()
    v4 = payload(1, 10, "192.0.2.1", "10.0.0.1", 53, 5000)
    counters.add_all([(10, v4, 1), (42, v4, 2), (10, payload(2, 10, "192.0.2.1", "10.0.0.1", 53, 5000), 3)])
    mapped = payload(1, 10, "::ffff:192.0.2.1", "::ffff:10.0.0.1", 53, 5000)
    counters.add_all([(26, mapped, 4)])
    keys = sorted((key.protocol, key.pid, key.family) for key, _ in counters.drain(10, 0.0).flows)
    assert keys == [("tcp", 1, AF_INET), ("tcp", 1, AF_INET6), ("tcp", 2, AF_INET), ("udp", 1, AF_INET)]


def test_the_address_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from extension.sources import etw_events  # noqa: PLC0415

    monkeypatch.setattr(etw_events, "MAX_CACHED_ADDRESSES", 4)
    etw_events._ADDRESSES.clear()
    for index in range(10):
        event = decode_event(10, payload(1, 1, f"192.0.2.{index}", "10.0.0.1", 80, 1))
        assert isinstance(event, NetEvent) and event.remote_address == f"192.0.2.{index}"
        assert len(etw_events._ADDRESSES) <= 4
