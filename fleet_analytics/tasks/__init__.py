"""Celery for the fleet service: the app wired into Flask, the beat schedule, and the thin tasks.

Every task runs inside the Flask app context and takes ids or plain values, never objects; the work
and its progress live in PostgreSQL (``scored_batches``, ``task_runs``), so a task is safe to run
twice and a worker killed mid-task loses nothing: tasks are acknowledged late and re-queued when a
worker dies, and what they did not commit is still pending for the next run.

Tasks (explicit names, see :mod:`fleet_analytics.tasks.jobs`):
- ``fleet.score_batches`` (batch ids): enqueued by the log endpoint after each stored batch.
- ``fleet.score_pending``: the catch-up, every FLEET_SCORE_INTERVAL_SECONDS (beat).
- ``fleet.retrain`` (reason): nightly at FLEET_RETRAIN_HOUR UTC (beat), and on demand.
- ``fleet.maintain``: flow partitions ahead and retention, hourly (beat).

The broker is FLEET_BROKER_URL, or an embedded Redis in the data directory (started by whichever
process needs it first).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from celery import Celery, Task
from celery.schedules import crontab
from flask import Flask

from fleet_analytics.config import Settings

log = logging.getLogger(__name__)

SCORE_BATCHES: Final = "fleet.score_batches"
SCORE_PENDING: Final = "fleet.score_pending"
RETRAIN: Final = "fleet.retrain"
MAINTAIN: Final = "fleet.maintain"
SCORE_TASK_EXPIRES: Final = 3600  # a score request older than this is left to the catch-up


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "score-pending": {"task": SCORE_PENDING, "schedule": float(settings.score_interval_seconds)},
        "retrain-nightly": {
            "task": RETRAIN,
            "schedule": crontab(minute=0, hour=settings.retrain_hour),
            "kwargs": {"reason": "nightly"},
        },
        "maintain-hourly": {"task": MAINTAIN, "schedule": crontab(minute=17)},
    }


def celery_config(settings: Settings, broker_url: str) -> dict[str, Any]:
    return {
        "broker_url": broker_url,
        "result_backend": broker_url,
        "result_expires": 24 * 3600,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,  # acknowledged after the work is committed
        "task_reject_on_worker_lost": True,  # a killed worker's task goes back to the queue
        "worker_prefetch_multiplier": 1,
        "task_track_started": True,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": beat_schedule(settings),
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "broker_transport_options": {"visibility_timeout": 4 * 3600},
    }


def celery_init_app(app: Flask, broker_url: str) -> Celery:
    """The Celery app of a Flask app (Flask's documented pattern): every task runs in its context."""

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    settings: Settings = app.extensions["fleet"].settings
    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(celery_config(settings, broker_url))
    celery.set_default()
    from fleet_analytics.tasks import jobs  # noqa: F401, PLC0415 - registers the tasks on this app

    app.extensions["celery"] = celery
    return celery
