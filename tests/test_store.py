"""The endpoint store against a real SQLite file: windows, aggregation rules, exactly-once, late rows,
pruning, transactions and errors."""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from extension import store as store_module
from extension.constraints import Constraint
from extension.events import ACTIVITY_RANK, Activity, Direction, SocketEvent
from extension.store import SCHEMA_VERSION, SQL_DIR, Store, StoreError, window_start_of

W = 60  # window_seconds used throughout


def event(**overrides: Any) -> SocketEvent:
    """A valid raw row; overrides may carry values outside the declared types (e.g. a float time)."""
    fields: dict[str, Any] = {
        "time": 100,
        "activity": Activity.DATA,
        "pid": 100,
        "process_name": "curl",
        "protocol": "tcp",
        "family": 4,
        "local_address": "10.0.0.2",
        "local_port": 50000,
        "remote_address": "93.184.216.34",
        "remote_port": 443,
    }
    fields.update(overrides)
    return SocketEvent(**fields)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "netflow.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path, window_seconds=W) as opened:
        yield opened


def raw_rows(path: Path) -> list[dict[str, Any]]:
    """socket_events as another reader sees them (a separate connection)."""
    with closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM socket_events ORDER BY id")]


def flows_by_port(store: Store) -> dict[int, dict[str, object]]:
    rows = store.flows()
    by_port = {int(str(row["remote_port"])): row for row in rows}
    assert len(by_port) == len(rows), "test rows must differ in remote_port"
    return by_port


# --- windows -------------------------------------------------------------------------------------


def test_window_start_is_floor_aligned() -> None:
    assert window_start_of(0, 60) == 0
    assert window_start_of(59.999, 60) == 0
    assert window_start_of(60.0, 60) == 60
    assert window_start_of(119, 60) == 60
    assert window_start_of(1_700_000_039.5, 60) == 1_700_000_040 - 60
    assert window_start_of(-0.5, 60) == -60
    assert window_start_of(299, 300) == 0


def test_rows_either_side_of_a_boundary_are_in_different_windows(store: Store, db_path: Path) -> None:
    store.insert_batch(
        [
            event(time=59.999, bytes_sent=1, first_seen=59.5, last_seen=59.999),
            event(time=60.0, bytes_sent=2, first_seen=60.0, last_seen=60.0),
        ]
    )
    assert [row["window_start"] for row in raw_rows(db_path)] == [0, 60]

    assert store.aggregate(now=200, grace_seconds=0) == 2
    flows = store.flows()
    assert [(f["window_start"], f["bytes_sent"]) for f in flows] == [(0, 1), (60, 2)]
    assert [(f["first_seen"], f["last_seen"]) for f in flows] == [(59, 60), (60, 60)]


# --- aggregation rules ---------------------------------------------------------------------------


