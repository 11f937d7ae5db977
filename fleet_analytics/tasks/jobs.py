"""The tasks: thin wrappers over :mod:`fleet_analytics.detection` and the maintenance functions."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import shared_task
from flask import current_app

from fleet_analytics.detection import DetectionError, ModelCache, score_pending, train_and_register
from fleet_analytics.rollups import delete_rollups_before, roll_up_pending
from fleet_analytics.services import Services
from fleet_analytics.tasks import MAINTAIN, RETRAIN, SCORE_BATCHES, SCORE_PENDING

log = logging.getLogger(__name__)

# per worker process: the active model stays loaded between tasks
_MODELS = ModelCache()


def _services() -> Services:
    services: Services = current_app.extensions["fleet"]
    return services


def _score(batch_ids: list[int] | None) -> dict[str, Any]:
    services = _services()
    totals: dict[str, Any] = {"batches": 0, "windows": 0, "alerts_new": 0, "alerts_merged": 0, "runs": 0}
    # the dashboard's rollups first: they need no model, and the overview should follow ingest
    rolled = roll_up_pending(services.db, services.settings)
    totals["rolled_up_batches"] = rolled.batches
    while True:
        result = score_pending(services.db, services.settings, cache=_MODELS, batch_ids=batch_ids)
        if result.batches == 0:
            totals["skipped"] = result.skipped
            break
        totals["runs"] += 1
        for key in ("batches", "windows", "alerts_new", "alerts_merged"):
            totals[key] += getattr(result, key)
    totals["model_id"] = result.model_id
    return totals


@shared_task(name=SCORE_BATCHES, acks_late=True)  # type: ignore[untyped-decorator]
def score_batches(batch_ids: list[int]) -> dict[str, Any]:
    """Score these batches now (already scored or locked ones are skipped)."""
    ids = [int(batch_id) for batch_id in batch_ids]
    return _score(ids)


@shared_task(name=SCORE_PENDING, acks_late=True)  # type: ignore[untyped-decorator]
def score_pending_task() -> dict[str, Any]:
    """Score every pending batch within the look-back."""
    return _score(None)


@shared_task(name=RETRAIN, acks_late=True)  # type: ignore[untyped-decorator]
def retrain(reason: str = "on demand", detector: str | None = None) -> dict[str, Any]:
    """Train a model on the last FLEET_TRAINING_DAYS and promote it when its check passes."""
    services = _services()
    started = time.monotonic()
    try:
        result = train_and_register(
            services.db, services.settings, reason=reason, detector=detector, actor=f"task ({reason})"
        )
    except DetectionError as exc:
        log.warning("retrain (%s) skipped: %s", reason, exc)
        return {"trained": False, "reason": str(exc)}
    log.info("retrain (%s): model %d in %.1f s", reason, result.model_id, time.monotonic() - started)
    return {"trained": True, **vars(result)}


@shared_task(name=MAINTAIN, acks_late=True)  # type: ignore[untyped-decorator]
def maintain() -> dict[str, Any]:
    """Flow partitions ahead, partitions past retention dropped, old batches and rollups deleted."""
    from fleet_analytics.ingest.store import (  # noqa: PLC0415
        delete_batches_before,
        drop_partitions_before,
        ensure_partitions,
    )

    services = _services()
    settings = services.settings
    now = time.time()
    created = ensure_partitions(services.db, now=now, ahead_days=settings.partitions_ahead_days, back_days=0)
    dropped = drop_partitions_before(services.db, (int(now) // 86400 - settings.flow_retention_days) * 86400)
    before = datetime.fromtimestamp(now, tz=UTC) - timedelta(days=settings.results_retention_days)
    deleted = delete_batches_before(services.db, before)
    rollups = delete_rollups_before(services.db, (int(now) // 86400 - settings.rollup_retention_days) * 86400)
    return {
        "partitions": created,
        "dropped": dropped,
        "batches_deleted": deleted,
        "rollup_rows_deleted": rollups,
    }
