"""Builders for the fleet tests: flow rows and log items as osquery (or our agent) sends them; a query
helper for their PostgreSQL."""

from __future__ import annotations

import contextlib
import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
from flask import Flask

from extension.results import EVENTS_QUERY, FLOWS_QUERY, result_line
from fleet_analytics import create_app

SECRET = "test-enroll-secret"
HOST = "host-a.example"


def flow_columns(**overrides: Any) -> dict[str, str]:
    """One valid netflow_flows row, every value text (as osquery logs them), window in the last minute."""
    window = int(time.time()) // 60 * 60 - 60
    row: dict[str, Any] = {
        "window_start": window,
        "window_seconds": 60,
        "pid": 4242,
        "process_name": "curl",
        "process_path": "/usr/bin/curl",
        "process_sha256": "ab" * 32,
        "uid": 1000,
        "username": "alice",
        "protocol": "tcp",
        "family": 4,
        "direction": "outbound",
        "local_address": "10.0.0.5",
        "local_port": 50432,
        "remote_address": "203.0.113.9",
        "remote_port": 443,
        "local_hostname": "host-a",
        "remote_hostname": "example.net",
        "bytes_sent": 1200,
        "bytes_received": 48000,
        "connections": 1,
        "activity": "connect",
        "first_seen": window + 3,
        "last_seen": window + 9,
        "sends": 4,
        "receives": 30,
        "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "process_start_time": window - 100,
        "parent_pid": 1,
        "cmdline": "curl https://example.net/",
    }
    row.update(overrides)
    return {key: str(value) for key, value in row.items()}


def result_item(columns: dict[str, Any], *, name: str = FLOWS_QUERY, counter: int = 0) -> dict[str, Any]:
    line = result_line(
        name=name, columns=columns, host_identifier=HOST, unix_time=int(time.time()), counter=counter
    )
    item: dict[str, Any] = json.loads(line)
    return item


def event_item(**overrides: Any) -> dict[str, Any]:
    columns = {
        "time": str(int(time.time()) - 5),
        "activity": "connect",
        "pid": "4242",
        "remote_address": "203.0.113.9",
        "remote_port": "443",
    }
    columns.update({key: str(value) for key, value in overrides.items()})
    return result_item(columns, name=EVENTS_QUERY)


def status_item(message: str = "osquery started", severity: int = 0) -> dict[str, Any]:
    return {
        "hostIdentifier": HOST,
        "calendarTime": "Fri Dec  4 18:00:00 2026 UTC",
        "unixTime": str(int(time.time())),
        "severity": str(severity),
        "filename": "init.cpp",
        "line": "263",
        "message": message,
        "version": "5.12.1",
        "decorations": {"host_uuid": "u-1"},
    }


def log_body(node_key: str, data: list[Any], *, log_type: str = "result", **extra: Any) -> bytes:
    return json.dumps({"node_key": node_key, "log_type": log_type, "data": data, **extra}).encode()


def gz(body: bytes) -> bytes:
    return gzip.compress(body)


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection (closed after); its rows, or [] when it returns none."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@contextlib.contextmanager
def fleet_app(dsn: str, data_dir: Path, **settings: Any) -> Iterator[Flask]:
    """The fleet service on ``dsn`` with the test enroll secret and ``settings``; closed after."""
    app = create_app({"database_url": dsn, "enroll_secret": SECRET, "data_dir": str(data_dir), **settings})
    try:
        yield app
    finally:
        app.extensions["fleet"].close()


@contextlib.contextmanager
def database_copy(server_dsn: str, template: str) -> Iterator[str]:
    """A fresh database copied from ``template`` on the server of ``server_dsn``; dropped after."""
    import uuid  # noqa: PLC0415

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    base, _, options = server_dsn.partition("?")
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}" + (f"?{options}" if options else "")
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


@contextlib.contextmanager
def populated_fleet(
    server_dsn: str, template: str, data_dir: Path, password: str
) -> Iterator[dict[str, Any]]:
    """The fleet service on a fresh database with analysts ``ana`` (analyst) and ``root`` (admin), both
    with ``password``; 10 hosts with two days of traffic through the real log API, one agent status, a
    model trained on them, an exfiltration scored into an alert, and the rollups summed. Yields the
    app, the database URL, the end of the normal traffic and the exfiltration alert's id."""
    from fleet_analytics.dashboard.auth import create_analyst  # noqa: PLC0415
    from fleet_analytics.detection import ModelCache, score_pending, train_and_register  # noqa: PLC0415
    from fleet_analytics.rollups import roll_up_pending  # noqa: PLC0415
    from tests.test_detection import HOSTS, Fleet, exfiltration, normal_rows  # noqa: PLC0415

    with (
        database_copy(server_dsn, template) as dsn,
        fleet_app(dsn, data_dir, score_on_ingest=False, training_folds=3) as app,
    ):
        services = app.extensions["fleet"]
        create_analyst(services.db, "ana", password, "analyst")
        create_analyst(services.db, "root", password, "admin")
        fleet = Fleet(app.test_client())
        end = int(time.time()) // 600 * 600 - 3600
        for index, host in enumerate(HOSTS):
            fleet.send(host, normal_rows(index, end - 2 * 86400, end, seed=1))
        train_and_register(services.db, services.settings, days=2.2, reason="test")
        cache = ModelCache()
        score_pending(services.db, services.settings, cache=cache)
        fleet.send(HOSTS[3], normal_rows(3, end, end + 1200, seed=2) + exfiltration(end + 600))
        status = {"enterprise_network": "on", "spool_rows": "42", "spool_oldest_unsent": str(end - 300),
                  "backend": "ebpf", "hook_set": "tracepoint", "counters": "{}"}  # fmt: skip
        response = fleet.client.post(
            "/api/v1/osquery/log",
            json={
                "node_key": fleet.keys[HOSTS[3]],
                "log_type": "result",
                "data": [result_item(status, name="pack_netflow_netflow_agent_status")],
            },
        )
        assert response.status_code == 200, response.json
        scored = score_pending(services.db, services.settings, cache=cache)
        assert scored.alerts_new >= 1
        roll_up_pending(services.db, services.settings)
        (alert_id,) = query(
            dsn, "SELECT id FROM alerts WHERE remote_address = '198.51.100.200' ORDER BY id LIMIT 1"
        )[0]
        yield {"app": app, "dsn": dsn, "end": end, "alert_id": int(alert_id)}