def test_aggregation_groups_by_process_and_peer_with_exact_sums(store: Store) -> None:
    curl = {"pid": 10, "process_start_time": 1000, "remote_address": "198.51.100.1"}
    ssh = {"pid": 20, "process_name": "ssh", "remote_address": "198.51.100.1", "remote_port": 22}
    store.insert_batch(
        [
            # curl -> peer:443 over tcp, three rows in window 120
            event(time=121, activity=Activity.CONNECT, remote_port=443, bytes_sent=100, sends=1, **curl),
            event(time=150, remote_port=443, bytes_sent=7, bytes_received=9, sends=3, receives=4, **curl),
            event(time=179, remote_port=443, bytes_sent=1, bytes_received=2, sends=1, receives=1, **curl),
            # the same process and peer on another port, and over udp: separate flows
            event(time=130, remote_port=53, bytes_sent=3, **curl),
            event(time=131, remote_port=443, protocol="udp", bytes_sent=5, **curl),
            # the same pid with another start time (pid reuse) and the same uid under another user id
            event(time=132, pid=10, process_start_time=2000, remote_address="198.51.100.1", remote_port=443),
            event(time=133, remote_port=443, uid=1000, bytes_sent=11, **curl),
            # another process to the same peer
            event(time=140, activity=Activity.ACCEPT, bytes_received=33, receives=1, **ssh),
            event(time=141, activity=Activity.ACCEPT, bytes_received=44, receives=2, **ssh),
            # next window: not aggregated yet
            event(time=180, remote_port=443, bytes_sent=999, **curl),
            # previous window
            event(time=119, remote_port=443, bytes_sent=555, **curl),
        ]
    )
    assert store.aggregate(now=181, grace_seconds=1) == 7
    summary = {
        (f["window_start"], f["pid"], f["process_start_time"], f["uid"], f["protocol"], f["remote_port"]): (
            f["bytes_sent"],
            f["bytes_received"],
            f["sends"],
            f["receives"],
            f["connections"],
        )
        for f in store.flows()
    }
    assert summary == {
        (60, 10, 1000, 0, "tcp", 443): (555, 0, 0, 0, 0),
        (120, 10, 1000, 0, "tcp", 443): (108, 11, 5, 5, 1),
        (120, 10, 1000, 0, "tcp", 53): (3, 0, 0, 0, 0),
        (120, 10, 1000, 0, "udp", 443): (5, 0, 0, 0, 0),
        (120, 10, 2000, 0, "tcp", 443): (0, 0, 0, 0, 0),
        (120, 10, 1000, 1000, "tcp", 443): (11, 0, 0, 0, 0),
        (120, 20, 0, 0, "tcp", 22): (0, 77, 0, 3, 2),
    }
    assert {f["window_seconds"] for f in store.flows()} == {W}
    assert store.watermark() == 180


def test_descriptive_columns_take_the_non_empty_value(store: Store) -> None:
    same = {"pid": 10, "uid": 1000, "process_start_time": 1000}
    store.insert_batch(
        [
            event(time=121, bytes_sent=100, bytes_received=1000, sends=1, receives=2, **same),
            event(
                time=122,
                bytes_sent=7,
                bytes_received=9,
                sends=3,
                receives=4,
                process_path="/usr/bin/curl",
                process_sha256="ab" * 32,
                username="alice",
                local_hostname="laptop",
                remote_hostname="example.org",
                cmdline="curl https://example.org",
                parent_pid=42,
                community_id="1:abc=",
                **same,
            ),
            event(time=123, process_name="", bytes_sent=1, **same),
        ]
    )
    assert store.aggregate(now=180, grace_seconds=0) == 1
    (flow,) = store.flows()
    assert flow["bytes_sent"] == 108
    assert flow["bytes_received"] == 1009
    assert (flow["sends"], flow["receives"]) == (4, 6)
    assert flow["process_name"] == "curl"
    assert flow["process_path"] == "/usr/bin/curl"
    assert flow["process_sha256"] == "ab" * 32
    assert flow["username"] == "alice"
    assert (flow["local_hostname"], flow["remote_hostname"]) == ("laptop", "example.org")
    assert flow["cmdline"] == "curl https://example.org"
    assert flow["parent_pid"] == 42
    assert flow["community_id"] == "1:abc="
    assert flow["process_start_time"] == 1000
    assert (flow["local_address"], flow["local_port"]) == ("10.0.0.2", 50000)
    assert (flow["remote_address"], flow["remote_port"]) == ("93.184.216.34", 443)
    assert (flow["protocol"], flow["family"]) == ("tcp", 4)


def test_sums_and_connections_per_flow(store: Store) -> None:
    rows = [
        event(time=130, remote_port=1, activity=Activity.CONNECT, bytes_sent=10, bytes_received=1),
        event(time=131, remote_port=1, activity=Activity.CONNECT, bytes_sent=20, bytes_received=2),
        event(time=132, remote_port=1, activity=Activity.DATA, bytes_sent=30, bytes_received=3),
        event(time=133, remote_port=1, activity=Activity.CLOSE),
        event(time=134, remote_port=2, activity=Activity.ACCEPT, bytes_received=2**40),
        event(time=135, remote_port=2, activity=Activity.ACCEPT, bytes_received=1),
        event(time=136, remote_port=2, activity=Activity.ACCEPT),
        event(time=137, remote_port=3, activity=Activity.CONNECT_FAILED),
        event(time=138, remote_port=4, activity=Activity.LISTEN),
    ]
    assert store.insert_batch(rows) == len(rows)
    assert store.aggregate(now=180, grace_seconds=0) == 4
    flows = flows_by_port(store)
    assert (flows[1]["bytes_sent"], flows[1]["bytes_received"], flows[1]["connections"]) == (60, 6, 2)
    assert (flows[2]["bytes_sent"], flows[2]["bytes_received"], flows[2]["connections"]) == (0, 2**40 + 1, 3)
    assert flows[3]["connections"] == 0  # a failed connect opened nothing
    assert flows[4]["connections"] == 0


