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
