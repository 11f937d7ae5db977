"""The fleet service as users run it: `serve` under gunicorn with our real forwarder sending to it over
HTTP, the embedded default, and the CLI commands, on a real PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from extension.forwarder import Forwarder
from extension.results import FLOWS_QUERY, result_line
from extension.spool import Spool
from tests.fleet_helpers import SECRET, flow_columns

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


CONTEXT: ssl.SSLContext | None = None  # trusted certificate of the HTTPS test, when one runs


def get(url: str, timeout: float = 2) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=CONTEXT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}")
        try:
            if get(url + "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not become healthy")


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet_analytics", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def serving(fleet_dsn: str, **extra_env: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "FLEET_DATABASE_URL": fleet_dsn, "FLEET_ENROLL_SECRET": SECRET, **extra_env}
    process = subprocess.Popen(
        [sys.executable, "-m", "fleet_analytics", "serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )
    scheme = "https" if extra_env.get("FLEET_TLS_CERT") else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()


@pytest.fixture
def served(fleet_dsn: str) -> Iterator[str]:
    with serving(fleet_dsn) as url:
        yield url


def test_the_forwarder_delivers_to_the_served_api_exactly_once(
    served: str, fleet_dsn: str, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool.db", max_bytes=64 << 20)
    now = int(time.time())
    lines = [
        result_line(
            name=FLOWS_QUERY,
            columns=flow_columns(pid=pid),
            host_identifier="laptop-1",
            unix_time=now,
            counter=pid,
        )
        for pid in range(1, 2001)
    ]
    spool.append("result", lines)
    spool.append("result", ["{not json"])  # a line the forwarder sends as a string item: quarantined
    forwarder = Forwarder(
        spool, base_url=served, enroll_secret=SECRET, host_identifier="laptop-1", batch_bytes=256 << 10
    )
    outcomes = []
    for _ in range(100):
        result = forwarder.send_once()
        outcomes.append(result.outcome)
        if result.outcome != "sent":
            break
    assert outcomes[-1] == "idle" and outcomes.count("sent") >= 2  # several batches
    assert spool.stats().rows == 0
    with psycopg2.connect(fleet_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT pid) FROM flows")
        assert cur.fetchone() == (2000, 2000)
        cur.execute("SELECT filter, item #>> '{}' FROM quarantine")
        assert cur.fetchall() == [("item_shape", "{not json")]
        cur.execute("SELECT host_identifier FROM hosts")
        assert cur.fetchall() == [("laptop-1",)]
        cur.execute("SELECT count(*), count(DISTINCT idempotency_key) FROM ingest_batches")
        batches, keys = cur.fetchone() or (0, 0)
        assert batches == keys == outcomes.count("sent")
    conn.close()
    spool.close()


def test_serve_on_the_embedded_default_migrates_and_stops_cleanly() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="fleet-data-", dir="/tmp"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update({"FLEET_DATA_DIR": str(data_dir), "FLEET_ENROLL_SECRET": SECRET})
    process = subprocess.Popen(
        [sys.executable, "-m", "fleet_analytics", "serve", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process)
        body = json.dumps({"enroll_secret": SECRET, "host_identifier": "h1"}).encode()
        request = urllib.request.Request(
            url + "/api/v1/osquery/enroll", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["node_invalid"] is False
        assert (data_dir / "pgdata" / "PG_VERSION").is_file()
        postmaster = data_dir / "pgdata" / "postmaster.pid"
        assert postmaster.is_file()
        pg_pid = int(postmaster.read_text().split()[0])
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        deadline = time.monotonic() + 20
        while Path(f"/proc/{pg_pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pg_pid}").exists(), "the embedded PostgreSQL was left running"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_enroll_secret_commands(fleet_dsn: str) -> None:
    env = {"FLEET_DATABASE_URL": fleet_dsn}
    assert "enrollment is closed" in cli("enroll-secret", "status", env=env).stdout
    rotated = cli("enroll-secret", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    first = rotated.stdout.strip()
    assert len(first) >= 24
    second = cli("enroll-secret", "rotate", env=env).stdout.strip()
    assert second != first
    assert "1 active" in cli("enroll-secret", "status", env=env).stdout
    assert cli("enroll-secret", "set", "my-secret", "--keep-old", env=env).returncode == 0
    assert "2 active" in cli("enroll-secret", "status", env=env).stdout

    from fleet_analytics import create_app  # noqa: PLC0415

    app = create_app({"database_url": fleet_dsn})
    try:
        client = app.test_client()
        for secret, status in ((first, 401), (second, 200), ("my-secret", 200)):
            answer = client.post(
                "/api/v1/osquery/enroll", json={"enroll_secret": secret, "host_identifier": "h"}
            )
            assert answer.status_code == status, secret
    finally:
        app.extensions["fleet"].close()
    missing = cli("enroll-secret", "set", env=env)
    assert missing.returncode == 1 and "give the secret" in missing.stderr


def test_packs_commands_validate_and_feed_the_config(fleet_dsn: str, tmp_path: Path) -> None:
    env = {"FLEET_DATABASE_URL": fleet_dsn}
    good = tmp_path / "inventory.conf"
    good.write_text(
        json.dumps({"queries": {"procs": {"query": "SELECT * FROM processes;", "interval": 3600}}})
    )
    bad = tmp_path / "broken.conf"
    bad.write_text(json.dumps({"queries": {"procs": {"query": "SELECT 1;", "interval": 0}}}))
    added = cli("packs", "add", str(good), env=env)
    assert added.returncode == 0, added.stderr
    refused = cli("packs", "add", str(bad), env=env)
    assert refused.returncode == 1 and "interval must be" in refused.stderr
    listing = cli("packs", "list", env=env).stdout
    assert "inventory\tadmin\t1 queries" in listing and "netflow\tshipped" in listing

    from fleet_analytics import create_app  # noqa: PLC0415

    app = create_app({"database_url": fleet_dsn, "enroll_secret": SECRET})
    try:
        client = app.test_client()
        key = client.post(
            "/api/v1/osquery/enroll", json={"enroll_secret": SECRET, "host_identifier": "h"}
        ).json["node_key"]  # type: ignore[index]
        config = client.post("/api/v1/osquery/config", json={"node_key": key}).json
        assert config is not None and set(config["packs"]) == {"inventory", "netflow"}
        assert cli("packs", "remove", "inventory", env=env).returncode == 0
        config = client.post("/api/v1/osquery/config", json={"node_key": key}).json
        assert config is not None and set(config["packs"]) == {"netflow"}
    finally:
        app.extensions["fleet"].close()
    gone = cli("packs", "remove", "inventory", env=env)
    assert gone.returncode == 1 and "no admin pack" in gone.stderr


def test_maintain_creates_partitions_ahead_and_drops_past_retention(fleet_dsn: str) -> None:
    today = int(time.time()) // 86400
    old_day = time.strftime("%Y-%m-%d", time.gmtime((today - 40) * 86400))
    with psycopg2.connect(fleet_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT fleet_ensure_flow_partition(%s::date)", (old_day,))
    conn.close()
    with psycopg2.connect(fleet_dsn) as conn, conn.cursor() as cur:  # an old batch with rows, a new one
        cur.execute("INSERT INTO hosts (host_identifier, node_key_sha256) VALUES ('h', 'k') RETURNING id")
        host = cur.fetchone()[0]
        for age_days, name in ((40, "old"), (1, "new")):
            cur.execute(
                "INSERT INTO ingest_batches (host_id, log_type, received_at) "
                "VALUES (%s, 'result', now() - make_interval(days => %s)) RETURNING id",
                (host, age_days),
            )
            batch = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO results (host_id, batch_id, name, action, unix_time, columns) "
                "VALUES (%s, %s, %s, 'added', 0, '{}')",
                (host, batch, name),
            )
    conn.close()
    result = cli("maintain", env={"FLEET_DATABASE_URL": fleet_dsn, "FLEET_PARTITIONS_AHEAD_DAYS": "3"})
    assert result.returncode == 0, result.stderr
    with psycopg2.connect(fleet_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class WHERE relname ~ '^flows_[0-9]{8}$' ORDER BY 1")
        names = [row[0] for row in cur.fetchall()]
    conn.close()
    expected = [time.strftime("flows_%Y%m%d", time.gmtime((today + n) * 86400)) for n in range(4)]
    assert names == expected
    assert old_day.replace("-", "") in result.stdout
    with psycopg2.connect(fleet_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM results")
        assert cur.fetchall() == [("new",)]  # the 40-day-old batch went, with its rows (30-day retention)
    conn.close()


def test_hosts_command_lists_enrolled_hosts(fleet_dsn: str) -> None:
    env = {"FLEET_DATABASE_URL": fleet_dsn}
    assert json.loads(cli("hosts", env=env).stdout) == {"hosts": []}
    from fleet_analytics import create_app  # noqa: PLC0415

    app = create_app({"database_url": fleet_dsn, "enroll_secret": SECRET})
    try:
        details = {"system_info": {"hostname": "laptop-7"}, "osquery_info": {"version": "5.12.1"}}
        body = {"enroll_secret": SECRET, "host_identifier": "uuid-7", "host_details": details}
        assert app.test_client().post("/api/v1/osquery/enroll", json=body).status_code == 200
    finally:
        app.extensions["fleet"].close()
    (host,) = json.loads(cli("hosts", env=env).stdout)["hosts"]
    assert (host["host_identifier"], host["hostname"], host["osquery_version"]) == (
        "uuid-7",
        "laptop-7",
        "5.12.1",
    )
    assert host["last_log_at"] is None and host["enrolled_at"]


def test_quarantine_command_and_bad_settings(fleet_dsn: str, dsn: str) -> None:
    result = cli("quarantine", env={"FLEET_DATABASE_URL": fleet_dsn})
    assert result.returncode == 0 and json.loads(result.stdout)["filters"] == []
    bad = cli("quarantine", env={"FLEET_DATABASE_URL": fleet_dsn, "FLEET_POOL_MAX": "lots"})
    assert bad.returncode == 1 and "FLEET_POOL_MAX" in bad.stderr and "whole number" in bad.stderr
    behind = cli("quarantine", env={"FLEET_DATABASE_URL": dsn})  # an empty database
    assert behind.returncode == 1 and "run python -m fleet_analytics migrate" in behind.stderr


def test_every_setting_is_documented_and_validated() -> None:
    from fleet_analytics.config import SETTINGS, ConfigError, load_settings  # noqa: PLC0415

    documented = (ROOT / "docs" / "fleet.md").read_text()
    missing = [setting.env for setting in SETTINGS if f"`{setting.env}`" not in documented]
    assert not missing, f"settings missing from docs/fleet.md: {missing}"
    with pytest.raises(ConfigError, match="FLEET_MAX_ROW_AGE_SECONDS"):
        load_settings(environ={"FLEET_MAX_ROW_AGE_SECONDS": "5"})
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings({"no_such_thing": 1}, environ={})
    with pytest.raises(ConfigError, match="postgresql://"):
        load_settings({"database_url": "mysql://x"}, environ={})
    with pytest.raises(ConfigError, match="FLEET_FLOW_RETENTION_DAYS"):
        load_settings({"flow_retention_days": 3, "max_row_age_seconds": 7 * 86400}, environ={})
    assert load_settings(environ={"FLEET_ENROLL_SECRET": "123"}).enroll_secret == "123"
    assert load_settings(environ={"FLEET_ACCESS_LOG": "yes"}).access_log is True
    with pytest.raises(ConfigError, match=r"FLEET_ACCESS_LOG.*true or false"):
        load_settings(environ={"FLEET_ACCESS_LOG": "sometimes"})


def test_https_with_the_configured_certificate(fleet_dsn: str, tmp_path: Path) -> None:
    """serve speaks HTTPS with FLEET_TLS_CERT/KEY, and the forwarder verifies it against its CA file."""
    global CONTEXT  # noqa: PLW0603 - wait_healthy's probe must trust the test certificate
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    CONTEXT = ssl.create_default_context(cafile=str(cert))
    try:
        with serving(fleet_dsn, FLEET_TLS_CERT=str(cert), FLEET_TLS_KEY=str(key)) as url:
            assert url.startswith("https://")
            spool = Spool(tmp_path / "spool.db", max_bytes=1 << 20)
            line = result_line(
                name=FLOWS_QUERY, columns=flow_columns(), host_identifier="tls-1", unix_time=0, counter=0
            )
            spool.append("result", [line])
            untrusted = Forwarder(spool, base_url=url, enroll_secret=SECRET, host_identifier="tls-1")
            assert untrusted.send_once().outcome == "failed"  # the system CAs do not know this certificate
            trusted = Forwarder(
                spool, base_url=url, enroll_secret=SECRET, host_identifier="tls-1", ca_file=cert
            )
            assert trusted.send_once().outcome == "sent"
            spool.close()
    finally:
        CONTEXT = None
    with psycopg2.connect(fleet_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM flows")
        assert cur.fetchone() == (1,)
    conn.close()


def test_serve_on_a_port_in_use_says_so_before_starting_anything(fleet_dsn: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), env={"FLEET_DATABASE_URL": fleet_dsn}, timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