def test_activity_precedence_matches_activity_rank(store: Store) -> None:
    """For every pair of activities in one flow, the flow says the one ACTIVITY_RANK ranks higher."""
    pairs = list(itertools.combinations_with_replacement(list(Activity), 2))
    rows = []
    for port, (first, second) in enumerate(pairs, start=1):
        rows.append(event(time=125, remote_port=port, activity=first))
        rows.append(event(time=126, remote_port=port, activity=second))
    store.insert_batch(rows)
    assert store.aggregate(now=180, grace_seconds=0) == len(pairs)
    flows = flows_by_port(store)
    for port, (first, second) in enumerate(pairs, start=1):
        expected = max(first, second, key=ACTIVITY_RANK.__getitem__)
        assert flows[port]["activity"] == expected, (first, second)
        opened = sum(a in (Activity.CONNECT, Activity.ACCEPT) for a in (first, second))
        assert flows[port]["connections"] == opened
    assert set(ACTIVITY_RANK) == set(Activity)
    assert len(set(ACTIVITY_RANK.values())) == len(Activity)


@pytest.mark.parametrize(
    ("directions", "expected"),
    [
        ((Direction.OUTBOUND,), "outbound"),
        ((Direction.INBOUND, Direction.OUTBOUND, Direction.UNKNOWN), "outbound"),
        ((Direction.UNKNOWN, Direction.INBOUND), "inbound"),
        ((Direction.INBOUND, Direction.INBOUND), "inbound"),
        ((Direction.UNKNOWN, Direction.UNKNOWN), "unknown"),
        (("outbound", "unknown"), "outbound"),  # plain strings are accepted too
    ],
)
def test_direction_rules(store: Store, directions: tuple[str, ...], expected: str) -> None:
    store.insert_batch([event(time=130 + i, direction=d) for i, d in enumerate(directions)])
    store.aggregate(now=180, grace_seconds=0)
    (flow,) = store.flows()
    assert flow["direction"] == expected


def test_first_and_last_seen_are_floor_and_ceil_with_time_as_fallback(store: Store) -> None:
    store.insert_batch(
        [
            event(time=125, remote_port=1, first_seen=124.9, last_seen=125.1),
            event(time=131, remote_port=1, first_seen=130.0, last_seen=131.0),
            event(time=128, remote_port=1, first_seen=127.2, last_seen=128.2),
            # lifecycle rows without first/last_seen count at their time
            event(time=121, remote_port=2, activity=Activity.CONNECT),
            event(time=150, remote_port=2, first_seen=140.5, last_seen=149.5),
            event(time=170, remote_port=2, activity=Activity.CLOSE),
        ]
    )
    store.aggregate(now=180, grace_seconds=0)
    flows = flows_by_port(store)
    assert (flows[1]["first_seen"], flows[1]["last_seen"]) == (124, 131)
    assert (flows[2]["first_seen"], flows[2]["last_seen"]) == (121, 170)
    assert all(isinstance(flows[p][c], int) for p in (1, 2) for c in ("first_seen", "last_seen"))


# --- exactly once --------------------------------------------------------------------------------


def test_a_window_is_aggregated_only_after_it_ends_plus_grace(store: Store) -> None:
    store.insert_batch([event(time=100)])  # window [60, 120)
    assert store.aggregate(now=119.9, grace_seconds=0) == 0
    assert store.aggregate(now=121.9, grace_seconds=2) == 0
    assert store.watermark() is None  # nothing aggregated yet
    assert store.aggregate(now=122, grace_seconds=2) == 1
    assert store.watermark() == 120


