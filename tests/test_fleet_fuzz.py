"""Property-based test of the log endpoint: whatever arrives, the answer is never a 500, a refusal
writes nothing, and an acceptance writes exactly what it reports."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from flask import Flask
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fleet_analytics import create_app
from tests.fleet_helpers import HOST, SECRET, event_item, flow_columns, result_item, status_item

TABLES = ("flows", "results", "status_logs", "quarantine", "ingest_batches")

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        ["", "0", "-1", "1e3", "0x10", "::1", "999.0.0.1", "tcp", "\x00", "\\", "\t\n", "9" * 5000, "²", "٣"]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
COLUMNS = list(flow_columns())


@st.composite
def flow_rows(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = flow_columns(pid=draw(st.integers(min_value=0, max_value=50)))
    for column in draw(st.lists(st.sampled_from(COLUMNS), max_size=3, unique=True)):
        if draw(st.booleans()):
            row[column] = draw(json_values)
        else:
            del row[column]
    return row


@st.composite
def items(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["flow", "flow", "flow", "event", "status", "batch", "junk", "deep"]))
    if kind == "deep":  # nested deeper than orjson writes (255) but not than it reads (1024)
        value: Any = draw(json_scalars)
        for _ in range(draw(st.integers(min_value=200, max_value=1000))):
            value = [value] if draw(st.booleans()) else {"k": value}
        return (
            {"name": "pack_x_deep", "unixTime": 1, "columns": {"v": value}} if draw(st.booleans()) else value
        )
    if kind == "flow":
        item = result_item(draw(flow_rows()))
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            item[draw(st.sampled_from(["name", "unixTime", "columns", "action", "decorations"]))] = draw(
                json_values
            )
        return item
    if kind == "event":
        return event_item()
    if kind == "status":
        item = status_item()
        if draw(st.booleans()):
            item[draw(st.sampled_from(list(item)))] = draw(json_values)
        return item
    if kind == "batch":
        return {
            "name": "pack_netflow_netflow_flows",
            "unixTime": draw(json_values),
            "diffResults": {"added": draw(st.lists(flow_rows(), max_size=3)), "removed": draw(json_values)},
        }
    return draw(json_values)


@st.composite
def requests(draw: st.DrawFn, node_key: str) -> tuple[bytes, dict[str, str]]:
    document: Any = {
        "node_key": draw(st.sampled_from([node_key] * 9 + ["wrong-key"])),
        "log_type": draw(st.sampled_from(["result"] * 6 + ["status"] * 2 + ["other"])),
        "data": draw(st.lists(items(), max_size=8)),
    }
    if draw(st.booleans()):
        document["batch_id"] = draw(st.text(min_size=1, max_size=8) | st.text(max_size=8) | json_scalars)
    if draw(st.integers(min_value=0, max_value=19)) == 0:
        document = draw(json_values)
    body = json.dumps(document).encode()
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "application/json; charset=utf-8"]))}
    mode = draw(st.sampled_from(["plain"] * 3 + ["gzip"] * 4 + ["truncated", "garbage"]))
    if mode in ("gzip", "truncated"):
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
        if mode == "truncated":
            body = body[: draw(st.integers(min_value=0, max_value=max(len(body) - 1, 0)))]
    elif mode == "garbage":
        cut = draw(st.integers(min_value=0, max_value=len(body)))
        body = body[:cut] + draw(st.binary(max_size=8)) + body[cut + 1 :]
    return body, headers


@pytest.fixture(scope="module")
def fuzz_app(server_dsn: str, migrated_template: str) -> Iterator[tuple[Flask, str, str]]:
    import uuid  # noqa: PLC0415

    name = f"fuzz_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(server_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} TEMPLATE {migrated_template}")
    base, _, query = server_dsn.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    app = create_app({"database_url": url, "enroll_secret": SECRET, "max_body_bytes": 1 << 20})
    answer = app.test_client().post(
        "/api/v1/osquery/enroll", json={"enroll_secret": SECRET, "host_identifier": HOST}
    )
    assert answer.json is not None
    try:
        yield app, url, answer.json["node_key"]
    finally:
        app.extensions["fleet"].close()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def counts(conn: Any) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute(" UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES))
        found = dict(cur.fetchall())
    conn.rollback()
    return {table: int(found[table]) for table in TABLES}


NODE_KEY_PLACEHOLDER = "NODE-KEY"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_log_endpoint_never_fails_and_never_writes_partially(
    fuzz_app: tuple[Flask, str, str], data: st.DataObject
) -> None:
    app, url, node_key = fuzz_app
    body, headers = data.draw(requests(node_key))
    conn = psycopg2.connect(url)
    try:
        before = counts(conn)
        answer = app.test_client().post("/api/v1/osquery/log", data=body, headers=headers)
        after = counts(conn)
    finally:
        conn.close()
    event(f"HTTP {answer.status_code}")
    assert answer.status_code in (200, 400, 401, 413, 415), (answer.status_code, answer.get_data()[:300])
    assert answer.is_json and answer.json is not None
    if answer.status_code != 200:
        assert "error" in answer.json
        assert after == before, "a refused request wrote something"
        return
    report = answer.json
    stored = 1 if report["stored"] else 0
    assert after == {
        "flows": before["flows"] + report["flow_rows"],
        "results": before["results"] + report["result_rows"],
        "status_logs": before["status_logs"] + report["status_rows"],
        "quarantine": before["quarantine"] + report["quarantined"],
        "ingest_batches": before["ingest_batches"] + stored,
    }


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/api/v1/osquery/enroll", "/api/v1/osquery/config"]),
    document=st.fixed_dictionaries(
        {},
        optional={
            "enroll_secret": st.sampled_from([SECRET]) | json_values,
            "host_identifier": st.text(max_size=300) | json_values,
            "host_details": st.dictionaries(st.text(max_size=12), json_values, max_size=4) | json_values,
            "platform_type": json_values,
            "node_key": json_values,
        },
    ),
)
def test_enroll_and_config_never_fail(
    fuzz_app: tuple[Flask, str, str], path: str, document: dict[str, Any]
) -> None:
    app, _url, _node_key = fuzz_app
    answer = app.test_client().post(
        path, data=json.dumps(document), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code in (200, 400, 401), (answer.status_code, answer.get_data()[:300])
    assert answer.json is not None
    if answer.status_code == 200 and path.endswith("enroll"):
        assert isinstance(answer.json["node_key"], str) and answer.json["node_invalid"] is False
