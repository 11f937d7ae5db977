"""The connection tracker: owners, directions and activities from lifecycle records and counters."""

from __future__ import annotations

from extension.events import (
    FIRST_RECEIVED,
    FIRST_SENT,
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT1,
    TCP_FIN_WAIT2,
    TCP_LAST_ACK,
    TCP_LISTEN,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    Activity,
    Direction,
    FlowCounters,
    FlowKey,
    SockStateRecord,
)
from extension.tracker import Tracker

CLIENT = ("10.0.0.5", 51000)
SERVER = ("10.0.0.9", 443)


def state(
    cookie: int,
    old: int,
    new: int,
    *,
    pid: int,
    local: tuple[str, int],
    remote: tuple[str, int],
    comm: str = "p",
) -> SockStateRecord:
    return SockStateRecord(
        ts_ns=0,
        cookie=cookie,
        pid=pid,
        uid=1000,
        comm=comm,
        protocol="tcp",
        family=2,
        oldstate=old,
        newstate=new,
        local_address=local[0],
        local_port=local[1],
        remote_address=remote[0],
        remote_port=remote[1],
        shown_family=4,
    )


def key(pid: int, local: tuple[str, int], remote: tuple[str, int], protocol: str = "tcp") -> FlowKey:
    return FlowKey(pid, 1000, f"p{pid}", protocol, 2, local[0], local[1], remote[0], remote[1], 4)


def counters(first_send: int = 0, first_recv: int = 0) -> FlowCounters:
    """Counters whose first call was a send at ``first_send`` or a receive at ``first_recv`` (ns)."""
    first = min(x for x in (first_send, first_recv) if x) if (first_send or first_recv) else 1
    sent_first = bool(first_send) and (not first_recv or first_send <= first_recv)
    first_dir = FIRST_SENT if sent_first else FIRST_RECEIVED
    return FlowCounters(10, 20, 1, 1, first, max(first_send, first_recv, 1), first_dir)


def test_outbound_connect_keeps_the_owner_from_syn_sent() -> None:
    tracker = Tracker()
    assert (
        tracker.on_sock_state(
            state(1, TCP_CLOSE, TCP_SYN_SENT, pid=50, local=("10.0.0.5", 0), remote=SERVER), 100.0
        )
        == []
    )
    # the handshake may complete in softirq: pid 0 here must not replace the owner
    rows = tracker.on_sock_state(
        state(1, TCP_SYN_SENT, TCP_ESTABLISHED, pid=0, local=CLIENT, remote=SERVER), 100.1
    )
    assert [(r.activity, r.owner.pid, r.direction) for r in rows] == [
        (Activity.CONNECT, 50, Direction.OUTBOUND)
    ]
    assert (rows[0].local_port, rows[0].remote_port) == (51000, 443)
    traffic, _ = tracker.on_drain(
        [(key(50, CLIENT, SERVER), counters(5, 6))], wall_time=101.0, monotonic_ns=10
    )
    assert traffic[0].direction == Direction.OUTBOUND
    closed = tracker.on_sock_state(
        state(1, TCP_ESTABLISHED, TCP_FIN_WAIT1, pid=50, local=CLIENT, remote=SERVER), 102
    )
    assert [(r.activity, r.owner.pid, r.direction) for r in closed] == [
        (Activity.CLOSE, 50, Direction.OUTBOUND)
    ]
    # the final CLOSE (local port already 0) adds nothing after an orderly close
    assert (
        tracker.on_sock_state(
            state(1, TCP_FIN_WAIT2, TCP_CLOSE, pid=0, local=("10.0.0.5", 0), remote=SERVER), 103
        )
        == []
    )


def test_accept_waits_for_the_owner_of_the_traffic() -> None:
    tracker = Tracker()
    tracker.on_sock_state(
        state(2, TCP_CLOSE, TCP_LISTEN, pid=70, local=("0.0.0.0", 443), remote=("0.0.0.0", 0)), 1
    )
    accepted = state(
        3, TCP_SYN_RECV, TCP_ESTABLISHED, pid=999, local=SERVER, remote=CLIENT
    )  # softirq: wrong pid
    assert tracker.on_sock_state(accepted, 2.0) == []
    traffic, lifecycle = tracker.on_drain(
        [(key(71, SERVER, CLIENT), counters(9, 3))], wall_time=3, monotonic_ns=10
    )
    assert [(r.activity, r.owner.pid, r.direction) for r in lifecycle] == [
        (Activity.ACCEPT, 71, Direction.INBOUND)
    ]
    assert lifecycle[0].time == 2.0
    assert traffic[0].direction == Direction.INBOUND


def test_accept_without_traffic_falls_back_to_the_listener_after_one_drain() -> None:
    tracker = Tracker()
    tracker.on_sock_state(
        state(2, TCP_CLOSE, TCP_LISTEN, pid=70, local=("0.0.0.0", 443), remote=("0.0.0.0", 0)), 1
    )
    tracker.on_sock_state(state(3, TCP_SYN_RECV, TCP_ESTABLISHED, pid=999, local=SERVER, remote=CLIENT), 2)
    assert tracker.on_drain([], wall_time=3, monotonic_ns=1)[1] == []
    lifecycle = tracker.on_drain([], wall_time=4, monotonic_ns=2)[1]
    assert [(r.activity, r.owner.pid) for r in lifecycle] == [(Activity.ACCEPT, 70)]
    assert tracker.unattributed == 0


