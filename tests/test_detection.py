"""Detection against a real PostgreSQL: flows ingested through the real osquery log API, a model trained
and registered, batches scored into alerts, promotion and rollback, the signed artifact, and the
analysts' JSON API."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient

from fleet_analytics.analytics.model import ModelIntegrityError
from fleet_analytics.api import token_digest
from fleet_analytics.detection import (
    DetectionError,
    ModelCache,
    model_key,
    pending_counts,
    promote,
    rollback,
    score_pending,
    train_and_register,
)
from tests.fleet_helpers import SECRET, fleet_app, flow_columns, gz, log_body, query, result_item

DAY = 86400
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app(fleet_dsn: str, tmp_path: Path) -> Iterator[Flask]:
    with fleet_app(
        fleet_dsn,
        tmp_path / "data",
        score_on_ingest=False,
        training_folds=3,
        contamination=0.002,
        alert_budget_per_host_day=5,
    ) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Fleet:
    """Hosts enrolled over HTTP, and their flow rows sent as osquery result logs."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.keys: dict[str, str] = {}

    def enroll(self, host: str) -> str:
        if host not in self.keys:
            response = self.client.post(
                "/api/v1/osquery/enroll", json={"enroll_secret": SECRET, "host_identifier": host}
            )
            assert response.status_code == 200, response.json
            self.keys[host] = response.json["node_key"]  # type: ignore[index]
        return self.keys[host]

    def send(self, host: str, rows: list[dict[str, Any]], *, batch: int = 2000) -> None:
        key = self.enroll(host)
        for start in range(0, len(rows), batch):
            items = [result_item(flow_columns(**row)) for row in rows[start : start + batch]]
            response = self.client.post(
                "/api/v1/osquery/log",
                data=gz(log_body(key, items)),
                headers={
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                    "X-Idempotency-Key": str(uuid.uuid4()),
                },
            )
            assert response.status_code == 200, response.json
            assert response.json["quarantined"] == 0, response.json  # type: ignore[index]


HOSTS = [f"ws-{n:02d}.corp.example" for n in range(1, 11)]
APPS = {
    "firefox": ("/usr/lib/firefox/firefox", "aa" * 32, 443, "tcp"),
    "systemd-resolved": ("/usr/lib/systemd/systemd-resolved", "bb" * 32, 53, "udp"),
    "rclone": ("/usr/bin/rclone", "cc" * 32, 443, "tcp"),
}
POOL = [f"151.101.{i}.{j}" for i in range(3) for j in range(1, 9)]


def normal_rows(host_index: int, start: int, end: int, seed: int) -> list[dict[str, Any]]:
    """Every 10 minutes: browsing to a shared pool, DNS to the resolver, a sync upload."""
    rng = np.random.default_rng(seed * 100 + host_index)
    rows = []
    for window in range(start, end, 600):
        for name, (path, sha, port, protocol) in APPS.items():
            remote = {
                "firefox": str(rng.choice(POOL)),
                "systemd-resolved": "10.0.0.53",
                "rclone": "52.1.1.1",
            }[name]
            sent = {"firefox": 2_000, "systemd-resolved": 200, "rclone": 2_500}[name]
            received = {"firefox": 150_000, "systemd-resolved": 500, "rclone": 1_200}[name]
            rows.append(
                {
                    "window_start": window,
                    "pid": 1000 + len(name),
                    "process_name": name,
                    "process_path": path,
                    "process_sha256": sha,
                    "protocol": protocol,
                    "family": 4,
                    "local_address": f"10.20.0.{host_index + 10}",
                    "local_port": 40000 + int(rng.integers(0, 20000)),
                    "remote_address": remote,
                    "remote_port": port,
                    "remote_hostname": "",
                    "bytes_sent": int(sent * rng.uniform(0.5, 1.5)),
                    "bytes_received": int(received * rng.uniform(0.5, 1.5)),
                    "connections": 1,
                    "activity": "data",
                    "first_seen": window + int(rng.integers(0, 30)),
                    "last_seen": window + 40,
                    "sends": 3,
                    "receives": 5,
                    "process_start_time": start - 1000,
                }
            )
    return rows


