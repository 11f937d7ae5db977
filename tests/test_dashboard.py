"""The analysts' dashboard with Flask's test client against a real PostgreSQL: login, sessions, CSRF,
roles; every page with data and empty; triage and bulk triage; the flows explorer and its CSV; models
and packs; the rollups behind the overview."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fleet_analytics.__main__ import main as cli
from fleet_analytics.dashboard.auth import MAX_FAILURES, create_analyst, reset_analyst
from fleet_analytics.rollups import roll_up_pending
from tests.fleet_helpers import fleet_app, populated_fleet, query
from tests.test_detection import HOSTS

PASSWORD = "correct horse battery"
PAGES = ("/", "/alerts", "/hosts", "/flows", "/models", "/packs")


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def log_in(client: FlaskClient, username: str, password: str = PASSWORD, next_url: str = "") -> Any:
    form = client.get("/login").get_data(as_text=True)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(form), "next": next_url},
    )


def page_csrf(client: FlaskClient, path: str = "/") -> str:
    return csrf_of(client.get(path).get_data(as_text=True))


@pytest.fixture
def app(fleet_dsn: str, tmp_path: Path) -> Iterator[Flask]:
    with fleet_app(fleet_dsn, tmp_path / "data", score_on_ingest=False) as app:
        create_analyst(app.extensions["fleet"].db, "ana", PASSWORD, "analyst")
        create_analyst(app.extensions["fleet"].db, "root", PASSWORD, "admin")
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def analyst(client: FlaskClient) -> FlaskClient:
    assert log_in(client, "ana").status_code == 302
    return client


@pytest.fixture
def admin(client: FlaskClient) -> FlaskClient:
    assert log_in(client, "root").status_code == 302
    return client


# --------------------------------------------------------------------------------- access and login


def test_nothing_but_login_and_osquery_is_reachable_without_a_session(client: FlaskClient) -> None:
    for path in (*PAGES, "/alerts/1", "/hosts/1", "/flows.csv", "/packs/edit"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path
    assert client.post("/alerts/bulk").status_code == 400  # no CSRF token, no session: refused first
    assert client.get("/api/v1/alerts").status_code == 401  # the JSON API wants a token
    assert client.post("/api/v1/osquery/enroll", json={}).status_code in (400, 401)  # node auth, JSON
    login = client.get("/login")
    assert login.status_code == 200 and 'name="csrf_token"' in login.get_data(as_text=True)
    style = client.get("/assets/dashboard.css")  # the login page's own style
    assert style.status_code == 200
    style.close()
    assert "default-src 'self'" in login.headers["Content-Security-Policy"]
    assert login.headers["X-Frame-Options"] == "DENY"


def test_login_sets_a_protected_session_and_logout_ends_it(client: FlaskClient) -> None:
    response = log_in(client, "ana", next_url="/hosts?hours=6")
    assert response.status_code == 302 and response.headers["Location"] == "/hosts?hours=6"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP here: cookie_secure=auto follows TLS
    page = client.get("/")
    assert page.status_code == 200 and "ana (analyst)" in page.get_data(as_text=True)
    # a redirect after login never leaves the site
    client.post("/logout", data={"csrf_token": page_csrf(client)})
    assert log_in(client, "ana", next_url="https://evil.example/").headers["Location"] == "/"
    assert log_in(client, "ana", next_url="//evil.example/x").headers["Location"] == "/"
    # logout needs the token, then ends the session
    assert client.post("/logout").status_code == 400
    assert client.post("/logout", data={"csrf_token": page_csrf(client)}).status_code == 302
    assert client.get("/").status_code == 302


def test_secure_cookies_when_asked(fleet_dsn: str, tmp_path: Path) -> None:
    with fleet_app(fleet_dsn, tmp_path / "data", score_on_ingest=False, cookie_secure="always") as app:
        create_analyst(app.extensions["fleet"].db, "ana", PASSWORD, "analyst")
        response = log_in(app.test_client(), "ana")
        assert "Secure" in response.headers["Set-Cookie"]


def test_wrong_passwords_lock_the_account_and_a_reset_ends_sessions(app: Flask, client: FlaskClient) -> None:
    other = app.test_client()
    assert log_in(other, "ana").status_code == 302  # a session to be ended by the reset
    wrong = log_in(client, "ana", "not the password")
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.get_data(as_text=True)
    assert log_in(client, "nobody").status_code == 401  # the same answer for an unknown name
    for _ in range(MAX_FAILURES - 1):
        log_in(client, "ana", "still wrong")
    assert log_in(client, "ana").status_code == 401  # locked: even the right password is refused
    reset_analyst(app.extensions["fleet"].db, "ana", "a new password!")
    assert other.get("/").status_code == 302  # the old session ended with the reset
    assert log_in(client, "ana", "a new password!").status_code == 302


def test_forms_without_the_session_token_are_refused(analyst: FlaskClient) -> None:
    response = analyst.post("/alerts/bulk", data={"status": "resolved", "alert_id": "1"})
    assert response.status_code == 400 and "security token" in response.get_data(as_text=True)
    response = analyst.post(
        "/alerts/bulk", data={"status": "resolved", "alert_id": "1", "csrf_token": "forged"}
    )
    assert response.status_code == 400


def test_every_page_renders_empty_with_a_useful_note(analyst: FlaskClient) -> None:
    expected = {
        "/": "No traffic in this range yet",
        "/alerts": "No alerts yet",
        "/hosts": "No hosts enrolled yet",
        "/flows": "No flow rows match",
        "/models": "No model yet",
        "/packs": "netflow",  # the shipped pack is always there
    }
    for path, text in expected.items():
        response = analyst.get(path)
        assert response.status_code == 200, path
        assert text in response.get_data(as_text=True), path
    missing = analyst.get("/alerts/424242")
    assert missing.status_code == 404 and "there is no alert 424242" in missing.get_data(as_text=True)
    assert analyst.get("/hosts/424242").status_code == 404
    assert analyst.get("/nowhere").status_code == 404
    assert "<!doctype html>" in analyst.get("/nowhere").get_data(as_text=True)


def test_bad_parameters_are_named(analyst: FlaskClient) -> None:
    cases = {
        "/?hours=5": "hours '5'",
        "/alerts?sort=random": "sort 'random'",
        "/alerts?status=open": "status 'open'",
        "/flows?remote=not-an-ip": "remote 'not-an-ip'",
        "/flows?sha256=abc": "64 hex digits",
        "/flows?port=70000": "port '70000'",
        "/flows?since=2026-01-01&until=2026-02-01": "at most 7",
        "/flows?after=garbage": "cursor",
    }
    for path, text in cases.items():
        response = analyst.get(path)
        assert response.status_code == 400, path
        assert text in html.unescape(response.get_data(as_text=True)), path


def test_admin_only_actions(analyst: FlaskClient) -> None:
    token = page_csrf(analyst, "/models")
    assert "Retrain now" not in analyst.get("/models").get_data(as_text=True)
    for path in ("/models/rollback", "/models/retrain", "/models/1/promote", "/packs/edit"):
        response = analyst.post(path, data={"csrf_token": token, "name": "x", "pack": "{}"})
        assert response.status_code == 403, path
        assert "admin account" in response.get_data(as_text=True)
    assert analyst.get("/packs/edit?name=netflow").status_code == 403


def test_packs_are_edited_with_validation(admin: FlaskClient, fleet_dsn: str) -> None:
    token = page_csrf(admin, "/packs")
    bad_json = admin.post("/packs/edit", data={"csrf_token": token, "name": "extra", "pack": "{nope"})
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.get_data(as_text=True)
    pack = {"queries": {"uptime": {"query": "SELECT * FROM uptime;", "interval": 0}}}
    invalid = admin.post("/packs/edit", data={"csrf_token": token, "name": "extra", "pack": json.dumps(pack)})
    assert invalid.status_code == 400 and "interval must be" in invalid.get_data(as_text=True)
    assert query(fleet_dsn, "SELECT count(*) FROM packs") == [(0,)]
    pack["queries"]["uptime"]["interval"] = 600
    saved = admin.post("/packs/edit", data={"csrf_token": token, "name": "extra", "pack": json.dumps(pack)})
    assert saved.status_code == 302
    assert query(fleet_dsn, "SELECT pack -> 'queries' -> 'uptime' ->> 'interval' FROM packs") == [("600",)]
    listing = admin.get("/packs").get_data(as_text=True)
    assert "Pack extra saved" in listing and "SELECT * FROM uptime;" in listing
    edit = admin.get("/packs/edit?name=netflow").get_data(as_text=True)
    assert "replaces the shipped pack" in edit and "netflow_flows" in edit
    deleted = admin.post("/packs/edit", data={"csrf_token": token, "name": "extra", "action": "delete"})
    assert deleted.status_code == 302 and query(fleet_dsn, "SELECT count(*) FROM packs") == [(0,)]


def test_retrain_without_a_worker_says_how(admin: FlaskClient) -> None:
    response = admin.post("/models/retrain", data={"csrf_token": page_csrf(admin, "/models")})
    assert response.status_code == 503 and "fleet_analytics worker" in response.get_data(as_text=True)


def test_cli_creates_resets_lists_and_disables_users(
    fleet_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET_DATABASE_URL", fleet_dsn)
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path))
    assert cli(["create-user", "carol", "--role", "admin", "--generate"]) == 0
    password = capsys.readouterr().out.strip().rsplit("password: ", 1)[1]
    assert len(password) >= 20
    assert cli(["create-user", "carol", "--generate"]) == 1
    assert "exists" in capsys.readouterr().err
    assert cli(["create-user", "bad name", "--generate"]) == 1
    assert "user name" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli(["create-user", "dave"]) == 1
    assert "10 to 1024 characters" in capsys.readouterr().err
    assert cli(["users", "list"]) == 0
    users = json.loads(capsys.readouterr().out)["users"]
    assert [(user["username"], user["role"], user["disabled"]) for user in users] == [
        ("carol", "admin", False)
    ]
    assert cli(["users", "disable", "carol"]) == 0
    capsys.readouterr()
    with fleet_app(fleet_dsn, tmp_path / "data", score_on_ingest=False) as app:
        assert log_in(app.test_client(), "carol", password).status_code == 401


# -------------------------------------------------------------------------------- pages with data


@pytest.fixture(scope="module")
def populated(
    server_dsn: str, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A populated fleet (fleet_helpers.populated_fleet), shared by the tests below (read-mostly)."""
    with populated_fleet(server_dsn, migrated_template, tmp_path_factory.mktemp("data"), PASSWORD) as fleet:
        yield fleet