def test_aggregating_again_writes_nothing(store: Store) -> None:
    store.insert_batch([event(time=70, remote_port=1), event(time=130, remote_port=2)])
    assert store.aggregate(now=200, grace_seconds=0) == 2
    assert store.watermark() == 180
    assert store.aggregate(now=200, grace_seconds=0) == 0
    assert store.aggregate(now=1000, grace_seconds=0) == 0
    assert store.watermark() == 960
    assert store.row_counts() == {"socket_events": 2, "flows": 2}


def test_first_run_starts_at_the_earliest_window_present(store: Store) -> None:
    store.insert_batch([event(time=1_700_000_000 + 5, bytes_sent=3)])
    start = window_start_of(1_700_000_005, W)
    assert store.aggregate(now=start + 2 * W, grace_seconds=0) == 1
    assert store.flows()[0]["window_start"] == start
    assert store.watermark() == start + 2 * W


def test_restart_keeps_the_watermark_and_does_not_double_count(db_path: Path) -> None:
    with Store(db_path, window_seconds=W) as first:
        first.insert_batch([event(time=70, bytes_sent=1), event(time=130, bytes_sent=2)])
        assert first.aggregate(now=125, grace_seconds=0) == 1  # window 60 only
        first.add_counter("ringbuf_lost", 3)

    with Store(db_path, window_seconds=W) as second:
        assert second.watermark() == 120
        assert second.counters() == {"ringbuf_lost": 3}
        assert second.aggregate(now=125, grace_seconds=0) == 0
        second.insert_batch([event(time=190, bytes_sent=4)])
        assert second.aggregate(now=300, grace_seconds=0) == 2  # windows 120 and 180
        flows = second.flows()
        assert [(f["window_start"], f["bytes_sent"]) for f in flows] == [(60, 1), (120, 2), (180, 4)]
        assert sum(int(str(f["bytes_sent"])) for f in flows) == 7