def exfiltration(window: int) -> list[dict[str, Any]]:
    return [
        {
            "window_start": window + 60 * k,
            "process_name": "rclone",
            "process_path": "/usr/bin/rclone",
            "process_sha256": "cc" * 32,
            "local_address": "10.20.0.13",
            "remote_address": "198.51.100.200",
            "remote_port": 443,
            "bytes_sent": 45_000_000,
            "bytes_received": 30_000,
            "first_seen": window + 60 * k + 1,
            "last_seen": window + 60 * k + 59,
            "sends": 9000,
            "receives": 40,
        }
        for k in range(3)
    ]


@pytest.fixture
def history(client: FlaskClient) -> tuple[Fleet, int]:
    """Two days of normal traffic for 10 hosts, ending an hour ago; returns the fleet and the end."""
    end = int(time.time()) // 600 * 600 - 3600
    fleet = Fleet(client)
    for index, host in enumerate(HOSTS):
        fleet.send(host, normal_rows(index, end - 2 * DAY, end, seed=1))
    return fleet, end


def services(app: Flask) -> Any:
    return app.extensions["fleet"]


def test_train_score_and_alert_end_to_end(app: Flask, history: tuple[Fleet, int], fleet_dsn: str) -> None:
    fleet, end = history
    fleet_services = services(app)
    db, settings = fleet_services.db, fleet_services.settings
    cache = ModelCache()
    # no model yet: nothing is claimed, the batches wait
    waiting = score_pending(db, settings, cache=cache)
    assert waiting.batches == 0 and "no active model" in waiting.skipped
    assert pending_counts(db, settings)[0] == 10

    trained = train_and_register(db, settings, days=2.2, reason="test")
    assert trained.promoted and trained.promotion_note == "the first model"
    assert trained.windows == 10 * 288 * 3 and trained.rows == trained.windows
    (status, detector, features, windows, artifact_sha, reason), = query(
        fleet_dsn, "SELECT status, detector, features, training_windows, artifact_sha256, reason FROM models"
    )  # fmt: skip
    assert (status, detector, windows, reason) == ("active", settings.detector, trained.windows, "test")
    assert detector == "ensemble"  # the default
    assert "beacon_score" in features and re.fullmatch(r"[0-9a-f]{64}", artifact_sha)

    baseline = score_pending(db, settings, cache=cache)  # the training days themselves
    assert baseline.batches == 10 and baseline.windows == trained.windows
    assert baseline.alerts_new <= 10 * 2 * settings.alert_budget_per_host_day

    fleet.send(HOSTS[3], normal_rows(3, end, end + 1200, seed=2) + exfiltration(end + 600))
    scored = score_pending(db, settings, cache=cache)
    assert scored.batches == 1 and scored.anomalous >= 1
    alerts = query(
        fleet_dsn,
        "SELECT a.id, h.host_identifier, host(a.remote_address), a.windows, a.explanation, a.status, "
        "a.severity FROM alerts a JOIN hosts h ON h.id = a.host_id WHERE a.id = ANY(%s)",
        (scored.alert_ids,),
    )
    exfil = [alert for alert in alerts if alert[2] == "198.51.100.200"]
    assert len(exfil) == 1, alerts
    alert_id, host, _address, windows_merged, explanation, status, severity = exfil[0]
    assert host == HOSTS[3] and windows_merged == 3 and status == "new"
    assert "sent 45.0 MB" in explanation and "fleet median" in explanation
    assert "never seen before on any of 10 hosts" in explanation
    assert severity in ("medium", "high", "critical")
    behind = query(
        fleet_dsn, "SELECT count(*), sum(bytes_sent) FROM alert_windows WHERE alert_id = %s", (alert_id,)
    )
    assert behind == [(3, 135_000_000)]

    # scoring is idempotent: nothing left, nothing written twice
    again = score_pending(db, settings, cache=cache)
    assert again.batches == 0 and again.skipped == "nothing to score"
    assert query(fleet_dsn, "SELECT count(*) FROM scored_batches") == [(11,)]

    # the same exfiltration an hour later joins the alert (cooldown), it does not make a new one
    fleet.send(HOSTS[3], exfiltration(end + 3600))
    repeat = score_pending(db, settings, cache=cache)
    assert repeat.alerts_merged >= 1 and alert_id not in repeat.alert_ids
    assert query(fleet_dsn, "SELECT windows FROM alerts WHERE id = %s", (alert_id,)) == [(6,)]