@pytest.fixture
def populated_client(populated: dict[str, Any]) -> FlaskClient:
    client: FlaskClient = populated["app"].test_client()
    assert log_in(client, "ana").status_code == 302
    return client


def test_rollups_sum_every_batch_once(populated: dict[str, Any]) -> None:
    dsn = populated["dsn"]
    app = populated["app"]
    again = roll_up_pending(app.extensions["fleet"].db, app.extensions["fleet"].settings)
    assert again.batches == 0  # everything was rolled up, nothing twice
    flows = query(dsn, "SELECT count(*), sum(bytes_sent), sum(bytes_received) FROM flows")[0]
    for table in (
        "traffic_hourly",
        "app_hourly",
        "destination_hourly",
        "host_apps_daily",
        "host_destinations_daily",
    ):
        rolled = query(dsn, f"SELECT sum(flow_rows), sum(bytes_sent), sum(bytes_received) FROM {table}")[0]
        assert rolled == flows, table
    per_host = query(
        dsn,
        "SELECT h.host_identifier, sum(t.bytes_sent) FROM traffic_hourly t JOIN hosts h ON h.id = t.host_id "
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
    )
    assert per_host[0][0] == HOSTS[3]  # the exfiltrating host sent the most
    batches = query(dsn, "SELECT count(*) FROM ingest_batches WHERE flow_rows > 0")[0][0]
    assert query(dsn, "SELECT count(*) FROM rolled_batches") == [(batches,)]


