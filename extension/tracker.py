"""Connection tracking in user space: turns kernel lifecycle records and drained counters into rows
with an owner, a direction and an activity. Pure logic over values: no I/O, no clock.

Why it is needed: TCP state changes are reported by the kernel in whatever context runs them. A
``connect()`` (CLOSE -> SYN_SENT), a ``listen()`` and the owner's ``close()`` (-> FIN_WAIT1 or
-> LAST_ACK) run in the owner's process context, so the pid is right; the passive handshake
(SYN_RECV -> ESTABLISHED) runs in softirq, so its pid is whoever was on the CPU. Accepts are held for
one drain and given the owner of the traffic on the same connection, or else the owner of the
listening socket.

Direction ("who opened the connection"):
* TCP: outbound when this host sent the SYN, inbound when it accepted. For connections older than
  the agent, inbound when the local port is a listening port, otherwise outbound.
* UDP: whoever sent the first datagram of a peer pair (the kernel records the direction of the call
  that created the counter). A pair idle
  for ``udp_idle_seconds`` starts afresh (and counts as a new connection). Traffic on an unconnected
  socket whose peer the kernel could not learn stays ``unknown``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from extension.events import (
    FIRST_SENT,
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT1,
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

Tuple5 = tuple[str, str, int, str, int]  # protocol, local address, local port, remote address, remote port


@dataclass(frozen=True, slots=True)
class Owner:
    pid: int
    uid: int
    comm: str


@dataclass(slots=True)
class LifecycleRow:
    """A lifecycle event with its owner resolved; the collector enriches it into a SocketEvent."""

    time: float  # epoch seconds
    activity: Activity
    owner: Owner
    protocol: str
    family: int  # 4 or 6 as shown
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    direction: Direction


@dataclass(slots=True)
class TrafficRow:
    time_first: float
    time_last: float
    key: FlowKey
    counters: FlowCounters
    direction: Direction


@dataclass(slots=True)
class _Socket:
    owner: Owner | None  # None until known from a process-context transition
    direction: Direction
    tuple5: Tuple5 | None = None
    family: int = 4
    established: bool = False
    closed: bool = False


@dataclass(slots=True)
class _PendingAccept:
    row: LifecycleRow
    drains_waited: int = 0


class _Bounded(OrderedDict[object, object]):
    """An insertion-ordered dict that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: object, value: object) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@dataclass