def test_budget_suppresses_but_keeps_alerts(app: Flask, history: tuple[Fleet, int], fleet_dsn: str) -> None:
    fleet, end = history
    db, settings = services(app).db, services(app).settings
    train_and_register(db, settings, days=2.2)
    cache = ModelCache()
    score_pending(db, settings, cache=cache)
    query(fleet_dsn, "DELETE FROM alerts")
    burst = [
        {**row, "remote_address": f"198.51.100.{k}", "process_path": f"/tmp/tool{k}", "process_sha256": ""}
        for k, row in enumerate(exfiltration(end + 600) * 3, start=1)
    ]
    fleet.send(HOSTS[0], burst)
    result = score_pending(db, settings, cache=cache)
    rows = query(fleet_dsn, "SELECT status, severity FROM alerts")
    new = [severity for status, severity in rows if status == "new"]
    suppressed = [severity for status, severity in rows if status == "suppressed"]
    assert len(new) + len(suppressed) == 9  # nine executables, nine destinations: all kept
    assert len(suppressed) == result.alerts_suppressed
    assert "critical" not in suppressed  # the budget never hides a critical alert
    # the budget holds for the rest: at most the budget of new alerts that are not critical, and
    # suppression only once the budget is spent
    ordinary = [severity for severity in new if severity != "critical"]
    assert len(ordinary) <= settings.alert_budget_per_host_day
    assert not suppressed or len(new) >= settings.alert_budget_per_host_day


def test_promotion_rollback_and_candidates(app: Flask, history: tuple[Fleet, int], fleet_dsn: str) -> None:
    db, settings = services(app).db, services(app).settings
    first = train_and_register(db, settings, days=2.2)
    second = train_and_register(db, settings, days=2.2, detector="hbos", promote_when="never")
    assert not second.promoted
    active = query(fleet_dsn, "SELECT id FROM models WHERE status = 'active'")
    assert active == [(first.model_id,)]
    assert promote(db, second.model_id, actor="analyst-1", note="try hbos") == first.model_id
    assert query(fleet_dsn, "SELECT id, detector FROM models WHERE status = 'active'") == [
        (second.model_id, "hbos")
    ]
    assert rollback(db, actor="analyst-1") == first.model_id
    assert query(fleet_dsn, "SELECT id FROM models WHERE status = 'active'") == [(first.model_id,)]
    history_rows = query(
        fleet_dsn, "SELECT model_id, previous_model_id, actor FROM model_promotions ORDER BY id"
    )
    assert history_rows == [
        (first.model_id, None, "cli"),
        (second.model_id, first.model_id, "analyst-1"),
        (first.model_id, second.model_id, "analyst-1"),
    ]
    with pytest.raises(DetectionError, match="no model 999"):
        promote(db, 999, actor="x")


def test_tampered_artifact_is_never_loaded(app: Flask, history: tuple[Fleet, int], fleet_dsn: str) -> None:
    db, settings = services(app).db, services(app).settings
    train_and_register(db, settings, days=2.2)
    query(fleet_dsn, "UPDATE models SET artifact = artifact || '\\x00'::bytea")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        score_pending(db, settings, cache=ModelCache())
    # a consistent checksum is not enough: the signature is under this service's key
    query(fleet_dsn, "UPDATE models SET artifact_sha256 = encode(sha256(artifact), 'hex')")
    with pytest.raises(ModelIntegrityError, match="signature"):
        score_pending(db, settings, cache=ModelCache())
    assert query(fleet_dsn, "SELECT count(*) FROM scored_batches") == [(0,)]


def test_model_key_file_is_private_and_stable(tmp_path: Path) -> None:
    from fleet_analytics.config import load_settings  # noqa: PLC0415

    settings = load_settings({"data_dir": str(tmp_path)}, environ={})
    key = model_key(settings)
    assert key == model_key(settings) and len(key) == 64
    assert (tmp_path / "model.key").stat().st_mode & 0o777 == 0o600
    assert (
        model_key(load_settings({"data_dir": str(tmp_path), "model_key": "k" * 40}, environ={})) == b"k" * 40
    )


