"""The column-wise fast path of the filters against the row path (the specification): whenever it
accepts a batch, the row path accepts every row, with the same keys and byte-identical COPY lines."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from fleet_analytics.ingest.columnar import fast_flows, split_flow_items
from fleet_analytics.ingest.filters import FilterContext, sanitise_batch
from fleet_analytics.ingest.protocol import LogRequest
from fleet_analytics.ingest.store import flow_line, prepare
from tests.fleet_helpers import flow_columns, result_item
from tests.test_fleet_fuzz import items

NOW = int(time.time())
CTX = FilterContext(now=NOW, max_row_age_seconds=86400, max_clock_skew_seconds=600, max_bytes_per_second=1e9)
WINDOW = NOW // 60 * 60 - 60

# values that are valid, or nearly: the fast path must agree with the row path on each
TRICKY: dict[str, list[Any]] = {
    "window_start": [
        WINDOW,
        WINDOW - 60,
        WINDOW + 7,
        NOW + 3600 - NOW % 60,
        WINDOW - 90000,
        "0" + str(WINDOW),
    ],
    "window_seconds": [60, 1, 0, 86400, 86401, "060"],
    "pid": [0, 1, 2**32 - 1, 2**32, "-1", " 5", "5.0", 7, None],
    "uid": [0, 65534, 2**32, "1e3"],
    "family": [4, 6, 5, "04"],
    "protocol": ["tcp", "udp", "icmp", "TCP"],
    "direction": ["outbound", "inbound", "unknown", "out"],
    "activity": ["data", "connect", "listen", "close", "teleport"],
    "local_address": [
        "10.0.0.5",
        "2001:db8::5",
        "2001:DB8:0::5",
        "::ffff:10.0.0.5",
        "010.0.0.5",
        "x",
        "1.2.3.04",
        "10.0.0.5 ",
        "0.0.0.0",
    ],
    "remote_address": ["203.0.113.9", "0.0.0.0", "::", "2001:db8::9", "203.0.113.256"],
    "local_port": [0, 1, 65535, 65536, "0443"],
    "remote_port": [0, 443, 65535, 65536],
    "bytes_sent": [0, 1, 60 * 10**9, 60 * 10**9 + 1, "9" * 5000, -1],
    "bytes_received": [0, 48000, 10**18, "00"],
    "connections": [0, 3],
    "first_seen": [WINDOW, WINDOW + 70, NOW + 7200],
    "last_seen": [WINDOW + 9, WINDOW + 1, NOW + 7200],
    "process_sha256": ["ab" * 32, "AB" * 32, "", "ab" * 31, "zz" * 32],
    "process_name": ["curl", "", "a" * 256, "a" * 257, "x\x00y", 5],
    "cmdline": ["curl -s", "a\tb", "c\\d\ne\rf", "x" * 8192, "x" * 8193],
    "username": ["alice", "ünï", "a" * 300],
    "remote_hostname": ["example.net", "", "h" * 254],
    "process_start_time": [0, 2**63 - 1, 2**63 - 2],
    "parent_pid": [1, 2**32],
    "sends": [0, 5, "DROP"],
    "community_id": ["", "1:abc=", "x" * 65],
}


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = []
    for index in range(draw(st.integers(min_value=1, max_value=6))):
        row: dict[str, Any] = flow_columns(pid=draw(st.sampled_from([index] * 5 + [0])))
        mutations = draw(st.sampled_from([0, 0, 0, 1, 1, 2]))
        for column in draw(st.lists(st.sampled_from(sorted(TRICKY)), max_size=mutations, unique=True)):
            value = draw(st.sampled_from(TRICKY[column]))
            if value == "DROP":
                del row[column]
            elif isinstance(value, str) or draw(st.booleans()):
                row[column] = value
            else:
                row[column] = str(value)
        rows.append(row)
    return rows


def row_path(rows: list[dict[str, Any]]) -> tuple[list[Any], list[str], list[str], list[int]]:
    sanitised = sanitise_batch(rows, CTX)
    return (
        sanitised.rejected,
        [row["flow_key"] for row in sanitised.rows],
        [flow_line("", row) for row in sanitised.rows],
        [row["window_start"] for row in sanitised.rows],
    )


@settings(max_examples=600, deadline=None)
@given(rows=batches())
def test_whenever_the_fast_path_accepts_the_row_path_agrees(rows: list[dict[str, Any]]) -> None:
    fast = fast_flows(rows, CTX)
    event("fast path" if fast is not None else "row path")
    if fast is None:
        return
    rejected, keys, lines, starts = row_path(rows)
    assert rejected == []
    assert fast.keys == keys
    assert fast.lines == lines
    assert fast.window_starts == starts


def test_clean_batches_take_the_fast_path() -> None:
    """Not a vacuous property: our agent's rows, including v6, UDP without a peer port, escapes and
    unicode, are accepted column-wise, with the row path's exact output."""
    rows = [
        flow_columns(pid=1),
        flow_columns(pid=2, family=6, local_address="2001:db8::5", remote_address="2001:db8::9"),
        flow_columns(pid=3, protocol="udp", remote_address="0.0.0.0", remote_port=0, local_port=0),
        flow_columns(pid=4, cmdline="sh -c 'a\tb\\n'\nnext", username="ünï"),
        flow_columns(pid=5, sends="0", process_sha256=""),
    ]
    fast = fast_flows(rows, CTX)
    assert fast is not None
    rejected, keys, lines, starts = row_path(rows)
    assert (rejected, fast.keys, fast.lines, fast.window_starts) == ([], keys, lines, starts)
    assert fast_flows([], CTX) is not None


