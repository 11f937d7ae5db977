"""Celery for real: `python -m fleet_analytics worker` against a real Redis (the embedded one) and a real
PostgreSQL; tasks enqueued by the log endpoint and run by the worker; a pool process killed mid-task."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from celery.schedules import crontab
from flask import Flask
from flask.testing import FlaskClient

from fleet_analytics import create_app
from fleet_analytics.config import load_settings
from fleet_analytics.detection import train_and_register
from fleet_analytics.embedded import EmbeddedRedis
from fleet_analytics.tasks import RETRAIN, SCORE_BATCHES, SCORE_PENDING, beat_schedule, celery_config
from tests.fleet_helpers import SECRET, query
from tests.test_detection import HOSTS, Fleet, exfiltration, normal_rows

ROOT = Path(__file__).resolve().parent.parent
MODEL_KEY = "test-model-key-" + "x" * 32
DAY = 86400


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Worker:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fleet_analytics", "worker", "--concurrency", "1"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        wait_for(lambda: " ready." in self.output() or self.process.poll() is not None, 90, "the worker")
        assert self.process.poll() is None, self.output()

    def children(self) -> list[int]:
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # short: a unix socket path must stay under 108 bytes
    path = Path(tempfile.mkdtemp(prefix="fleet-t-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def redis(data_dir: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(data_dir) as server:
        yield server


@pytest.fixture
def env(fleet_dsn: str, data_dir: Path) -> dict[str, str]:
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("FLEET_")},
        "FLEET_DATABASE_URL": fleet_dsn,
        "FLEET_DATA_DIR": str(data_dir),
        "FLEET_MODEL_KEY": MODEL_KEY,
        "FLEET_TRAINING_FOLDS": "3",
        "FLEET_TRAINING_DAYS": "2.2",
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture
def worker(redis: EmbeddedRedis, env: dict[str, str], tmp_path: Path) -> Iterator[Worker]:
    running = Worker(env, tmp_path / "worker.log")
    running.wait_ready()
    yield running
    assert running.stop() == 0, running.output()


@pytest.fixture
def app(fleet_dsn: str, data_dir: Path) -> Iterator[Flask]:
    app = create_app(
        {
            "database_url": fleet_dsn,
            "data_dir": str(data_dir),
            "enroll_secret": SECRET,
            "model_key": MODEL_KEY,
            "training_folds": 3,
        }
    )
    yield app
    app.extensions["fleet"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def send_task(app: Flask, name: str, *args: Any, **kwargs: Any) -> Any:
    queue = app.extensions["fleet"].queue
    return queue._app().send_task(name, args=list(args), kwargs=kwargs)


def test_worker_trains_and_scores_what_the_log_endpoint_enqueues(
    worker: Worker, app: Flask, client: FlaskClient, fleet_dsn: str
) -> None:
    end = int(time.time()) // 600 * 600 - 3600
    fleet = Fleet(client)
    for index, host in enumerate(HOSTS):
        fleet.send(host, normal_rows(index, end - 2 * DAY, end, seed=1))
    queue = app.extensions["fleet"].queue
    assert queue.sent == len(HOSTS)  # one score request per stored batch, accepted by the broker
    # no model yet: the worker leaves the batches pending
    retrained = send_task(app, RETRAIN, reason="test").get(timeout=120)
    assert retrained["trained"] and retrained["promoted"], retrained
    caught_up = send_task(app, SCORE_PENDING).get(timeout=120)
    assert caught_up["batches"] == len(HOSTS) and caught_up["model_id"] == retrained["model_id"]

    fleet.send(HOSTS[3], exfiltration(end + 600))  # enqueues fleet.score_batches for it
    alert = wait_for(
        lambda: query(
            fleet_dsn, "SELECT id, explanation FROM alerts WHERE host(remote_address) = '198.51.100.200'"
        ),
        60,
        "the worker to score the new batch",
    )
    assert "45.0 MB" in alert[0][1]
    assert query(fleet_dsn, "SELECT count(*) FROM scored_batches") == [(len(HOSTS) + 1,)]
    assert query(fleet_dsn, "SELECT count(*) FROM ingest_batches b WHERE NOT EXISTS "
                 "(SELECT 1 FROM scored_batches s WHERE s.batch_id = b.id)") == [(0,)]  # fmt: skip


def test_a_pool_process_killed_mid_task_loses_nothing(
    worker: Worker, app: Flask, client: FlaskClient, fleet_dsn: str
) -> None:
    end = int(time.time()) // 600 * 600 - 3600
    fleet = Fleet(client)
    app.extensions["fleet"].queue.available = lambda: False  # enqueue by hand below
    for index, host in enumerate(HOSTS):
        fleet.send(host, normal_rows(index, end - 2 * DAY, end, seed=1))
    services = app.extensions["fleet"]
    train_and_register(services.db, services.settings, days=2.2)
    (batch_id,) = query(fleet_dsn, "SELECT min(id) FROM ingest_batches")[0]

    blocker = psycopg2.connect(fleet_dsn)
    cur = blocker.cursor()
    cur.execute("LOCK TABLE scored_batches IN ACCESS EXCLUSIVE MODE")  # the task will wait on it
    result = send_task(app, SCORE_BATCHES, [batch_id])
    waiting = wait_for(
        lambda: query(
            fleet_dsn,
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = 'fleet_analytics' AND wait_event_type = 'Lock'",
        ),
        60,
        "the task to block on the lock",
    )
    children = worker.children()
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)  # the pool process dies mid-task
    # its server backend lives on, waiting on the lock, until PostgreSQL notices the dead client (TCP
    # keepalive, or its next write); end it now, as that would, so the re-run does not race it
    for (pid,) in waiting:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_for(lambda: worker.children() and worker.children() != children, 60, "a new pool process")
    blocker.rollback()
    blocker.close()
    outcome = result.get(timeout=120)  # re-queued (acks late, rejected on worker loss) and run again
    assert outcome["batches"] == 1
    assert query(fleet_dsn, "SELECT count(*) FROM scored_batches WHERE batch_id = %s", (batch_id,)) == [(1,)]
    assert "WorkerLostError" in worker.output() or "SIGKILL" in worker.output()


def test_beat_schedule_and_task_settings() -> None:
    settings = load_settings({"retrain_hour": 3, "score_interval_seconds": 30}, environ={})
    schedule = beat_schedule(settings)
    nightly = schedule["retrain-nightly"]
    assert nightly["task"] == RETRAIN and nightly["kwargs"] == {"reason": "nightly"}
    assert nightly["schedule"] == crontab(minute=0, hour=3)
    assert schedule["score-pending"] == {"task": SCORE_PENDING, "schedule": 30.0}
    config = celery_config(settings, "redis://127.0.0.1:1/0")
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1 and config["accept_content"] == ["json"]


def test_without_a_broker_the_batch_waits_for_the_catch_up(
    app: Flask, client: FlaskClient, fleet_dsn: str, data_dir: Path
) -> None:
    # no embedded Redis runs in data_dir: nothing is sent, and nothing fails
    end = int(time.time()) // 600 * 600
    Fleet(client).send(HOSTS[0], normal_rows(0, end - 1200, end, seed=3))
    queue = app.extensions["fleet"].queue
    assert (queue.sent, queue.failed) == (0, 0)
    assert not (data_dir / "redis" / "redis.sock").exists()
    assert query(fleet_dsn, "SELECT count(*) FROM ingest_batches") == [(1,)]


def test_embedded_redis_is_shared_and_stopped_by_its_owner(data_dir: Path) -> None:
    owner = EmbeddedRedis(data_dir)
    url = owner.start()
    assert url == f"redis+socket://{data_dir / 'redis' / 'redis.sock'}"
    guest = EmbeddedRedis(data_dir)
    assert guest.start() == url and guest._process is None  # reused, not started again
    guest.stop()
    assert owner._answers()
    owner.stop()
    assert not owner._answers()