def test_overview_shows_traffic_alerts_talkers_and_agents(populated_client: FlaskClient) -> None:
    page = populated_client.get("/?hours=72").get_data(as_text=True)
    assert HOSTS[3] in page  # top host
    assert "/usr/bin/rclone" in page and "198.51.100.200" in page  # top application and destination
    assert 'data-chart="traffic-data"' in page and 'data-chart="alerts-data"' in page
    traffic = json.loads(re.search(r'id="traffic-data">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert sum(traffic["datasets"][0]["data"]) > 135_000_000  # the exfiltration's bytes are in
    agents = re.search(r"<h2>Agents</h2>(.*?)</table>", page, re.S).group(1)  # type: ignore[union-attr]
    rows = re.findall(r"<tr><td>(\w+)</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>", agents)
    assert ("on", "1", "42") in rows and ("unknown", "9", "0") in rows  # network states and spool backlog


def test_alert_list_filters_sorts_and_opens_the_detail(
    populated: dict[str, Any], populated_client: FlaskClient
) -> None:
    alert_id = populated["alert_id"]
    listing = populated_client.get(
        "/alerts?severity=low&severity=medium&severity=high&severity=critical&sort=score"
    )
    text = listing.get_data(as_text=True)
    assert listing.status_code == 200 and f"/alerts/{alert_id}" in text and "45.0 MB" in text
    assert f"/alerts/{alert_id}" in populated_client.get(f"/alerts?host={HOSTS[3][:5]}&q=198.51").get_data(
        as_text=True
    )
    assert f"/alerts/{alert_id}" not in populated_client.get("/alerts?q=nothing-like-this").get_data(
        as_text=True
    )
    detail = populated_client.get(f"/alerts/{alert_id}").get_data(as_text=True)
    assert "never seen before on any of 10 hosts" in detail
    assert "198.51.100.200" in detail and "/usr/bin/rclone" in detail and "cc" * 32 in detail
    series = json.loads(re.search(r'id="series-data">(.*?)</script>', detail, re.S).group(1))  # type: ignore[union-attr]
    sets = {dataset["label"]: dataset["data"] for dataset in series["datasets"]}
    marked = [value for value in sets["anomalous window"] if value is not None]
    assert marked == [45_000_000] * 3  # the three anomalous windows are marked on the chart
    assert sum(sets["sent (all destinations)"]) > sum(sets["sent to 198.51.100.200"]) == 135_000_000
    assert len(series["labels"]) > 3  # the application's other windows around it give the context


def test_triage_and_bulk_triage_change_state(
    populated: dict[str, Any], populated_client: FlaskClient
) -> None:
    dsn, alert_id = populated["dsn"], populated["alert_id"]
    token = page_csrf(populated_client, f"/alerts/{alert_id}")
    response = populated_client.post(
        f"/alerts/{alert_id}", data={"csrf_token": token, "status": "false_positive", "note": "backup job"}
    )
    assert response.status_code == 302
    assert query(dsn, "SELECT status, note, status_changed_by FROM alerts WHERE id = %s", (alert_id,)) == [
        ("false_positive", "backup job", "ana")
    ]
    assert "marked false positive" in populated_client.get(f"/alerts/{alert_id}").get_data(as_text=True)
    assert (
        populated_client.post(f"/alerts/{alert_id}", data={"csrf_token": token, "status": "gone"}).status_code
        == 400
    )
    ids = [row[0] for row in query(dsn, "SELECT id FROM alerts ORDER BY id LIMIT 3")]
    bulk = populated_client.post(
        "/alerts/bulk",
        data={
            "csrf_token": token,
            "status": "acknowledged",
            "alert_id": [str(i) for i in ids],
            "back": "/alerts?sort=score",
        },
    )
    assert bulk.status_code == 302 and bulk.headers["Location"] == "/alerts?sort=score"
    assert query(dsn, "SELECT DISTINCT status FROM alerts WHERE id = ANY(%s)", (ids,)) == [("acknowledged",)]
    assert (
        populated_client.post("/alerts/bulk", data={"csrf_token": token, "status": "resolved"}).status_code
        == 400
    )


def test_hosts_list_and_detail(populated_client: FlaskClient, populated: dict[str, Any]) -> None:
    listing = populated_client.get("/hosts?hours=72").get_data(as_text=True)
    assert all(host in listing for host in HOSTS) and "10 matching" in listing
    assert HOSTS[3] in populated_client.get(f"/hosts?q={HOSTS[3]}").get_data(as_text=True)
    (host_id,) = query(populated["dsn"], "SELECT id FROM hosts WHERE host_identifier = %s", (HOSTS[3],))[0]
    detail = populated_client.get(f"/hosts/{host_id}?hours=72").get_data(as_text=True)
    assert "/usr/bin/rclone" in detail and ("cc" * 32)[:16] in detail  # applications with their hashes
    assert "198.51.100.200" in detail and "151.101." in detail  # destinations
    assert "42 lines waiting" in detail and "ebpf" in detail  # agent status
    assert "host-traffic-data" in detail and "never seen before" in detail  # chart and its alert


def test_flows_explorer_filters_pages_and_exports(
    populated_client: FlaskClient, populated: dict[str, Any]
) -> None:
    end = populated["end"]
    window = f"since={end - 86400}&until={end + 3600}"
    page = populated_client.get(f"/flows?{window}&remote=198.51.100.0/24").get_data(as_text=True)
    assert page.count("198.51.100.200:443") == 3
    assert "45.0 MB" in page  # byte counts in words
    filtered = populated_client.get(f"/flows?{window}&host={HOSTS[0]}&port=53&protocol=udp").get_data(
        as_text=True
    )
    assert "systemd-resolved" in filtered and "rclone" not in filtered and "firefox" not in filtered
    first = populated_client.get(f"/flows?{window}&host={HOSTS[0]}").get_data(as_text=True)
    next_url = re.search(r'href="(/flows\?[^"]*after=[^"]+)"', first)
    assert next_url, "a full page links the next one"
    second = populated_client.get(next_url.group(1).replace("&amp;", "&")).get_data(as_text=True)
    first_rows = set(re.findall(r"<tr>(.*?)</tr>", first, re.S)[1:])
    second_rows = set(re.findall(r"<tr>(.*?)</tr>", second, re.S)[1:])
    assert second_rows and not first_rows & second_rows  # keyset pages do not overlap
    export = populated_client.get(f"/flows.csv?{window}&host={HOSTS[0]}")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    assert "attachment" in export.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    expected = query(
        populated["dsn"],
        "SELECT count(*) FROM flows f JOIN hosts h ON h.id = f.host_id WHERE h.host_identifier = %s "
        "AND window_start >= %s AND window_start < %s",
        (HOSTS[0], end - 86400, end + 3600),
    )[0][0]
    assert len(table) == expected > 100 and {row["host_identifier"] for row in table} == {HOSTS[0]}
    assert populated_client.get(f"/flows?{window}&host=no-such-host").status_code == 200


def test_models_page_shows_figures_and_promotes(populated: dict[str, Any]) -> None:
    client = populated["app"].test_client()
    assert log_in(client, "root").status_code == 302
    page = client.get("/models").get_data(as_text=True)
    assert "Model 1" in page and "ensemble" in page and "hist-1-data" in page and "Retrain now" in page
    token = csrf_of(page)
    assert client.post("/models/1/promote", data={"csrf_token": token}).status_code == 302
    assert client.post("/models/99/promote", data={"csrf_token": token}).status_code == 404
    rollback = client.post("/models/rollback", data={"csrf_token": token})
    assert rollback.status_code == 409 and "no earlier model" in rollback.get_data(as_text=True)


def test_the_demo_command_populates_a_running_service(
    fleet_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`demo` (the README's main command runs it): a simulated fleet with every attack through the
    service's real HTTP ingest, a model trained on the days before the attacks, alerts, an admin."""
    from werkzeug.serving import make_server  # noqa: PLC0415

    from tests.fleet_helpers import SECRET  # noqa: PLC0415

    monkeypatch.setenv("FLEET_DATABASE_URL", fleet_dsn)
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FLEET_TRAINING_FOLDS", "3")
    monkeypatch.setenv("FLEET_ENROLL_SECRET", SECRET)
    with fleet_app(fleet_dsn, tmp_path / "data", score_on_ingest=False) as app:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_port}"
            assert cli(["demo", "--url", url, "--hosts", "6", "--days", "2.5"]) == 0
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
        captured = capsys.readouterr()
        summary = json.loads(captured.out)
        assert summary["hosts"] == 6 and len(summary["attacks"]) == 7 and summary["new_alerts"] >= 7
        password = captured.err.rsplit("password: ", 1)[1].split()[0]
        assert log_in(app.test_client(), "admin", password).status_code == 302
    attack_hosts = {attack["host"] for attack in summary["attacks"]}
    alerted = {
        row[0]
        for row in query(fleet_dsn, "SELECT h.host_identifier FROM alerts a JOIN hosts h ON h.id = a.host_id")
    }
    # most attacked hosts are alerted on (a 6-host, 1.5-day training is small: the detection targets
    # are checked on larger fleets in test_evaluate)
    assert len(attack_hosts & alerted) >= len(attack_hosts) - 1
    assert query(fleet_dsn, "SELECT count(*) FROM rolled_batches") == query(
        fleet_dsn, "SELECT count(*) FROM ingest_batches WHERE flow_rows > 0"
    )
    monkeypatch.delenv("FLEET_ENROLL_SECRET")
    assert cli(["demo", "--url", "http://127.0.0.1:9"]) == 1
    assert "FLEET_ENROLL_SECRET" in capsys.readouterr().err
