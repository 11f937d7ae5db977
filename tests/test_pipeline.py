"""The whole detection pipeline on a simulated fleet: result logs through the real ingest API into a
real PostgreSQL, a model trained on the clean days, the attack day scored, and the alerts checked
against the labelled injections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from fleet_analytics.detection import ModelCache, pending_counts, score_pending, train_and_register
from fleet_analytics.simulate import SCENARIOS, Simulation, feed, simulate
from tests.fleet_helpers import SECRET, fleet_app, query

DAY = 86400


@pytest.fixture
def app(fleet_dsn: str, tmp_path: Path) -> Iterator[Flask]:
    # the simulated week and a day end now: accept windows that old
    with fleet_app(fleet_dsn, tmp_path / "data", max_row_age_seconds=9 * DAY) as app:
        yield app


def test_a_simulated_week_trains_and_the_attacks_become_explained_alerts(app: Flask, fleet_dsn: str) -> None:
    sim: Simulation = simulate(hosts=6, days=8, seed=11)  # a normal week, then attacks in the last day
    client = app.test_client()

    def post(path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        answer = client.post(path, data=body, headers=headers)
        document = answer.get_json(silent=True)
        return answer.status_code, document if isinstance(document, dict) else {}

    report = feed(sim, post, enroll_secret=SECRET, batch_rows=2000)
    assert report.stored == len(sim.flows) and report.quarantined == 0

    services = app.extensions["fleet"]
    db, settings = services.db, services.settings
    attack_start = min(injection.start for injection in sim.injections)
    assert attack_start >= sim.end - DAY
    trained = train_and_register(db, settings, until=attack_start, days=7, reason="test")
    assert trained.promoted and trained.windows > 10_000

    cache = ModelCache()
    while score_pending(db, settings, cache=cache).batches:
        pass
    assert pending_counts(db, settings)[0] == 0

    alerts = query(
        fleet_dsn,
        "SELECT h.host_identifier, a.first_window, a.last_window, a.status, a.explanation, a.severity "
        "FROM alerts a JOIN hosts h ON h.id = a.host_id WHERE a.last_window >= %s",
        (attack_start,),
    )
    found = []
    for injection in sim.injections:
        mine = [
            alert
            for alert in alerts
            if alert[0] == injection.host_identifier
            and alert[1] < injection.end
            and alert[2] >= injection.start
            and alert[3] in ("new", "suppressed")
        ]
        if mine:
            found.append(injection.scenario)
            assert all(text and "otherwise ordinary" not in text for *_, text, _severity in mine), mine
    assert set(found) == set(SCENARIOS), f"found {sorted(found)}"
    # at most the budget of new alerts per host on the attack day
    per_host: dict[str, int] = {}
    for host, *_rest, status, _text, _severity in alerts:
        per_host[host] = per_host.get(host, 0) + (status == "new")
    assert max(per_host.values()) <= 2 * settings.alert_budget_per_host_day  # the attack day spans 2 UTC days