def test_accept_with_no_known_owner_is_counted_as_unattributed() -> None:
    tracker = Tracker()
    tracker.on_sock_state(state(3, TCP_SYN_RECV, TCP_ESTABLISHED, pid=999, local=SERVER, remote=CLIENT), 2)
    rows = tracker.flush()
    assert [(r.activity, r.owner.pid) for r in rows] == [(Activity.ACCEPT, 0)]
    assert tracker.unattributed == 1


def test_failed_connect_and_reset() -> None:
    tracker = Tracker()
    tracker.on_sock_state(state(4, TCP_CLOSE, TCP_SYN_SENT, pid=5, local=("10.0.0.5", 0), remote=SERVER), 1)
    rows = tracker.on_sock_state(
        state(4, TCP_SYN_SENT, TCP_CLOSE, pid=0, local=("10.0.0.5", 0), remote=SERVER), 2
    )
    assert [(r.activity, r.owner.pid, r.remote_port) for r in rows] == [(Activity.CONNECT_FAILED, 5, 443)]
    # an established connection reset by the peer (no orderly close by the owner)
    tracker.on_sock_state(state(5, TCP_CLOSE, TCP_SYN_SENT, pid=6, local=("10.0.0.5", 0), remote=SERVER), 3)
    tracker.on_sock_state(state(5, TCP_SYN_SENT, TCP_ESTABLISHED, pid=6, local=CLIENT, remote=SERVER), 4)
    rows = tracker.on_sock_state(
        state(5, TCP_ESTABLISHED, TCP_CLOSE, pid=0, local=("10.0.0.5", 0), remote=SERVER), 5
    )
    assert [(r.activity, r.owner.pid, r.local_port) for r in rows] == [(Activity.CLOSE, 6, 51000)]


def test_passive_close_after_the_peer() -> None:
    tracker = Tracker()
    rows = tracker.on_sock_state(
        state(6, TCP_CLOSE_WAIT, TCP_LAST_ACK, pid=80, local=SERVER, remote=CLIENT), 1
    )
    assert [(r.activity, r.owner.pid) for r in rows] == [(Activity.CLOSE, 80)]


def test_direction_of_connections_older_than_the_agent() -> None:
    tracker = Tracker(listening={("tcp", 443)})
    traffic, _ = tracker.on_drain(
        [(key(1, SERVER, CLIENT), counters(1, 1)), (key(2, CLIENT, SERVER), counters(1, 1))],
        wall_time=1,
        monotonic_ns=1,
    )
    assert [t.direction for t in traffic] == [Direction.INBOUND, Direction.OUTBOUND]


def test_udp_direction_is_who_sent_first_and_opens_once_until_idle() -> None:
    tracker = Tracker(udp_idle_seconds=60)
    dns = ("10.0.0.53", 53)
    local = ("10.0.0.5", 40000)
    # monotonic_ns 100e9 at wall 1000.0: ns 99e9 is wall 999.0
    traffic, opened = tracker.on_drain(
        [(key(9, local, dns, "udp"), counters(first_send=99_000_000_000, first_recv=99_500_000_000))],
        wall_time=1000.0,
        monotonic_ns=100_000_000_000,
    )
    assert traffic[0].direction == Direction.OUTBOUND
    assert [(o.activity, o.direction, o.time) for o in opened] == [
        (Activity.CONNECT, Direction.OUTBOUND, 999.0)
    ]
    # more traffic 10 s later: same exchange, no new connection, direction kept
    traffic, opened = tracker.on_drain(
        [(key(9, local, dns, "udp"), counters(first_recv=109_000_000_000))],
        wall_time=1010.0,
        monotonic_ns=110_000_000_000,
    )
    assert traffic[0].direction == Direction.OUTBOUND and opened == []
    # after the idle timeout, the peer speaking first opens a new, inbound exchange
    traffic, opened = tracker.on_drain(
        [(key(9, local, dns, "udp"), counters(first_recv=300_000_000_000))],
        wall_time=1200.0,
        monotonic_ns=300_000_000_000,
    )
    assert traffic[0].direction == Direction.INBOUND
    assert [o.activity for o in opened] == [Activity.ACCEPT]


def test_udp_without_peer_is_unknown_and_opens_nothing() -> None:
    tracker = Tracker()
    traffic, opened = tracker.on_drain(
        [(key(9, ("0.0.0.0", 5353), ("0.0.0.0", 0), "udp"), counters(first_recv=5))],
        wall_time=1,
        monotonic_ns=10,
    )
    assert traffic[0].direction == Direction.UNKNOWN and opened == []


def test_listener_close_forgets_the_port() -> None:
    tracker = Tracker()
    tracker.on_sock_state(
        state(2, TCP_CLOSE, TCP_LISTEN, pid=70, local=("0.0.0.0", 8080), remote=("0.0.0.0", 0)), 1
    )
    assert ("tcp", 8080) in tracker.listening
    tracker.on_sock_state(
        state(2, TCP_LISTEN, TCP_CLOSE, pid=70, local=("0.0.0.0", 8080), remote=("0.0.0.0", 0)), 2
    )
    assert ("tcp", 8080) not in tracker.listening


def test_socket_table_is_bounded() -> None:
    tracker = Tracker(max_entries=10)
    for cookie in range(50):
        tracker.on_sock_state(
            state(cookie, TCP_CLOSE, TCP_SYN_SENT, pid=1, local=("10.0.0.5", 0), remote=SERVER), 1
        )
    assert len(tracker._sockets) == 10
