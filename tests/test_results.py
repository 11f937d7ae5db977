"""Standalone mode: new flow rows and connection events as osquery result-log lines in the spool,
exactly once across restarts."""

from __future__ import annotations

import json
from pathlib import Path

from extension.events import Activity
from extension.results import EVENT_COLUMNS, EVENTS_QUERY, FLOWS_QUERY, STATUS_QUERY, ResultEmitter
from extension.spool import Spool
from extension.store import Store
from tests.test_store import W, event

RESULT_KEYS = {
    "name",
    "hostIdentifier",
    "calendarTime",
    "unixTime",
    "epoch",
    "counter",
    "numerics",
    "decorations",
    "columns",
    "action",
}


def spooled(spool: Spool) -> list[dict[str, object]]:
    batch = spool.next_batch(max_bytes=1 << 30, max_lines=1_000_000)
    return [] if batch is None else [json.loads(line) for line in batch.lines]


def test_new_rows_become_result_lines_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "netflow.db", window_seconds=W)
    spool = Spool(tmp_path / "spool.db", max_bytes=1 << 20)
    store.insert_batch(
        [event(time=100, activity=Activity.CONNECT, pid=7), event(time=100, pid=7, bytes_sent=500)]
    )
    store.aggregate(now=1000, grace_seconds=0)
    emitter = ResultEmitter(store, spool, host_identifier="host-1", clock=lambda: 1700000000)
    assert emitter.emit() == 2  # one flow row, one connection event (the data row is no event)
    lines = spooled(spool)
    assert [line["name"] for line in lines] == [FLOWS_QUERY, EVENTS_QUERY]
    for line in lines:
        assert set(line) == RESULT_KEYS and line["action"] == "added" and line["hostIdentifier"] == "host-1"
        assert line["calendarTime"] == "Tue Nov 14 22:13:20 2023 UTC" and line["unixTime"] == 1700000000
        columns = line["columns"]
        assert isinstance(columns, dict) and all(isinstance(value, str) for value in columns.values())
    flow = lines[0]["columns"]
    assert isinstance(flow, dict)
    assert (flow["pid"], flow["bytes_sent"], flow["connections"], flow["activity"]) == (
        "7",
        "500",
        "1",
        "connect",
    )
    assert flow["process_sha256"] == "" and "id" not in flow  # empty is empty, never "None"
    event_columns = lines[1]["columns"]
    assert isinstance(event_columns, dict) and list(event_columns) == list(EVENT_COLUMNS)

    assert emitter.emit() == 0  # nothing new
    spool.close()
    # a restart (new emitter, spool reopened) emits only what is new
    spool = Spool(tmp_path / "spool.db", max_bytes=1 << 20)
    store.insert_batch([event(time=200, activity=Activity.CLOSE, pid=7)])
    store.aggregate(now=1000, grace_seconds=0, include_open=True)
    again = ResultEmitter(store, spool, host_identifier="host-1")
    assert again.emit() == 2  # the close event and the flow row of its window
    names = [line["name"] for line in spooled(spool)]
    assert names.count(FLOWS_QUERY) == 2 and names.count(EVENTS_QUERY) == 2


def test_the_agent_status_is_spooled_as_the_packs_snapshot(tmp_path: Path) -> None:
    """Standalone, the agent logs its net_agent_status row as osqueryd logs the pack's snapshot query,
    and the fleet's log parser takes it as one snapshot row of that query."""
    from extension.osquery_plugins import STATUS_COLUMNS, agent_status_row  # noqa: PLC0415
    from fleet_analytics.ingest.protocol import explode_result  # noqa: PLC0415

    store = Store(tmp_path / "netflow.db", window_seconds=W)
    store.set_info({"spool_rows": 17, "enterprise_network": "on", "backend": "ebpf"})
    spool = Spool(tmp_path / "spool.db", max_bytes=1 << 20)
    ResultEmitter(store, spool, host_identifier="host-1", clock=lambda: 1700000000).emit_status(
        agent_status_row(store)
    )
    (line,) = spooled(spool)
    assert line["name"] == STATUS_QUERY and line["action"] == "snapshot" and "columns" not in line
    snapshot = line["snapshot"]
    assert isinstance(snapshot, list) and len(snapshot) == 1
    row: dict[str, str] = snapshot[0]
    assert list(row) == [column for column, _kind in STATUS_COLUMNS]
    assert (row["spool_rows"], row["enterprise_network"], row["backend"]) == ("17", "on", "ebpf")
    assert row["aggregated_until"] == ""  # nothing aggregated yet: empty, never "None"
    parsed = explode_result(line)
    assert isinstance(parsed, list)
    assert [(item.name, item.action, item.columns["spool_rows"]) for item in parsed] == [
        (STATUS_QUERY, "snapshot", "17")
    ]