def test_training_without_flows_says_what_to_do(app: Flask) -> None:
    with pytest.raises(DetectionError, match="ingest traffic first"):
        train_and_register(services(app).db, services(app).settings, days=1)


def test_false_positives_are_known_normal_in_the_next_training(
    app: Flask, history: tuple[Fleet, int], fleet_dsn: str
) -> None:
    fleet, end = history
    db, settings = services(app).db, services(app).settings
    train_and_register(db, settings, days=2.2)
    fleet.send(HOSTS[3], exfiltration(end - 7200))
    result = score_pending(db, settings, cache=ModelCache())
    assert result.alerts_new >= 1
    query(fleet_dsn, "UPDATE alerts SET status = 'false_positive'")
    again = train_and_register(db, settings, days=2.2, promote_when="never")
    training = query(fleet_dsn, "SELECT training FROM models WHERE id = %s", (again.model_id,))[0][0]
    assert training["known_normal"] >= 3 and training["known_bad"] == 0


# -- the analysts' JSON API ------------------------------------------------------------------------------


def make_token(dsn: str, name: str = "analyst-1") -> str:
    token = f"tok-{uuid.uuid4()}"
    query(
        dsn,
        "INSERT INTO api_tokens (name, token_sha256, role) VALUES (%s, %s, 'analyst')",
        (name, token_digest(token)),
    )
    return token


@pytest.fixture
def alerted(app: Flask, history: tuple[Fleet, int], fleet_dsn: str) -> int:
    fleet, end = history
    db, settings = services(app).db, services(app).settings
    train_and_register(db, settings, days=2.2)
    fleet.send(HOSTS[3], exfiltration(end + 600))
    result = score_pending(db, settings, cache=ModelCache())
    (alert_id,) = query(fleet_dsn, "SELECT id FROM alerts WHERE host(remote_address) = '198.51.100.200'")[0]
    assert alert_id in result.alert_ids
    return int(alert_id)


def test_api_requires_a_token(client: FlaskClient, fleet_dsn: str) -> None:
    for path in ("/api/v1/alerts", "/api/v1/alerts/1", "/api/v1/models"):
        response = client.get(path)
        assert response.status_code == 401
        assert "Bearer" in response.headers["WWW-Authenticate"]
        assert "token create" in response.json["error"]  # type: ignore[index]
        assert "node_invalid" not in response.json  # type: ignore[operator]
    revoked = make_token(fleet_dsn)
    query(fleet_dsn, "UPDATE api_tokens SET revoked_at = now()")
    assert client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {revoked}"}).status_code == 401
    assert client.patch("/api/v1/alerts/1", json={"status": "resolved"}).status_code == 401