def test_a_failed_aggregation_writes_neither_flows_nor_watermark(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.insert_batch([event(time=70, bytes_sent=5)])

    def crash(conn: sqlite3.Connection, key: str, value: object) -> None:
        raise RuntimeError("crash between the flows insert and the watermark update")

    with monkeypatch.context() as patch:
        patch.setattr(Store, "_set_state", staticmethod(crash))
        with pytest.raises(RuntimeError, match="crash"):
            store.aggregate(now=200, grace_seconds=0)
    assert store.row_counts()["flows"] == 0
    assert store.watermark() is None

    assert store.aggregate(now=200, grace_seconds=0) == 1
    assert [f["bytes_sent"] for f in store.flows()] == [5]


def test_the_schema_refuses_a_second_aggregation_of_a_window(store: Store, db_path: Path) -> None:
    store.insert_batch([event(time=70)])
    assert store.aggregate(now=200, grace_seconds=0) == 1
    with closing(sqlite3.connect(db_path)) as conn, conn:  # someone rewinds the watermark by hand
        conn.execute("UPDATE agent_state SET value = 0 WHERE key = 'aggregate_watermark'")
    with pytest.raises(StoreError, match="UNIQUE constraint failed"):
        store.aggregate(now=200, grace_seconds=0)
    assert store.row_counts()["flows"] == 1
    assert store.watermark() == 0


# --- late rows and shutdown ----------------------------------------------------------------------


def test_late_rows_are_folded_into_the_watermark_window_and_counted(store: Store, db_path: Path) -> None:
    store.insert_batch([event(time=70, remote_port=1, bytes_sent=1)])
    assert store.aggregate(now=125, grace_seconds=0) == 1
    assert store.watermark() == 120

    late = [
        event(time=65, remote_port=1, bytes_sent=10),  # its window 60 is already aggregated
        event(time=2, remote_port=1, bytes_sent=100),  # far older
    ]
    on_time = [event(time=130, remote_port=1, bytes_sent=1000)]
    assert store.insert_batch(late + on_time) == 3
    assert store.counters() == {"late_rows": 2}
    assert [row["window_start"] for row in raw_rows(db_path)] == [60, 120, 120, 120]

    assert store.aggregate(now=200, grace_seconds=0) == 1
    flows = store.flows()
    assert [(f["window_start"], f["bytes_sent"]) for f in flows] == [(60, 1), (120, 1110)]

    store.insert_batch([event(time=100)])
    assert store.counters() == {"late_rows": 3}


def test_include_open_aggregates_the_current_window_at_shutdown(db_path: Path) -> None:
    with Store(db_path, window_seconds=W) as running:
        running.insert_batch([event(time=70, bytes_sent=1), event(time=130, bytes_sent=2)])
        assert running.aggregate(now=135, grace_seconds=2) == 1  # window 120 still open
        assert running.aggregate(now=135, grace_seconds=2, include_open=True) == 1
        assert running.watermark() == 180
        assert [f["window_start"] for f in running.flows()] == [60, 120]

    with Store(db_path, window_seconds=W) as restarted:  # restarted within the same window
        restarted.insert_batch([event(time=150, bytes_sent=4)])
        assert restarted.counters() == {"late_rows": 1}
        assert restarted.aggregate(now=245, grace_seconds=2) == 1
        assert [(f["window_start"], f["bytes_sent"]) for f in restarted.flows()] == [
            (60, 1),
            (120, 2),
            (180, 4),
        ]


def test_include_open_with_nothing_stored_is_harmless(store: Store) -> None:
    assert store.aggregate(now=135, grace_seconds=2, include_open=True) == 0
    assert store.watermark() is None


def test_changing_window_seconds_keeps_written_windows(db_path: Path) -> None:
    with Store(db_path, window_seconds=60) as minute:
        minute.insert_batch([event(time=70, remote_port=1), event(time=130, remote_port=2)])
        assert minute.aggregate(now=125, grace_seconds=0) == 1
    with Store(db_path, window_seconds=300) as five:
        five.insert_batch([event(time=250, remote_port=3), event(time=310, remote_port=4)])
        assert [row["window_start"] for row in raw_rows(db_path)] == [60, 120, 120, 300]
        assert five.counters() == {"late_rows": 1}  # window 0 (300 s) is below the watermark 120
        assert five.aggregate(now=301, grace_seconds=0) == 2
        assert five.watermark() == 300  # aligned to the new interval
        flows = five.flows()
        assert [(f["window_start"], f["window_seconds"], f["remote_port"]) for f in flows] == [
            (60, 60, 1),
            (120, 300, 2),
            (120, 300, 3),
        ]


# --- prune ---------------------------------------------------------------------------------------


def test_prune_removes_only_aggregated_raw_rows_older_than_retention(store: Store, db_path: Path) -> None:
    store.insert_batch([event(time=t, remote_port=t) for t in (10, 70, 130, 190)])
    assert store.prune(now=10_000, raw_retention_seconds=0, flow_retention_seconds=10**6) == (0, 0)

    assert store.aggregate(now=150, grace_seconds=0) == 2  # windows 0 and 60; watermark 120
    # retention 100 s at now=180: rows with time < 80 are old; only aggregated ones may go
    assert store.prune(now=180, raw_retention_seconds=100, flow_retention_seconds=10**6) == (2, 0)
    assert [row["time"] for row in raw_rows(db_path)] == [130, 190]
    # everything is old now, but windows 120 and 180 are not aggregated yet
    assert store.prune(now=10_000, raw_retention_seconds=0, flow_retention_seconds=10**6) == (0, 0)
    assert [row["time"] for row in raw_rows(db_path)] == [130, 190]
    assert store.row_counts() == {"socket_events": 2, "flows": 2}


def test_prune_removes_flows_older_than_their_retention(store: Store) -> None:
    store.insert_batch([event(time=t, remote_port=t) for t in (10, 70, 130)])
    store.aggregate(now=200, grace_seconds=0)
    assert store.prune(now=160, raw_retention_seconds=10**6, flow_retention_seconds=100) == (0, 1)
    assert [f["window_start"] for f in store.flows()] == [60, 120]
    assert store.prune(now=160, raw_retention_seconds=10**6, flow_retention_seconds=100) == (0, 0)


# --- one transaction per batch, validation -------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"activity": "sniff"}, "activity 'sniff'"),
        ({"protocol": "icmp"}, "protocol 'icmp' is not tcp or udp"),
        ({"direction": "sideways"}, "direction 'sideways'"),
        ({"family": 10}, "family 10 is not 4 or 6"),
        ({"time": float("nan")}, "time nan"),
        ({"time": "100"}, "time '100'"),
    ],
)
def test_an_invalid_row_rejects_the_whole_batch(store: Store, bad: dict[str, Any], message: str) -> None:
    batch = [event(time=70), event(**{"time": 71, **bad}), event(time=72)]
    with pytest.raises(ValueError, match=r"socket event #1 .*" + re.escape(message)):
        store.insert_batch(batch)
    assert store.row_counts() == {"socket_events": 0, "flows": 0}


