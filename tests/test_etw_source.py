"""The ETW source end to end on a fake of the Win32 calls: Kernel-Network events in, the collector's
interface out (lifecycle records from poll, counters from drain, stats), and the connection tracker
run unchanged over them: an outbound connection with its close, an inbound one, UDP traffic."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from extension.events import (
    TCP_ESTABLISHED,
    TCP_SYN_RECV,
    Activity,
    Direction,
    ProcessRecord,
    Record,
    SockStateRecord,
)
from extension.sources.base import CaptureError
from extension.sources.etw import EtwSource, lifecycle_records, socket_cookie
from extension.sources.etw_events import NetEvent, decode_event
from extension.tracker import Tracker
from tests.test_etw_session import FakeTraceApi


def payload(pid: int, size: int, remote: str, local: str, rport: int, lport: int) -> bytes:
    return (
        struct.pack("<II", pid, size)
        + ipaddress.ip_address(remote).packed
        + ipaddress.ip_address(local).packed
        + struct.pack(">HH", rport, lport)
    )


def feed(api: FakeTraceApi, events: list[tuple[int, bytes]]) -> None:
    for index, (event_id, data) in enumerate(events):
        api.events.put((event_id, data, 1_000_000 * (index + 1)))
    assert all(api.handled.acquire(timeout=5) for _ in events)


def test_tcp_lifecycle_and_traffic_through_the_tracker() -> None:
    api = FakeTraceApi()
    records: list[Record] = []
    source = EtwSource(api, on_record=records.append)
    try:
        out = payload(1234, 0, "93.184.216.34", "10.0.0.2", 443, 50000)
        inbound = payload(880, 0, "10.0.0.9", "10.0.0.2", 61000, 22)
        feed(
            api,
            [
                (12, out),  # connect
                (10, payload(1234, 700, "93.184.216.34", "10.0.0.2", 443, 50000)),
                (11, payload(1234, 9000, "93.184.216.34", "10.0.0.2", 443, 50000)),
                (15, inbound),  # accept: the payload's pid owns it
                (11, payload(880, 64, "10.0.0.9", "10.0.0.2", 61000, 22)),
                (42, payload(77, 60, "10.0.0.53", "10.0.0.2", 53, 40000)),  # UDP: no lifecycle
                (14, out),  # retransmit: counted, not recorded
                (17, struct.pack("<HH", 6, 10061)),  # failed attempt: counted
                (13, out),  # disconnect
            ],
        )
        assert source.poll(0) == 8
        states = [(r.pid, r.oldstate, r.newstate) for r in records if isinstance(r, SockStateRecord)]
        assert (880, TCP_SYN_RECV, TCP_ESTABLISHED) in states and len(states) == 5
        # each process once, on its first event, before its lifecycle records: the cache reads it then
        seen = [r.pid for r in records if isinstance(r, ProcessRecord)]
        assert seen == [1234, 880, 77] and isinstance(records[0], ProcessRecord)
        tracker = Tracker()
        rows = []
        for record in records:
            if isinstance(record, SockStateRecord):
                rows += tracker.on_sock_state(record, wall_time=1_800_000_000.0)
        assert [(row.activity, row.owner.pid, row.direction) for row in rows] == [
            (Activity.CONNECT, 1234, Direction.OUTBOUND),
            (Activity.CLOSE, 1234, Direction.OUTBOUND),
        ]
        drained = source.drain()
        traffic, lifecycle = tracker.on_drain(
            drained.flows, wall_time=drained.wall_time, monotonic_ns=drained.monotonic_ns
        )
        by_pid = {row.key.pid: row for row in traffic}
        assert (by_pid[1234].counters.bytes_sent, by_pid[1234].counters.bytes_received) == (700, 9000)
        assert by_pid[1234].direction == Direction.OUTBOUND
        assert by_pid[880].direction == Direction.INBOUND and by_pid[77].key.protocol == "udp"
        assert [(row.activity, row.owner.pid, row.local_port) for row in lifecycle] == [
            (Activity.CONNECT, 77, 40000),  # the UDP exchange the tracker opens, as on Linux
            (Activity.ACCEPT, 880, 22),  # the accept, owned by the payload's pid
        ]
        stats = source.stats()
        assert (stats.backend, stats.hook_set, stats.events) == ("etw", "kernel-network", 9)
        assert stats.ringbuf_lost == 4  # the session's lost events and buffers (3 + 1 in the fake)
        assert source.failures == 1
    finally:
        source.close()
    assert api.sessions == set()


def test_lifecycle_records_and_cookies() -> None:
    connect = decode_event(28, payload(5, 0, "2001:db8::1", "fd00::2", 443, 50001))
    assert isinstance(connect, NetEvent)
    first, second = lifecycle_records(connect, 42)
    assert first.cookie == second.cookie == socket_cookie(connect) and first.ts_ns == 42
    assert (first.shown_family, first.remote_address) == (6, "2001:db8::1")
    same = decode_event(29, payload(5, 0, "2001:db8::1", "fd00::2", 443, 50001))
    other = decode_event(29, payload(5, 0, "2001:db8::1", "fd00::2", 443, 50002))
    assert isinstance(same, NetEvent) and isinstance(other, NetEvent)
    assert socket_cookie(same) == socket_cookie(connect) != socket_cookie(other)
    send = decode_event(10, payload(5, 10, "192.0.2.1", "10.0.0.1", 80, 1))
    assert isinstance(send, NetEvent) and lifecycle_records(send, 1) == []


def test_the_agent_picks_etw_on_windows(tmp_path: Path) -> None:
    """The source factory routes Windows to the ETW source (here its binding refuses: not Windows)."""
    from extension.__main__ import _source_factory  # noqa: PLC0415
    from extension.settings import load  # noqa: PLC0415

    settings = load(environ={"EXTENSION_DATA_DIR": str(tmp_path)})
    with pytest.raises(CaptureError, match="ETW capture needs Windows"):
        _source_factory(settings, platform="win32")(lambda _record: None)


def test_the_flow_table_bound_is_the_sources_and_evictions_reach_the_drain() -> None:
    api = FakeTraceApi()
    source = EtwSource(api, on_record=lambda _record: None, dns=False, max_flows=2)
    try:
        feed(api, [(10, payload(9, 100, "192.0.2.1", "10.0.0.2", port, 40000)) for port in (1, 2, 3)])
        drained = source.drain()
        assert (len(drained.flows), drained.evictions, source.stats().map_evictions) == (2, 1, 1)
    finally:
        source.close()