def test_api_lists_shows_and_triages_alerts(client: FlaskClient, alerted: int, fleet_dsn: str) -> None:
    auth = {"Authorization": f"Bearer {make_token(fleet_dsn)}"}
    listing = client.get("/api/v1/alerts?status=new&limit=500", headers=auth)
    assert listing.status_code == 200
    ids = [alert["id"] for alert in listing.json["alerts"]]  # type: ignore[index]
    assert alerted in ids and ids == sorted(ids, reverse=True)
    by_host = client.get(f"/api/v1/alerts?host={HOSTS[3]}", headers=auth).json["alerts"]  # type: ignore[index]
    assert {alert["host_identifier"] for alert in by_host} == {HOSTS[3]}
    # keyset pagination walks every alert once
    seen: list[int] = []
    cursor = ""
    while True:
        page = client.get(f"/api/v1/alerts?limit=1{cursor}", headers=auth).json
        seen += [alert["id"] for alert in page["alerts"]]  # type: ignore[index]
        if page["next_cursor"] is None:  # type: ignore[index]
            break
        cursor = f"&cursor={page['next_cursor']}"  # type: ignore[index]
    assert seen == ids or set(seen) >= set(ids)

    detail = client.get(f"/api/v1/alerts/{alerted}", headers=auth).json
    assert detail["remote_address"] == "198.51.100.200" and "45.0 MB" in detail["explanation"]  # type: ignore[index]
    assert [w["bytes_sent"] for w in detail["flow_windows"]] == [45_000_000] * 3  # type: ignore[index]
    assert len(detail["flows"]) == 3 and detail["flows"][0]["process_path"] == "/usr/bin/rclone"  # type: ignore[index]
    assert detail["reasons"] and detail["reasons"][0]["text"]  # type: ignore[index]

    patched = client.patch(
        f"/api/v1/alerts/{alerted}", json={"status": "false_positive", "note": "backup"}, headers=auth
    )
    assert patched.status_code == 200
    assert (patched.json["status"], patched.json["note"]) == ("false_positive", "backup")  # type: ignore[index]
    assert patched.json["status_changed_by"] == "token:analyst-1"  # type: ignore[index]
    fps = client.get("/api/v1/alerts?status=false_positive", headers=auth).json["alerts"]  # type: ignore[index]
    assert [alert["id"] for alert in fps] == [alerted]

    models = client.get("/api/v1/models", headers=auth).json["models"]  # type: ignore[index]
    assert models[0]["status"] == "active" and "artifact" not in models[0]
    assert models[0]["validation"]["histogram"]["counts"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("get", "/api/v1/alerts?status=open", None, 400, "comma-separated list of new"),
        ("get", "/api/v1/alerts?severity=urgent", None, 400, "severity"),
        ("get", "/api/v1/alerts?limit=0", None, 400, "out of range"),
        ("get", "/api/v1/alerts?limit=x", None, 400, "not a whole number"),
        ("get", "/api/v1/alerts?since=yesterday", None, 400, "ISO 8601"),
        ("get", "/api/v1/alerts?colour=red", None, 400, "unknown parameter"),
        ("get", "/api/v1/alerts/99999", None, 404, "no alert 99999"),
        ("patch", "/api/v1/alerts/99999", {"status": "resolved"}, 404, "no alert"),
        ("patch", "/api/v1/alerts/1", {"status": "suppressed"}, 400, "use one of new"),
        ("patch", "/api/v1/alerts/1", {"score": 0}, 400, "unknown field"),
        ("patch", "/api/v1/alerts/1", {}, 400, "status, note or both"),
        ("patch", "/api/v1/alerts/1", {"note": 5}, 400, "note must be text"),
        ("patch", "/api/v1/alerts/1", ["resolved"], 400, "JSON object"),
    ],
)
def test_api_refuses_bad_requests_with_reasons(
    client: FlaskClient, fleet_dsn: str, method: str, path: str, body: Any, status: int, words: str
) -> None:
    auth = {"Authorization": f"Bearer {make_token(fleet_dsn)}"}
    response = (
        getattr(client, method)(path, json=body, headers=auth)
        if body is not None
        else getattr(client, method)(path, headers=auth)
    )
    assert response.status_code == status, response.json
    assert words in response.json["error"]


def test_every_fleet_sql_file_is_used_by_the_code() -> None:
    code = "\n".join(path.read_text() for path in (ROOT / "fleet_analytics").rglob("*.py"))
    quoted = set(re.findall(r'"([a-z0-9_]+)"', code))
    named = set(re.findall(r'load_sql\("([a-z0-9_]+)"\)', code))
    files = {path.stem for path in (ROOT / "sql" / "fleet").glob("*.sql")}
    assert files - quoted == set(), "SQL files no code names"
    assert named - files == set(), "code loads SQL files that do not exist"