def test_any_doubt_falls_back_to_the_row_path() -> None:
    clean = [flow_columns(pid=1), flow_columns(pid=2)]
    assert fast_flows(clean, CTX) is not None
    bad: dict[str, Any]
    for bad in (
        {"pid": 1},  # a duplicate key
        {"process_sha256": "AB" * 32},  # valid, but canonicalised by the row path
        {"bytes_sent": "007"},  # valid, not canonical text
        {"bytes_sent": 5},  # a JSON number (numerics): valid
        {"protocol": "icmp"},  # invalid
    ):
        second: dict[str, Any] = {**clean[1], **{k: str(v) if k == "pid" else v for k, v in bad.items()}}
        rows: list[dict[str, Any]] = [clean[0], second]
        assert fast_flows(rows, CTX) is None, bad


@st.composite
def log_requests(draw: st.DrawFn) -> LogRequest:
    """Result batches as they come: mostly clean flow rows, with other queries, other formats, junk and
    mutated rows mixed in (the log endpoint's fuzz strategies)."""
    clean = [result_item(flow_columns(pid=1000 + n)) for n in range(draw(st.integers(0, 8)))]
    mixed = draw(st.lists(items(), max_size=6))
    data = draw(st.permutations(clean + mixed))
    return LogRequest("k", "result", data, "")


@settings(max_examples=400, deadline=None)
@given(request=log_requests())
def test_prepare_is_the_same_with_and_without_the_column_paths(request: LogRequest) -> None:
    fast = prepare(request, flows_query="netflow_flows", ctx=CTX)
    slow = prepare(request, flows_query="netflow_flows", ctx=CTX, columnar=False)
    split = split_flow_items(request.data, "netflow_flows", {})
    event("items split by columns" if split is not None else "items one by one")
    if split is not None:
        event(
            "rows by columns" if fast_flows([c for _n, c in split[0]], CTX) is not None else "rows one by one"
        )
    assert fast.flows == slow.flows
    assert fast.results == slow.results
    assert fast.quarantine == slow.quarantine
    assert fast.statuses == slow.statuses == []


def test_odd_item_fields_fall_back_instead_of_failing() -> None:
    good = result_item(flow_columns())
    for key, value in (("action", ["added"]), ("unixTime", [1]), ("decorations", 5), ("columns", [1])):
        request = LogRequest("k", "result", [good, {**good, key: value}], "")
        assert split_flow_items(request.data, "netflow_flows", {}) is None, key
        fast = prepare(request, flows_query="netflow_flows", ctx=CTX)
        assert fast == prepare(request, flows_query="netflow_flows", ctx=CTX, columnar=False)
    unhashable_name = {**good, "name": ["pack_netflow_netflow_flows"]}
    assert split_flow_items([good, unhashable_name], "netflow_flows", {}) is None