def test_a_batch_failing_mid_write_leaves_nothing_written(store: Store) -> None:
    store.insert_batch([event(time=130)])
    store.aggregate(now=200, grace_seconds=0)  # watermark 180: the batch below has a late row
    batch = [event(time=150), event(time=190), event(time=191, pid=2**64)]  # too big for SQLite
    with pytest.raises(OverflowError):
        store.insert_batch(batch)
    assert store.row_counts() == {"socket_events": 1, "flows": 1}
    assert store.counters() == {}  # the late row of the failed batch is not counted
    assert store.insert_batch(batch[:2]) == 2
    assert store.counters() == {"late_rows": 1}


def test_an_empty_batch_writes_nothing(store: Store) -> None:
    assert store.insert_batch([]) == 0
    assert store.row_counts() == {"socket_events": 0, "flows": 0}


def test_raw_rows_hold_every_field_as_given(store: Store, db_path: Path) -> None:
    original = event(
        time=125,
        activity=Activity.CONNECT,
        pid=7,
        process_name="python3",
        protocol="udp",
        family=6,
        local_address="2001:db8::2",
        local_port=5353,
        remote_address="2001:db8::1",
        remote_port=53,
        uid=1000,
        username="alice",
        process_path="/usr/bin/python3.11",
        process_sha256="cd" * 32,
        process_start_time=1_699_999_000,
        parent_pid=1,
        cmdline="python3 -m http.server",
        direction=Direction.OUTBOUND,
        local_hostname="laptop",
        remote_hostname="dns.example",
        bytes_sent=40,
        bytes_received=120,
        sends=1,
        receives=1,
        first_seen=124.25,
        last_seen=124.75,
        community_id="1:xyz=",
    )
    store.insert_batch([original])
    (row,) = raw_rows(db_path)
    assert row.pop("id") == 1
    assert row.pop("window_start") == 120
    expected = {name: getattr(original, name) for name in SocketEvent.__dataclass_fields__}
    assert row == expected
    assert type(row["activity"]) is str and row["activity"] == "connect"


# --- counters, reads -----------------------------------------------------------------------------


def test_counters_add_up_and_persist(db_path: Path) -> None:
    with Store(db_path, window_seconds=W) as first:
        assert first.counters() == {}
        first.add_counter("map_evictions", 5)
        first.add_counter("map_evictions", 2)
        first.add_counter("decode_errors", 1)
        first.add_counter("decode_errors", 0)
        assert first.counters() == {"decode_errors": 1, "map_evictions": 7}
        with pytest.raises(ValueError, match="counter name"):
            first.add_counter("", 1)
    with Store(db_path, window_seconds=W) as second:
        assert second.counters() == {"decode_errors": 1, "map_evictions": 7}
        assert second.watermark() is None  # the watermark is not a counter


def test_agent_info_is_kept_apart_from_counters_and_read_only_stores_read_it(db_path: Path) -> None:
    with Store(db_path, window_seconds=W) as first:
        first.add_counter("ringbuf_lost", 3)
        first.set_info({"hook_set": "tracepoint", "pid": 42})
        first.set_info({"hook_set": "fexit"})  # a later start replaces what an earlier one said
    with Store(db_path, window_seconds=W, read_only=True) as reader:
        assert reader.info() == {"hook_set": "fexit", "pid": "42"}
        assert reader.counters() == {"ringbuf_lost": 3}
        with pytest.raises(StoreError):
            reader.add_counter("ringbuf_lost", 1)