class Tracker:
    udp_idle_seconds: float = 120.0
    max_entries: int = 65536
    listening: set[tuple[str, int]] = field(default_factory=set)  # (protocol, local port)
    unattributed: int = 0  # accepts whose owner could not be found

    def __post_init__(self) -> None:
        self._sockets: OrderedDict[int, _Socket] = OrderedDict()
        self._directions = _Bounded(self.max_entries)  # Tuple5 -> Direction
        self._udp_last_seen = _Bounded(self.max_entries)  # Tuple5 -> epoch seconds
        self._listeners: dict[tuple[str, int], Owner] = {}  # (protocol, port) -> owner
        self._pending: list[_PendingAccept] = []

    # --- lifecycle records -----------------------------------------------------------------------

    def on_sock_state(self, record: SockStateRecord, wall_time: float) -> list[LifecycleRow]:
        """Feed one state-change record (``wall_time``: its time in epoch seconds). Returns the rows
        that are complete now; accepts come out of :meth:`on_drain` once their owner is known."""
        old, new = record.oldstate, record.newstate
        sock = self._sockets.get(record.cookie)
        here = Owner(record.pid, record.uid, record.comm)
        full = (
            record.protocol,
            record.local_address,
            record.local_port,
            record.remote_address,
            record.remote_port,
        )
        rows: list[LifecycleRow] = []

        def row(activity: Activity, owner: Owner, direction: Direction, tuple5: Tuple5) -> LifecycleRow:
            return LifecycleRow(
                time=wall_time,
                activity=activity,
                owner=owner,
                protocol=tuple5[0],
                family=record.shown_family,
                local_address=tuple5[1],
                local_port=tuple5[2],
                remote_address=tuple5[3],
                remote_port=tuple5[4],
                direction=direction,
            )

        if new == TCP_LISTEN:
            self._listeners[(record.protocol, record.local_port)] = here
            self.listening.add((record.protocol, record.local_port))
            rows.append(row(Activity.LISTEN, here, Direction.UNKNOWN, full))
        elif new == TCP_SYN_SENT:
            self._remember(record.cookie, _Socket(owner=here, direction=Direction.OUTBOUND, tuple5=full))
        elif new == TCP_ESTABLISHED and old == TCP_SYN_SENT:
            sock = sock or _Socket(owner=None, direction=Direction.OUTBOUND)
            sock.tuple5, sock.established, sock.family = full, True, record.shown_family
            self._remember(record.cookie, sock)
            self._directions.put(full, Direction.OUTBOUND)
            rows.append(row(Activity.CONNECT, sock.owner or here, Direction.OUTBOUND, full))
        elif new == TCP_ESTABLISHED and old == TCP_SYN_RECV:
            sock = _Socket(owner=None, direction=Direction.INBOUND, tuple5=full, established=True)
            sock.family = record.shown_family
            self._remember(record.cookie, sock)
            self._directions.put(full, Direction.INBOUND)
            # softirq context: the pid is not the owner's; resolved at the next drains
            self._pending.append(_PendingAccept(row(Activity.ACCEPT, here, Direction.INBOUND, full)))
        elif (old, new) in ((TCP_ESTABLISHED, TCP_FIN_WAIT1), (TCP_CLOSE_WAIT, TCP_LAST_ACK)):
            # the owner closed (process context): the pid is right, the tuple intact
            direction = sock.direction if sock else self._direction_of(full)
            if sock is not None:
                sock.owner, sock.closed = here, True
            rows.append(row(Activity.CLOSE, here, direction, full))
        elif new == TCP_CLOSE:
            sock = self._sockets.pop(record.cookie, None)
            if old == TCP_LISTEN:
                self._listeners.pop((record.protocol, record.local_port), None)
                self.listening.discard((record.protocol, record.local_port))
            elif sock is not None and old == TCP_SYN_SENT:
                rows.append(
                    row(Activity.CONNECT_FAILED, sock.owner or here, Direction.OUTBOUND, sock.tuple5 or full)
                )
            elif sock is not None and sock.established and not sock.closed and sock.tuple5 is not None:
                # reset or aborted without an orderly close by the owner
                owner = sock.owner or self._listeners.get((sock.tuple5[0], sock.tuple5[2])) or here
                rows.append(row(Activity.CLOSE, owner, sock.direction, sock.tuple5))
        return rows

    def _remember(self, cookie: int, sock: _Socket) -> None:
        self._sockets[cookie] = sock
        while len(self._sockets) > self.max_entries:
            # sockets whose close we never saw (ring buffer loss): forget the oldest
            self._sockets.popitem(last=False)

    def _direction_of(self, tuple5: Tuple5) -> Direction:
        known = self._directions.get(tuple5)
        if isinstance(known, Direction):
            return known
        if tuple5[0] == "tcp":
            return Direction.INBOUND if (tuple5[0], tuple5[2]) in self.listening else Direction.OUTBOUND
        return Direction.UNKNOWN

    # --- drained counters ------------------------------------------------------------------------

    def on_drain(
        self, flows: Iterable[tuple[FlowKey, FlowCounters]], *, wall_time: float, monotonic_ns: int
    ) -> tuple[list[TrafficRow], list[LifecycleRow]]:
        """Direction for each drained counter, UDP exchanges opened, and accepts now resolved."""
        traffic: list[TrafficRow] = []
        lifecycle: list[LifecycleRow] = []
        owners_by_tuple: dict[Tuple5, Owner] = {}

        def wall(ns: int) -> float:
            return wall_time - (monotonic_ns - ns) / 1e9

        for key, counters in flows:
            tuple5 = (key.protocol, key.local_address, key.local_port, key.remote_address, key.remote_port)
            owners_by_tuple.setdefault(tuple5, Owner(key.pid, key.uid, key.comm))
            first, last = wall(counters.first_ns), wall(counters.last_ns)
            if key.protocol == "udp":
                direction = self._udp_direction(
                    key, counters=counters, tuple5=tuple5, first=first, last=last, opened=lifecycle
                )
            else:
                direction = self._direction_of(tuple5)
            traffic.append(TrafficRow(first, last, key, counters, direction))

        still_pending: list[_PendingAccept] = []
        for pending in self._pending:
            accepted = pending.row
            tuple5 = (
                accepted.protocol,
                accepted.local_address,
                accepted.local_port,
                accepted.remote_address,
                accepted.remote_port,
            )
            owner = owners_by_tuple.get(tuple5)
            if owner is None and pending.drains_waited >= 1:
                owner = self._fallback_owner(accepted)
            if owner is None:
                pending.drains_waited += 1
                still_pending.append(pending)
                continue
            accepted.owner = owner
            lifecycle.append(accepted)
        self._pending = still_pending
        return traffic, lifecycle

    def _udp_direction(
        self,
        key: FlowKey,
        *,
        counters: FlowCounters,
        tuple5: Tuple5,
        first: float,
        last: float,
        opened: list[LifecycleRow],
    ) -> Direction:
        if key.remote_port == 0:
            return Direction.UNKNOWN  # unconnected socket, peer not learnt
        previous = self._udp_last_seen.get(tuple5)
        known = self._directions.get(tuple5)
        if (
            isinstance(previous, float)
            and isinstance(known, Direction)
            and first - previous <= self.udp_idle_seconds
        ):
            self._udp_last_seen.put(tuple5, last)
            return known
        sent_first = counters.first_dir == FIRST_SENT
        direction = Direction.OUTBOUND if sent_first else Direction.INBOUND
        self._directions.put(tuple5, direction)
        self._udp_last_seen.put(tuple5, last)
        opened.append(
            LifecycleRow(
                time=first,
                activity=Activity.CONNECT if sent_first else Activity.ACCEPT,
                owner=Owner(key.pid, key.uid, key.comm),
                protocol="udp",
                family=key.shown_family,
                local_address=key.local_address,
                local_port=key.local_port,
                remote_address=key.remote_address,
                remote_port=key.remote_port,
                direction=direction,
            )
        )
        return direction

    def _fallback_owner(self, accepted: LifecycleRow) -> Owner:
        """An accept no traffic claimed: the listening socket's owner, else nobody (counted)."""
        owner = self._listeners.get((accepted.protocol, accepted.local_port))
        if owner is None:
            self.unattributed += 1
            owner = Owner(0, 0, "")
        return owner

    def flush(self) -> list[LifecycleRow]:
        """At shutdown: emit accepts still waiting, with the best owner known."""
        rows = []
        for pending in self._pending:
            pending.row.owner = self._fallback_owner(pending.row)
            rows.append(pending.row)
        self._pending = []
        return rows
