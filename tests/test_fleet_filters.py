"""The sanitising filters, pure: each filter with good and bad rows, in order, and the batch level."""

from __future__ import annotations

import time
from typing import Any

import pytest

from fleet_analytics.ingest.filters import (
    FILTER_NAMES,
    FILTERS,
    FLOW_COLUMNS,
    FilterContext,
    Rejection,
    flow_key,
    sanitise_batch,
    sanitise_row,
)
from tests.fleet_helpers import flow_columns

NOW = int(time.time())
CTX = FilterContext(now=NOW, max_row_age_seconds=86400, max_clock_skew_seconds=600, max_bytes_per_second=1e9)


def verdict(**overrides: Any) -> dict[str, Any] | Rejection:
    columns: dict[str, Any] = flow_columns(**overrides)
    for key, value in list(overrides.items()):
        if value is DROP:
            del columns[key]
        elif not isinstance(value, str):
            columns[key] = value  # keep the type the test gave (numerics, wrong types)
    return sanitise_row(columns, CTX)


DROP = object()


def test_a_valid_row_passes_typed_and_complete() -> None:
    row = verdict()
    assert isinstance(row, dict)
    assert set(FLOW_COLUMNS) <= set(row)
    assert row["bytes_received"] == 48000 and row["family"] == 4 and row["remote_address"] == "203.0.113.9"


def test_filter_names_are_unique_and_ordered() -> None:
    assert len(set(FILTER_NAMES)) == len(FILTER_NAMES)
    assert FILTER_NAMES == (
        "columns", "types", "strings", "protocol", "addresses", "ports", "counters", "window", "duplicates"
    )  # fmt: skip
    assert all(f.description for f in FILTERS)