def test_flows_since_and_until(store: Store) -> None:
    store.insert_batch([event(time=t, remote_port=t) for t in (10, 70, 130, 190)])
    store.aggregate(now=300, grace_seconds=0)
    starts = [f["window_start"] for f in store.flows()]
    assert starts == [0, 60, 120, 180]
    assert [f["window_start"] for f in store.flows(since=60)] == [60, 120, 180]
    assert [f["window_start"] for f in store.flows(until=120)] == [0, 60]
    assert [f["window_start"] for f in store.flows(since=60, until=180)] == [60, 120]
    assert store.flows(since=240) == []
    assert set(store.flows()[0]) >= {"id", "window_start", "window_seconds", "activity", "community_id"}


def test_summary_by_process_includes_the_open_window(store: Store) -> None:
    store.insert_batch(
        [
            event(time=30, pid=1, bytes_sent=10**6),  # before `since`: ignored
            # pid 1: two flows in window 60 (ports 443, 80), and port 443 again in the open window 120
            event(time=70, pid=1, remote_port=443, activity=Activity.CONNECT, bytes_sent=10),
            event(time=71, pid=1, remote_port=443, bytes_received=20),
            event(time=72, pid=1, remote_port=80, activity=Activity.CONNECT, bytes_sent=5, process_name=""),
            event(time=125, pid=1, remote_port=443, bytes_sent=1, process_path="/usr/bin/curl"),
            # pid 2 moves more bytes; a listen row has no peer (port 0)
            event(time=80, pid=2, process_name="nginx", remote_port=0, activity=Activity.LISTEN),
            event(
                time=81,
                pid=2,
                process_name="nginx",
                remote_address="192.0.2.9",
                remote_port=40000,
                activity=Activity.ACCEPT,
                bytes_sent=500,
            ),
            # pid 3: tiny
            event(time=90, pid=3, process_name="ntpd", protocol="udp", remote_port=123, bytes_sent=1),
        ]
    )
    store.aggregate(now=121, grace_seconds=0)  # window 120 stays open
    summary = store.summary_by_process(since=60)
    assert [row["pid"] for row in summary] == [2, 1, 3]
    nginx, curl, ntpd = summary
    assert nginx == {
        "pid": 2,
        "process_start_time": 0,
        "process_name": "nginx",
        "process_path": "",
        "flows": 2,
        "bytes_sent": 500,
        "bytes_received": 0,
        "connections": 1,
        "remote_endpoints": 1,
    }
    assert curl["process_name"] == "curl" and curl["process_path"] == "/usr/bin/curl"
    assert (curl["flows"], curl["bytes_sent"], curl["bytes_received"]) == (3, 16, 20)
    assert (curl["connections"], curl["remote_endpoints"]) == (2, 2)
    assert ntpd["bytes_sent"] == 1
    assert [row["pid"] for row in store.summary_by_process(since=60, limit=2)] == [2, 1]
    assert [row["pid"] for row in store.summary_by_process(since=0, limit=1)] == [1]
    assert store.summary_by_process(since=10_000) == []


def test_row_counts(store: Store) -> None:
    assert store.row_counts() == {"socket_events": 0, "flows": 0}
    store.insert_batch([event(time=70), event(time=71, remote_port=1)])
    store.aggregate(now=200, grace_seconds=0)
    assert store.row_counts() == {"socket_events": 2, "flows": 2}


# --- the database file ---------------------------------------------------------------------------


def test_wal_mode_and_schema_version(store: Store, db_path: Path) -> None:
    with closing(sqlite3.connect(db_path)) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    # synchronous is per connection: look at the store's own
    assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_reopening_applies_the_schema_idempotently(db_path: Path) -> None:
    with Store(db_path, window_seconds=W) as first:
        first.insert_batch([event(time=70)])
    with Store(db_path, window_seconds=W) as second:
        assert second.row_counts() == {"socket_events": 1, "flows": 0}


