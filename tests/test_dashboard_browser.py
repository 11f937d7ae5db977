"""The dashboard in a real headless Chromium (the system's, driven by Playwright) against the service
served over real HTTP on a populated fleet: log in, the overview's charts drawn, an alert opened and
marked false positive, flows filtered and exported as CSV, no console errors (Content-Security-Policy
violations included). Screenshots are kept in test-artifacts/dashboard/.

Skipped, with the reason, where Chromium or Playwright is missing (``apt-get install chromium``)."""

from __future__ import annotations

import csv
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.fleet_helpers import populated_fleet, query
from tests.test_detection import HOSTS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "dashboard"
PASSWORD = "correct horse battery"

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="pip install playwright (requirements.txt)"
)
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="no Chromium: apt-get install chromium (the browser tests drive it)"
)


@pytest.fixture(scope="module")
def served(
    server_dsn: str, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The populated fleet's service on a real HTTP port (werkzeug, threaded)."""
    with populated_fleet(server_dsn, migrated_template, tmp_path_factory.mktemp("data"), PASSWORD) as fleet:
        server = make_server("127.0.0.1", 0, fleet["app"], threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield {**fleet, "url": f"http://127.0.0.1:{server.server_port}"}
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, served: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.problems = problems
    try:
        yield tab
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Any, url: str, username: str = "ana") -> None:
    page.goto(f"{url}/")
    assert "/login" in page.url  # the overview needs a session
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def test_an_analyst_triages_an_alert_in_the_browser(page: Any, served: dict[str, Any]) -> None:
    url, alert_id = served["url"], served["alert_id"]
    page.goto(f"{url}/login")
    shot(page, "login")
    log_in(page, url)
    page.goto(f"{url}/?hours=72")
    page.wait_for_selector("canvas#traffic[data-drawn=true]")
    page.wait_for_selector("canvas#alerts[data-drawn=true]")
    assert page.locator("canvas#traffic").bounding_box()["height"] > 100
    assert HOSTS[3] in page.inner_text("main")
    shot(page, "overview")

    page.click("nav >> text=Alerts")
    page.wait_for_url(f"{url}/alerts")
    shot(page, "alerts")
    page.click(f"a[href='/alerts/{alert_id}'] >> nth=0")
    page.wait_for_url(f"{url}/alerts/{alert_id}")
    page.wait_for_selector("canvas#series[data-drawn=true]")
    assert "never seen before on any of 10 hosts" in page.inner_text(".explanation")
    shot(page, "alert")
    page.fill("textarea[name=note]", "the nightly offsite backup")
    page.click("button[value=false_positive]")
    page.wait_for_selector(".flash")
    assert "marked false positive" in page.inner_text(".flash")
    assert page.locator("button[value=false_positive]").is_disabled()
    status = query(
        served["dsn"], "SELECT status, note, status_changed_by FROM alerts WHERE id = %s", (alert_id,)
    )
    assert status == [("false_positive", "the nightly offsite backup", "ana")]
    assert page.problems == []


def test_flows_are_filtered_and_exported_in_the_browser(
    page: Any, served: dict[str, Any], tmp_path: Path
) -> None:
    url, end = served["url"], served["end"]
    log_in(page, url)
    page.goto(f"{url}/flows?since={end - 86400}&until={end + 3600}")
    page.fill("input[name=remote]", "198.51.100.0/24")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**remote=198.51.100.0%2F24**")
    rows = page.locator("table.flows tbody tr")
    assert rows.count() == 3
    assert all("198.51.100.200:443" in rows.nth(index).inner_text() for index in range(3))
    shot(page, "flows")
    with page.expect_download() as waiting:
        page.click("text=Export CSV")
    target = tmp_path / "flows.csv"
    waiting.value.save_as(str(target))
    with target.open(newline="") as handle:
        exported = list(csv.DictReader(handle))
    assert len(exported) == 3 and {row["remote_address"] for row in exported} == {"198.51.100.200"}
    assert {row["process_name"] for row in exported} == {"rclone"}
    assert page.problems == []


def test_every_page_loads_without_console_errors(page: Any, served: dict[str, Any]) -> None:
    url = served["url"]
    log_in(page, url, "root")
    (host_id,) = query(served["dsn"], "SELECT id FROM hosts WHERE host_identifier = %s", (HOSTS[3],))[0]
    for path, name in (
        ("/hosts", "hosts"),
        (f"/hosts/{host_id}?hours=72", "host"),
        ("/models", "models"),
        ("/packs", "packs"),
        ("/packs/edit?name=netflow", "pack-edit"),
        ("/nowhere", "not-found"),
    ):
        page.goto(f"{url}{path}")
        for canvas in page.locator("canvas[data-chart]").all():
            canvas.wait_for(state="attached")
        page.wait_for_load_state("networkidle")
        assert page.locator("canvas[data-chart]:not([data-drawn=true])").count() == 0, path
        shot(page, name)
    assert [problem for problem in page.problems if "404" not in problem] == []