def test_cli_train_score_models_and_token(
    fleet_dsn: str,
    history: tuple[Fleet, int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fleet_analytics.__main__ import main  # noqa: PLC0415

    monkeypatch.setenv("FLEET_DATABASE_URL", fleet_dsn)
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FLEET_TRAINING_FOLDS", "3")
    assert main(["train", "--days", "2.2", "--detector", "ecod"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["promoted"] and trained["windows"] == 10 * 288 * 3
    assert main(["score", "--status"]) == 0
    assert json.loads(capsys.readouterr().out)["pending_batches"] == 10
    assert main(["score"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["batches"] == 10 and scored["model_id"] == trained["model_id"]
    assert main(["models", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)["models"]
    assert listed[0]["detector"] == "ecod" and "histogram" not in listed[0]["validation"]
    assert main(["models", "rollback"]) == 1
    assert "no earlier model" in capsys.readouterr().err
    assert main(["token", "create", "--name", "soc-bot"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert query(
        fleet_dsn,
        "SELECT name, role FROM api_tokens WHERE token_sha256 = %s",
        (token_digest(created["token"]),),
    ) == [("soc-bot", "analyst")]
    assert main(["token", "revoke", str(created["id"])]) == 0
    assert main(["token", "revoke", str(created["id"])]) == 1
    assert main(["train", "--detector", "lof"]) == 1
    assert "unknown detector 'lof': choose one of" in capsys.readouterr().err


def test_flow_frame_reads_text_columns_as_text(app: Flask, history: tuple[Fleet, int]) -> None:
    from fleet_analytics.detection import read_frame  # noqa: PLC0415

    with services(app).db.transaction() as cur:
        frame = read_frame(cur, "detect_rows_period", {"since": 0, "until": 2**40})
    assert len(frame) == 10 * 288 * 3
    assert frame["process_sha256"].map(type).eq(str).all()
    assert frame["remote_hostname"].eq("").all()  # empty text stays empty, not NaN
    assert pd.api.types.is_integer_dtype(frame["bytes_sent"])


def test_history_summed_in_the_store_equals_flow_windows(app: Flask, history: tuple[Fleet, int]) -> None:
    """The look-back history the scorer reads (summed per flow window by detect_rows_history) holds
    the same contacts as the flow windows of every row: rows of one flow window (two pids, inbound
    from two client ports, a binary without a path) are summed alike."""
    from fleet_analytics.analytics.features import history_windows  # noqa: PLC0415
    from fleet_analytics.detection import read_frame  # noqa: PLC0415

    fleet, end = history
    window = end - 3 * 3600
    extra = [
        {
            "window_start": window,
            "pid": 1,
            "local_port": 41000,
            "remote_address": "52.1.1.1",
            "bytes_sent": 10,
        },
        {
            "window_start": window,
            "pid": 2,
            "local_port": 41001,
            "remote_address": "52.1.1.1",
            "bytes_sent": 20,
        },
        {
            "window_start": window,
            "direction": "inbound",
            "local_port": 22,
            "remote_port": 50001,
            "remote_address": "10.9.9.9",
            "process_path": "/usr/sbin/sshd",
            "process_sha256": "dd" * 32,
        },
        {
            "window_start": window,
            "direction": "inbound",
            "local_port": 22,
            "remote_port": 50002,
            "remote_address": "10.9.9.9",
            "process_path": "/usr/sbin/sshd",
            "process_sha256": "dd" * 32,
        },
        {
            "window_start": window,
            "process_path": "",
            "process_sha256": "ee" * 32,
            "remote_address": "52.1.1.1",
            "first_seen": window + 1,
        },
    ]
    fleet.send(HOSTS[0], extra)
    with services(app).db.transaction() as cur:
        cur.execute("SELECT array_agg(id) FROM hosts")
        host_ids = cur.fetchone()[0]
        rows = read_frame(cur, "detect_rows_period", {"since": 0, "until": 2**40})
        addresses = sorted(pd.unique(rows["remote_address"]).tolist())
        summed = read_frame(
            cur,
            "detect_rows_history",
            {"host_ids": host_ids, "since": 0, "before": 2**40, "addresses": addresses, "batch_ids": [-1]},
        )
    from fleet_analytics.analytics.features import flow_windows  # noqa: PLC0415

    columns = ["host", "window_start", "app", "remote_address", "first_seen", "bytes_sent", "bytes_received"]
    ours = history_windows(summed)[columns].sort_values(columns).reset_index(drop=True)
    reference = flow_windows(rows)[columns].sort_values(columns).reset_index(drop=True)
    assert len(ours) == 10 * 288 * 3 + 3  # the five extra rows are three flow windows
    pd.testing.assert_frame_equal(ours, reference, check_dtype=False)
    sshd = ours[ours["app"] == "/usr/sbin/sshd"]
    assert sshd["bytes_sent"].tolist() == [2400]
    assert (ours["app"] == "ee" * 32).sum() == 1
