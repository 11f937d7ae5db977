"""The osquery TLS API of the fleet service, through the Flask app against a real PostgreSQL."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fleet_analytics import create_app
from fleet_analytics.ingest.store import sha256
from tests.fleet_helpers import (
    HOST,
    SECRET,
    event_item,
    flow_columns,
    gz,
    log_body,
    query,
    result_item,
    status_item,
)

JSON = {"Content-Type": "application/json"}
GZIP = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
TABLES = ("flows", "results", "status_logs", "quarantine", "ingest_batches")


@pytest.fixture
def app(fleet_dsn: str) -> Iterator[Flask]:
    app = create_app({"database_url": fleet_dsn, "enroll_secret": SECRET, "max_body_bytes": 1 << 20})
    yield app
    app.extensions["fleet"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def counts(dsn: str) -> dict[str, int]:
    return {table: query(dsn, f"SELECT count(*) FROM {table}")[0][0] for table in TABLES}


def enroll(client: FlaskClient, identifier: str = HOST, secret: str = SECRET) -> str:
    answer = client.post(
        "/api/v1/osquery/enroll",
        json={
            "enroll_secret": secret,
            "host_identifier": identifier,
            "host_details": {
                "os_version": {"name": "Debian GNU/Linux", "version": "12", "platform": "debian"},
                "system_info": {"hostname": identifier, "uuid": "u-1"},
                "osquery_info": {"version": "5.12.1"},
            },
        },
    )
    assert answer.status_code == 200, answer.json
    assert answer.json is not None and answer.json["node_invalid"] is False
    key: str = answer.json["node_key"]
    return key


def send(client: FlaskClient, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post("/api/v1/osquery/log", data=body, headers=headers or GZIP)


def test_enroll_config_log_round_trip(client: FlaskClient, fleet_dsn: str) -> None:
    node_key = enroll(client)
    config = client.post("/api/v1/osquery/config", json={"node_key": node_key})
    assert config.status_code == 200
    assert config.json is not None and config.json["node_invalid"] is False
    assert "netflow_flows" in config.json["packs"]["netflow"]["queries"]

    flows = [flow_columns(pid=pid) for pid in (10, 11, 12)]
    data = [*(result_item(row, counter=i) for i, row in enumerate(flows)), event_item()]
    answer = send(client, gz(log_body(node_key, data)))
    assert answer.status_code == 200
    assert answer.json == {
        "node_invalid": False,
        "stored": True,
        "flow_rows": 3,
        "flow_duplicates": 0,
        "result_rows": 1,
        "status_rows": 0,
        "quarantined": 0,
    }
    status = send(client, log_body(node_key, [status_item("hello")], log_type="status"), JSON)
    assert status.status_code == 200 and status.json is not None and status.json["status_rows"] == 1

    stored = query(
        fleet_dsn,
        "SELECT f.pid, host(f.remote_address), f.bytes_received, f.process_sha256, h.host_identifier "
        "FROM flows f JOIN hosts h ON h.id = f.host_id ORDER BY f.pid",
    )
    assert stored == [(pid, "203.0.113.9", 48000, "ab" * 32, HOST) for pid in (10, 11, 12)]
    ((name, action, columns),) = query(fleet_dsn, "SELECT name, action, columns FROM results")
    assert (name, action, columns["activity"]) == (
        "pack_netflow_netflow_connection_events",
        "added",
        "connect",
    )
    assert query(fleet_dsn, "SELECT message, severity, line FROM status_logs") == [("hello", 0, 263)]
    host = query(
        fleet_dsn, "SELECT hostname, os_version, osquery_version, last_log_at IS NOT NULL FROM hosts"
    )
    assert host == [(HOST, "Debian GNU/Linux 12", "5.12.1", True)]


def test_node_keys_are_random_and_stored_hashed(client: FlaskClient, fleet_dsn: str) -> None:
    keys = {enroll(client, f"host-{i}") for i in range(3)}
    assert len(keys) == 3 and all(len(key) >= 40 for key in keys)
    stored = {bytes(row[0]) for row in query(fleet_dsn, "SELECT node_key_sha256 FROM hosts")}
    assert stored == {sha256(key) for key in keys}
    dump = json.dumps(query(fleet_dsn, "SELECT row_to_json(h)::text FROM hosts h"))
    assert not any(key in dump for key in keys)


def test_reenrolling_keeps_the_host_and_retires_the_old_key(client: FlaskClient, fleet_dsn: str) -> None:
    old = enroll(client)
    new = enroll(client)
    assert old != new
    assert query(fleet_dsn, "SELECT count(*) FROM hosts") == [(1,)]
    refused = client.post("/api/v1/osquery/config", json={"node_key": old})
    assert refused.status_code == 401 and refused.json is not None and refused.json["node_invalid"] is True
    assert client.post("/api/v1/osquery/config", json={"node_key": new}).status_code == 200


def test_wrong_or_missing_enroll_secret(fleet_dsn: str) -> None:
    closed = create_app({"database_url": fleet_dsn})
    try:
        answer = closed.test_client().post(
            "/api/v1/osquery/enroll", json={"enroll_secret": "x", "host_identifier": HOST}
        )
        assert answer.status_code == 401 and answer.json is not None
        assert answer.json["node_invalid"] is True and "enroll-secret rotate" in answer.json["error"]
    finally:
        closed.extensions["fleet"].close()
    app = create_app({"database_url": fleet_dsn, "enroll_secret": SECRET})
    try:
        answer = app.test_client().post(
            "/api/v1/osquery/enroll", json={"enroll_secret": SECRET + "x", "host_identifier": HOST}
        )
        assert answer.status_code == 401 and answer.json is not None and answer.json["node_invalid"] is True
        assert "not accepted" in answer.json["error"]
    finally:
        app.extensions["fleet"].close()
    assert query(fleet_dsn, "SELECT count(*) FROM hosts") == [(0,)]


def test_unknown_node_key_is_node_invalid_and_writes_nothing(client: FlaskClient, fleet_dsn: str) -> None:
    enroll(client)
    for path in ("/api/v1/osquery/config", "/api/v1/osquery/log"):
        body = log_body("not-a-key", [result_item(flow_columns())])
        answer = client.post(path, data=body, headers=JSON)
        assert answer.status_code == 401, path
        assert answer.json is not None and answer.json["node_invalid"] is True
    assert counts(fleet_dsn) == dict.fromkeys(TABLES, 0)


def test_a_retried_batch_is_stored_once(client: FlaskClient, fleet_dsn: str) -> None:
    node_key = enroll(client)
    body = gz(log_body(node_key, [result_item(flow_columns()), event_item()], batch_id="batch-1"))
    headers = {**GZIP, "X-Idempotency-Key": "batch-1"}
    first = send(client, body, headers)
    again = send(client, body, headers)
    assert first.json is not None and first.json["stored"] is True
    assert again.status_code == 200 and again.json is not None and again.json["stored"] is False
    assert counts(fleet_dsn) == {
        "flows": 1, "results": 1, "status_logs": 0, "quarantine": 0, "ingest_batches": 1
    }  # fmt: skip


def test_the_same_flow_window_in_another_batch_is_stored_once(client: FlaskClient, fleet_dsn: str) -> None:
    node_key = enroll(client)
    row = flow_columns()
    assert send(client, gz(log_body(node_key, [result_item(row)]))).json["flow_rows"] == 1
    again = send(client, gz(log_body(node_key, [result_item(row), result_item(flow_columns(pid=7))])))
    assert again.json is not None
    assert (again.json["flow_rows"], again.json["flow_duplicates"]) == (1, 1)
    assert query(fleet_dsn, "SELECT flow_rows, flow_duplicates FROM ingest_batches ORDER BY id") == [
        (1, 0),
        (1, 1),
    ]
    other_host = enroll(client, "host-b")  # the same window from another host is its own row
    assert send(client, gz(log_body(other_host, [result_item(row)]))).json["flow_rows"] == 1
    assert query(fleet_dsn, "SELECT count(*) FROM flows") == [(3,)]


def test_bad_rows_are_quarantined_with_filter_and_reason(client: FlaskClient, fleet_dsn: str) -> None:
    node_key = enroll(client)
    data = [
        result_item(flow_columns()),
        result_item(flow_columns(protocol="icmp")),
        result_item(flow_columns(bytes_sent="-3", pid=2)),
        result_item(flow_columns()),  # the same key again in this batch
        "a line that was not JSON",
        {"name": "pack_netflow_netflow_flows", "unixTime": 5},
    ]
    answer = send(client, gz(log_body(node_key, data)))
    assert answer.json is not None and (answer.json["flow_rows"], answer.json["quarantined"]) == (1, 5)
    rows = query(fleet_dsn, "SELECT filter, reason, query_name, item FROM quarantine ORDER BY id")
    assert [row[0] for row in rows] == ["item_shape", "item_shape", "protocol", "counters", "duplicates"]
    by_filter = {row[0]: row for row in rows}
    assert by_filter["protocol"][2] == "pack_netflow_netflow_flows"
    assert by_filter["protocol"][3]["protocol"] == "icmp"  # the row as received
    assert "negative" in by_filter["counters"][1]
    assert "a line that was not JSON" in [row[3] for row in rows]
    per_filter = query(
        fleet_dsn, "SELECT filter, rows FROM (" + load("quarantine_counts") + ") q", {"since": "-infinity"}
    )
    assert dict(per_filter) == {"counters": 1, "duplicates": 1, "item_shape": 2, "protocol": 1}


def load(name: str) -> str:
    from fleet_analytics.db import load_sql  # noqa: PLC0415

    return load_sql(name).rstrip().rstrip(";")


def test_all_three_result_formats_and_removed_rows(client: FlaskClient, fleet_dsn: str) -> None:
    node_key = enroll(client)
    now = int(time.time())
    batch = {
        "name": "pack/netflow/netflow_flows",
        "unixTime": now,
        "diffResults": {
            "added": [flow_columns(pid=1), flow_columns(pid=2)],
            "removed": [flow_columns(pid=3)],
        },
    }
    snapshot = {
        "name": "netflow_flows",
        "unixTime": str(now),
        "action": "snapshot",
        "snapshot": [flow_columns(pid=4)],
    }
    other = {"name": "pack_it_processes", "unixTime": now, "snapshot": [{"pid": "1"}, {"pid": "2"}]}
    answer = send(client, gz(log_body(node_key, [batch, snapshot, other])))
    assert answer.json is not None
    assert (answer.json["flow_rows"], answer.json["result_rows"], answer.json["quarantined"]) == (3, 3, 0)
    assert sorted(row[0] for row in query(fleet_dsn, "SELECT pid FROM flows")) == [1, 2, 4]
    assert sorted(query(fleet_dsn, "SELECT name, action FROM results")) == [
        ("pack/netflow/netflow_flows", "removed"),
        ("pack_it_processes", "snapshot"),
        ("pack_it_processes", "snapshot"),
    ]


def test_rows_with_control_characters_and_nul_survive_intact(client: FlaskClient, fleet_dsn: str) -> None:
    node_key = enroll(client)
    cmdline = "sh -c 'a\tb\\nc\nd\re' ünï 日本"
    data = [
        result_item(flow_columns(cmdline=cmdline)),
        result_item({"text": "tab\there\\ back\x00nul"}, name="pack_x_q"),
        status_item("multi\nline\ttabbed \\ message"),
    ]
    assert send(client, gz(log_body(node_key, data[:2]))).status_code == 200
    assert send(client, gz(log_body(node_key, data[2:], log_type="status"))).status_code == 200
    assert query(fleet_dsn, "SELECT cmdline FROM flows") == [(cmdline,)]
    assert query(fleet_dsn, "SELECT columns->>'text' FROM results") == [("tab\there\\ back\ufffdnul",)]
    assert query(fleet_dsn, "SELECT message FROM status_logs") == [("multi\nline\ttabbed \\ message",)]


def test_flows_land_in_day_partitions(client: FlaskClient, fleet_dsn: str) -> None:
    node_key = enroll(client)
    today = int(time.time()) // 86400 * 86400
    rows = [flow_columns(window_start=today - 86400 + 600, first_seen=today - 86400 + 610,
                         last_seen=today - 86400 + 620), flow_columns(pid=9)]  # fmt: skip
    answer = send(client, gz(log_body(node_key, [result_item(row) for row in rows])))
    assert answer.json is not None and answer.json["flow_rows"] == 2
    per_partition = query(
        fleet_dsn, "SELECT tableoid::regclass::text, count(*) FROM flows GROUP BY 1 ORDER BY 1"
    )
    days = [time.strftime("%Y%m%d", time.gmtime(t)) for t in (today - 86400, today)]
    assert per_partition == [(f"flows_{days[0]}", 1), (f"flows_{days[1]}", 1)]


# -- every refusal: a JSON reason, the right 4xx, nothing written ----------------------------------------

BIG = 1 << 20


def refusals(node_key: str) -> list[tuple[str, bytes, dict[str, str], int, str]]:
    valid = log_body(node_key, [result_item(flow_columns())])
    bomb = gzip.compress(b" " * (200 * BIG))  # 200 MiB of spaces, well under 1 MiB compressed
    return [
        ("bad json", b"{not json", JSON, 400, "not valid JSON"),
        ("empty body", b"", JSON, 400, "empty"),
        ("array body", b"[1, 2]", JSON, 400, "JSON object"),
        ("no log_type", json.dumps({"node_key": node_key, "data": []}).encode(), JSON, 400, "log_type"),
        ("bad log_type", log_body(node_key, [], log_type="metrics"), JSON, 400, "log_type"),
        ("data not a list", json.dumps({"node_key": node_key, "log_type": "result", "data": {}}).encode(),
         JSON, 400, "array"),
        ("node_key a number", json.dumps({"node_key": 5, "log_type": "result", "data": []}).encode(),
         JSON, 400, "node_key"),
        ("wrong content type", valid, {"Content-Type": "text/plain"}, 415, "application/json"),
        ("no content type", valid, {}, 415, "application/json"),
        ("unknown encoding", valid, {**JSON, "Content-Encoding": "br"}, 415, "gzip"),
        ("bad gzip", b"\x1f\x8b\x08garbage", GZIP, 400, "gzip"),
        ("truncated gzip", gz(valid)[:-12], GZIP, 400, "truncated"),
        ("deflate, not gzip", zlib.compress(valid), GZIP, 400, "gzip"),
        ("gzip bomb", bomb, GZIP, 413, "decompressed"),
        ("too large", b" " * (BIG + 10), JSON, 413, "exceeds"),
        ("keys differ", valid[:-1] + b', "batch_id": "a"}', {**JSON, "X-Idempotency-Key": "b"}, 400,
         "differ"),
    ]  # fmt: skip


def test_every_refusal_is_a_json_4xx_and_writes_nothing(client: FlaskClient, fleet_dsn: str) -> None:
    node_key = enroll(client)
    before = counts(fleet_dsn)
    for name, body, headers, status, word in refusals(node_key):
        answer = client.post("/api/v1/osquery/log", data=body, headers=headers)
        assert answer.status_code == status, (name, answer.status_code, answer.get_data()[:200])
        assert answer.json is not None and word in answer.json["error"], (name, answer.json)
    assert counts(fleet_dsn) == before


def test_a_body_shorter_than_its_content_length_is_refused(client: FlaskClient, fleet_dsn: str) -> None:
    node_key = enroll(client)
    body = log_body(node_key, [result_item(flow_columns())])
    environ = {"CONTENT_LENGTH": str(len(body) + 100)}
    answer = client.post("/api/v1/osquery/log", data=body, headers=JSON, environ_overrides=environ)
    assert answer.status_code == 400 and answer.is_json
    assert counts(fleet_dsn)["flows"] == 0


def test_unknown_paths_and_methods_answer_json(client: FlaskClient) -> None:
    missing = client.post("/api/v1/osquery/nothing", json={})
    assert missing.status_code == 404 and missing.json is not None
    assert "no such endpoint" in missing.json["error"]
    wrong = client.get("/api/v1/osquery/log")
    assert wrong.status_code == 405 and wrong.is_json


def test_database_unavailable_is_503_with_retry_after() -> None:
    app = create_app({"database_url": "postgresql://postgres@127.0.0.1:9/none", "retry_after_seconds": 7})
    try:
        answer = app.test_client().post(
            "/api/v1/osquery/log", data=log_body("k", [result_item(flow_columns())]), headers=JSON
        )
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "7"
        assert (
            answer.json is not None
            and answer.json["retry_after"] == 7
            and "unavailable" in answer.json["error"]
        )
        assert app.test_client().get("/healthz").status_code == 503
    finally:
        app.extensions["fleet"].close()


def test_concurrent_batches_with_the_same_windows_store_each_once(app: Flask, fleet_dsn: str) -> None:
    """Two requests racing with overlapping flow windows (a retry that overtook the original): the unique
    index makes the later one wait, then skip what the other stored; no error, nothing twice."""
    import threading  # noqa: PLC0415

    node_key = enroll(app.test_client())
    shared = [flow_columns(pid=pid) for pid in range(200)]
    bodies = [
        gz(log_body(node_key, [result_item(row) for row in [*shared, *(flow_columns(pid=1000 + n + k)
                                                                        for k in range(50))]]))
        for n in (0, 500)
    ]  # fmt: skip
    answers: list[Any] = []

    def post(body: bytes) -> None:
        answers.append(send(app.test_client(), body))

    threads = [threading.Thread(target=post, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answer.status_code for answer in answers] == [200, 200]
    stored = sorted((answer.json["flow_rows"], answer.json["flow_duplicates"]) for answer in answers)
    assert stored == [(50, 200), (250, 0)]
    assert query(fleet_dsn, "SELECT count(*), count(DISTINCT pid) FROM flows") == [(300, 300)]


def test_deeply_nested_items_are_stored_not_a_500(client: FlaskClient, fleet_dsn: str) -> None:
    """JSON nested deeper than orjson writes (255 levels) but within what it reads (1024)."""
    node_key = enroll(client)
    deep: Any = "leaf"
    for _ in range(600):
        deep = [deep]
    item = {"name": "pack_x_deep", "unixTime": 1, "columns": {"deep": deep}, "action": "added"}
    data = [item, deep]  # a result row, and a junk item
    answer = send(client, gz(log_body(node_key, data)))
    assert answer.status_code == 200, answer.json
    assert answer.json is not None and (answer.json["result_rows"], answer.json["quarantined"]) == (1, 1)
    assert query(fleet_dsn, "SELECT columns FROM results") == [({"deep": deep},)]
    assert query(fleet_dsn, "SELECT filter FROM quarantine") == [("item_shape",)]


def test_odd_but_storable_inputs(client: FlaskClient, fleet_dsn: str) -> None:
    """NUL in host details, a huge bad value quoted in a reason: stored (cleaned, bounded), not a 500."""
    answer = client.post(
        "/api/v1/osquery/enroll",
        json={
            "enroll_secret": SECRET,
            "host_identifier": "odd",
            "host_details": {
                "system_info": {"hostname": "a\x00b"},
                "os_version": {"name": 7, "version": True},
            },
        },
    )
    assert answer.status_code == 200 and answer.json is not None
    assert query(fleet_dsn, "SELECT hostname, os_version FROM hosts") == [("ab", "7")]
    bad = send(
        client, gz(log_body(answer.json["node_key"], [result_item(flow_columns(bytes_sent="9" * 50_000))]))
    )
    assert bad.status_code == 200 and bad.json is not None and bad.json["quarantined"] == 1
    (reason,) = query(fleet_dsn, "SELECT reason FROM quarantine")[0]
    assert reason.startswith("bytes_sent is '999") and len(reason) == 1000


def test_a_batch_key_seen_only_at_insert_is_still_stored_once(app: Flask, fleet_dsn: str) -> None:
    """The guard behind the early check: two requests with one key that both passed the check (a retry
    racing the original) meet at batch_insert.sql, and the second stores nothing."""
    from fleet_analytics.ingest.filters import FilterContext  # noqa: PLC0415
    from fleet_analytics.ingest.protocol import LogRequest  # noqa: PLC0415
    from fleet_analytics.ingest.store import prepare, store_batch  # noqa: PLC0415

    enroll(app.test_client())
    fleet = app.extensions["fleet"]
    request = LogRequest("unused", "result", [result_item(flow_columns())], "race-key")
    ctx = FilterContext(now=int(time.time()))
    outcomes = [
        store_batch(
            fleet.db,
            fleet.partitions,
            host_id=1,
            request=request,
            prepared=prepare(request, flows_query="netflow_flows", ctx=ctx),
            body_bytes=1,
        )
        for _ in range(2)
    ]
    assert [outcome.already_stored for outcome in outcomes] == [False, True]
    assert counts(fleet_dsn)["flows"] == 1 and counts(fleet_dsn)["ingest_batches"] == 1


def test_a_forked_child_opens_its_own_connections_and_spares_the_parents(fleet_dsn: str) -> None:
    import os  # noqa: PLC0415

    from fleet_analytics.db import Database  # noqa: PLC0415

    db = Database(fleet_dsn, pool_max=2)
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        parent_backend = cur.fetchone()
    child = os.fork()
    if child == 0:  # the child opens its own connection; the parent's session survives the child
        code = 1
        try:
            with db.transaction() as cur:
                cur.execute("SELECT pg_backend_pid()")
                code = 0 if cur.fetchone() != parent_backend else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with db.transaction() as cur:  # the parent's pooled connection still works, the same session
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone() == parent_backend
    db.close()