GOOD = [
    pytest.param({"sends": DROP, "cmdline": DROP, "community_id": DROP}, id="optional columns missing"),
    pytest.param({"window_start": NOW // 60 * 60, "bytes_sent": 0}, id="numerics as numbers"),
    pytest.param({"process_sha256": "AB" * 32}, id="upper-case sha256"),
    pytest.param({"process_sha256": ""}, id="unknown sha256"),
    pytest.param({"family": 6, "local_address": "2001:db8::5", "remote_address": "2001:DB8:0:0::9"}, id="v6"),
    pytest.param({"protocol": "udp", "remote_address": "0.0.0.0", "remote_port": 0}, id="unknown udp peer"),
    pytest.param({"protocol": "udp", "local_port": 0, "remote_port": 0, "activity": "data"}, id="udp port 0"),
    pytest.param({"activity": "listen", "bytes_sent": 0, "bytes_received": 0, "remote_port": 0}, id="listen"),
    pytest.param({"bytes_sent": 60 * 10**9}, id="a fast but possible flow"),
    pytest.param({"window_start": (NOW + 300) // 60 * 60}, id="clock slightly ahead"),
    pytest.param({"window_start": (NOW - 80000) // 60 * 60}, id="old but within the age"),
    pytest.param({"process_name": "a" * 256, "cmdline": "x" * 8192}, id="at the length limits"),
    pytest.param({"username": "ünïcödé", "remote_hostname": ""}, id="unicode text"),
]


@pytest.mark.parametrize("overrides", GOOD)
def test_good_rows_pass(overrides: dict[str, Any]) -> None:
    assert isinstance(verdict(**overrides), dict)


BAD = [
    ({"pid": DROP}, "columns", "pid"),
    ({"bytes_sent": "12k"}, "types", "bytes_sent"),
    ({"uid": 1.5}, "types", "uid"),
    ({"family": True}, "types", "family"),
    ({"process_name": 17}, "types", "process_name"),
    ({"window_start": "9" * 30}, "types", "window_start"),
    ({"bytes_sent": "9" * 5000}, "types", "bytes_sent"),  # beyond what int() converts
    ({"pid": "²"}, "types", "pid"),  # a digit to str.isdigit, not to int()
    ({"pid": "٣"}, "types", "pid"),  # a decimal digit to int(), but not ASCII
    ({"process_path": "/" + "a" * 5000}, "strings", "process_path"),
    ({"username": "bad\x00name"}, "strings", "NUL"),
    ({"process_sha256": "zz" * 32}, "strings", "process_sha256"),
    ({"process_sha256": "ab" * 31}, "strings", "process_sha256"),
    ({"protocol": "icmp"}, "protocol", "icmp"),
    ({"family": 5}, "protocol", "family"),
    ({"direction": "sideways"}, "protocol", "direction"),
    ({"activity": "teleport"}, "protocol", "activity"),
    ({"remote_address": "999.1.1.1"}, "addresses", "remote_address"),
    ({"local_address": "localhost"}, "addresses", "local_address"),
    ({"remote_address": "2001:db8::9"}, "addresses", "IPv6"),
    ({"remote_address": "0.0.0.0", "remote_port": 443}, "addresses", "unspecified"),
    ({"remote_port": 70000}, "ports", "remote_port"),
    ({"local_port": -1}, "ports", "local_port"),
    ({"remote_port": 0}, "ports", "port 0"),
    ({"bytes_received": -5}, "counters", "negative"),
    ({"connections": -1}, "counters", "negative"),
    ({"pid": 2**40}, "counters", "pid"),
    ({"bytes_sent": 61 * 10**9}, "counters", "absurd"),
    ({"window_seconds": 0}, "window", "window_seconds"),
    ({"window_start": NOW // 60 * 60 + 7}, "window", "aligned"),
    ({"window_start": (NOW + 3600) // 60 * 60}, "window", "future"),
    ({"window_start": (NOW - 90000) // 60 * 60}, "window", "older"),
    ({"first_seen": NOW, "last_seen": NOW - 10}, "window", "order"),
    ({"last_seen": NOW + 7200, "first_seen": NOW}, "window", "future"),
]


@pytest.mark.parametrize(("overrides", "name", "word"), BAD, ids=[f"{b[1]}-{b[2]}" for b in BAD])
def test_bad_rows_are_refused_by_the_named_filter(overrides: dict[str, Any], name: str, word: str) -> None:
    result = verdict(**overrides)
    assert isinstance(result, Rejection), result
    assert result.filter == name
    assert word in result.reason


def test_addresses_come_out_canonical() -> None:
    row = verdict(family=6, local_address="2001:DB8:0000::5", remote_address="2001:db8:0:0:0:0:0:9")
    assert isinstance(row, dict)
    assert (row["local_address"], row["remote_address"]) == ("2001:db8::5", "2001:db8::9")


def test_the_first_failing_filter_in_order_names_the_row() -> None:
    result = verdict(protocol="icmp", remote_port=99999, bytes_sent=-1)
    assert isinstance(result, Rejection) and result.filter == "protocol"


def test_duplicates_in_a_batch_keep_the_first_and_name_it() -> None:
    first = flow_columns()
    other = flow_columns(pid=1)
    same_key = flow_columns(bytes_sent=1)  # counters differ, the key does not
    out = sanitise_batch([first, other, same_key, flow_columns(protocol="icmp")], CTX)
    assert [row["pid"] for row in out.rows] == [4242, 1]
    assert [(index, r.filter) for index, r in out.rejected] == [(2, "duplicates"), (3, "protocol")]
    assert "row 0" in out.rejected[0][1].reason


def test_flow_key_depends_on_the_key_columns_only() -> None:
    a = verdict()
    b = verdict(bytes_sent=1, remote_hostname="other")
    c = verdict(remote_port=8443)
    assert isinstance(a, dict) and isinstance(b, dict) and isinstance(c, dict)
    assert flow_key(a) == flow_key(b) != flow_key(c)
    assert len(flow_key(a)) == 32


def test_filters_do_not_change_their_input() -> None:
    columns = flow_columns(family=6, local_address="2001:DB8::5", remote_address="2001:db8::9")
    before = dict(columns)
    sanitise_row(columns, CTX)
    assert columns == before