def test_schema_has_every_column_and_documents_it(store: Store, db_path: Path) -> None:
    with closing(sqlite3.connect(db_path)) as conn:
        columns = {
            table: [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            for table in ("socket_events", "flows", "agent_state")
        }
        indexes = {
            row[0]: row[1] for row in conn.execute("SELECT name, sql FROM sqlite_master WHERE type='index'")
        }
    assert columns["socket_events"] == ["id", "window_start", *SocketEvent.__dataclass_fields__]
    vocabulary = {
        *("window_start", "window_seconds", "pid", "process_name", "process_path", "process_sha256"),
        *("uid", "username", "protocol", "family", "direction", "local_address", "local_port"),
        *("remote_address", "remote_port", "local_hostname", "remote_hostname", "bytes_sent"),
        *("bytes_received", "connections", "activity", "first_seen", "last_seen"),
        *("sends", "receives", "community_id", "process_start_time", "parent_pid", "cmdline"),
    }
    assert set(columns["flows"]) == {"id", *vocabulary}
    assert columns["agent_state"] == ["key", "value"]
    for name in (
        "socket_events_time",
        "socket_events_window_start",
        "socket_events_pid",
        "flows_pid",
        "flows_remote_port",
        "flows_remote_address",
    ):
        assert name in indexes
    assert "window_start" in indexes["flows_window_key"].split("(", 1)[1].split(",")[0]

    # every column definition line in schema.sql carries a comment
    schema = (SQL_DIR / "schema.sql").read_text()
    for body in re.findall(r"CREATE TABLE IF NOT EXISTS \w+ \((.*?)\n\);", schema, flags=re.DOTALL):
        for line in body.splitlines():
            if re.match(r"\s+\w+ ", line):
                assert "--" in line, f"undocumented column: {line.strip()}"


def test_a_parent_that_is_a_file_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    path = blocker / "netflow.db"
    with pytest.raises(StoreError) as caught:
        Store(path, window_seconds=W)
    message = str(caught.value)
    assert str(path) in message
    assert "not writable" in message and "Not a directory" in message
    assert "EXTENSION_DATA_DIR" in message


def test_a_parent_below_a_file_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match=r"not writable: cannot create .*EXTENSION_DATA_DIR"):
        Store(blocker / "deeper" / "netflow.db", window_seconds=W)


def test_a_database_path_that_is_a_directory_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "netflow.db").mkdir()
    with pytest.raises(StoreError, match=r"is a directory .*EXTENSION_DATA_DIR"):
        Store(tmp_path / "netflow.db", window_seconds=W)


def test_a_corrupt_database_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "netflow.db"
    path.write_bytes(b"this is not an sqlite database" * 200)
    with pytest.raises(StoreError, match=r"corrupt or not an SQLite database .*move it aside"):
        Store(path, window_seconds=W)


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    Store(db_path, window_seconds=W).close()
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this agent"):
        Store(db_path, window_seconds=W)


def test_a_closed_store_says_so(db_path: Path) -> None:
    opened = Store(db_path, window_seconds=W)
    opened.close()
    opened.close()
    with pytest.raises(StoreError, match="closed"):
        opened.row_counts()
    with pytest.raises(StoreError, match="closed"):
        opened.insert_batch([event()])


def test_bad_arguments_are_refused(db_path: Path, store: Store) -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        Store(db_path, window_seconds=0)
    with pytest.raises(ValueError, match="grace_seconds"):
        store.aggregate(now=100, grace_seconds=-1)
    with pytest.raises(ValueError, match="retention"):
        store.prune(now=100, raw_retention_seconds=-1, flow_retention_seconds=0)


def test_every_sql_file_is_used(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running each public method once runs every file in sql/endpoint/ (no dead SQL)."""
    used: set[str] = set()
    real = store_module.load_sql

    def recording(name: str) -> str:
        used.add(name)
        return real(name)

    monkeypatch.setattr(store_module, "load_sql", recording)
    with Store(db_path, window_seconds=W) as opened:
        opened.insert_batch([event(time=70)])
        opened.aggregate(now=200, grace_seconds=0)
        opened.insert_batch([event(time=70)])  # late
        opened.add_counter("x", 1)
        opened.counters()
        opened.watermark()
        opened.flows()
        opened.summary_by_process(since=0)
        opened.row_counts()
        opened.set_info({"hook_set": "tracepoint"})
        opened.info()
        opened.query_table("socket_events", [Constraint("pid", "=", 100)])
        opened.query_table("flows", [])
        opened.prune(now=200, raw_retention_seconds=0, flow_retention_seconds=0)
    assert used == {path.stem for path in SQL_DIR.glob("*.sql")}
