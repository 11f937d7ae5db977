"""Detection against PostgreSQL: train and register models, promote and roll back, score batches.

The I/O edge around the pure :mod:`fleet_analytics.analytics` package. Every statement is a named
file in ``sql/fleet/``; frames are read with ``COPY (SELECT ...) TO STDOUT`` as CSV (fast for millions
of rows) and parsed by pandas.

Scoring works on ingested batches. :func:`score_pending` locks a set of unscored batches
(``FOR UPDATE SKIP LOCKED``: two workers never take the same one), scores their flow windows with the
active model, writes the alerts and one ``scored_batches`` row per batch, all in one transaction. A
worker killed halfway commits nothing, and the batches stay pending for the next run. Without an active
model nothing is claimed: the batches wait until the first model is trained.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import psycopg2.extensions

from fleet_analytics.analytics import model as models
from fleet_analytics.analytics.alerts import (
    WINDOW_COLUMNS,
    AlertDraft,
    AlertPolicy,
    RecentAlert,
    draft_alerts,
    triage_drafts,
)
from fleet_analytics.analytics.features import UNIT_KEYS, flow_windows, history_windows
from fleet_analytics.config import ConfigError, Settings, key_file
from fleet_analytics.db import Database, load_sql
from fleet_analytics.ingest.store import copy_field

log = logging.getLogger(__name__)

TEXT_COLUMNS: Final = (
    "process_name",
    "process_path",
    "process_sha256",
    "username",
    "protocol",
    "direction",
    "remote_address",
    "remote_hostname",
    "app",
)
KEY_FILE: Final = "model.key"


class DetectionError(RuntimeError):
    """A detection command cannot go on; the message says why and what to do."""


def model_key(settings: Settings) -> bytes:
    """The key that signs model artifacts: FLEET_MODEL_KEY, else a random key kept in the data dir."""
    if settings.model_key:
        return settings.model_key.encode("utf-8")
    try:
        key = key_file(Path(settings.data_dir) / KEY_FILE, when_short="models must then be retrained")
    except ConfigError as exc:
        raise DetectionError(str(exc)) from None
    return key.encode("utf-8")


def read_frame(cur: psycopg2.extensions.cursor, name: str, params: dict[str, Any]) -> pd.DataFrame:
    """The rows of the named SELECT as a DataFrame, through COPY ... TO STDOUT (CSV)."""
    query = cur.mogrify(load_sql(name).strip().rstrip(";"), params).decode("utf-8")
    buffer = io.BytesIO()
    cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)", buffer)
    buffer.seek(0)
    head = buffer.getvalue()[:4096].split(b"\n", 1)[0].decode("utf-8").split(",")
    dtypes = {column: str for column in head if column in TEXT_COLUMNS}
    frame = pd.read_csv(buffer, dtype=dtypes, keep_default_na=False, na_filter=False)
    return frame


def _jsonable(value: Any) -> Any:
    return json.loads(
        json.dumps(value, default=lambda item: item.item() if hasattr(item, "item") else str(item))
    )


# ------------------------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    model_id: int
    promoted: bool
    rows: int
    windows: int
    seconds: float
    threshold: float
    validation: dict[str, Any]
    promotion_note: str


def _judged(cur: psycopg2.extensions.cursor, since: int, until: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    judged = read_frame(cur, "judged_windows", {"since": since, "until": until})
    if judged.empty:
        empty = pd.DataFrame(columns=list(UNIT_KEYS))
        return empty, empty
    normal = judged["normal"].astype(str).str.lower().isin(["t", "true"])
    return judged.loc[normal, list(UNIT_KEYS)], judged.loc[~normal, list(UNIT_KEYS)]


def train_and_register(
    db: Database,
    settings: Settings,
    *,
    until: int | None = None,
    days: float | None = None,
    detector: str | None = None,
    contamination: float | None = None,
    reason: str = "cli",
    promote_when: str = "auto",
    actor: str = "cli",
) -> TrainResult:
    """Train on the flows of ``days`` ending at ``until`` (now), register the model, and promote it:
    ``promote_when`` is ``auto`` (when no model is active, or when its held-out alert rate is within
    the alert budget and FLEET_AUTO_PROMOTE is on), ``always`` or ``never``."""
    started = time.monotonic()
    end = int(until if until is not None else time.time())
    span = float(days if days is not None else settings.training_days)
    since = end - int(span * 86400)
    with db.transaction() as cur:
        rows = read_frame(cur, "detect_rows_period", {"since": since, "until": end})
        known_normal, known_bad = _judged(cur, since, end)
    if rows.empty:
        raise DetectionError(
            f"no flow rows between {since} and {end}: ingest traffic first (or `simulate`), then train"
        )
    windows = flow_windows(rows)
    try:
        model = models.train(
            windows,
            detector=detector or settings.detector,
            contamination=contamination if contamination is not None else settings.contamination,
            folds=settings.training_folds,
            known_normal=known_normal,
            known_bad=known_bad,
            lookback_seconds=settings.beacon_lookback_seconds,
        )
    except models.TrainingError as exc:
        raise DetectionError(str(exc)) from None
    artifact = models.dumps(model)
    sha256, signature = models.sign(artifact, model_key(settings))
    with db.transaction() as cur:
        cur.execute(
            load_sql("models_insert"),
            {
                "detector": model.detector_name,
                "parameters": json.dumps(_jsonable({**model.params, "contamination": model.contamination})),
                "features": list(model.features),
                "trained_from": int(windows["window_start"].min()),
                "trained_to": int(windows["window_start"].max()),
                "training_windows": len(windows),
                "training_rows": len(rows),
                "training_hosts": int(windows["host"].nunique()),
                "threshold": model.threshold,
                "training": json.dumps(_jsonable(model.training)),
                "validation": json.dumps(_jsonable(model.validation)),
                "artifact": psycopg2.Binary(artifact),
                "artifact_sha256": sha256,
                "artifact_hmac": signature,
                "reason": reason,
            },
        )
        model_id = int(cur.fetchone()[0])
    per_host_day = float(model.validation.get("above_threshold_per_host_day", 0.0))
    with db.transaction() as cur:
        cur.execute(load_sql("models_active_id"))
        active = cur.fetchone()
    if promote_when == "always":
        promoted, note = True, f"promoted by {actor}"
    elif promote_when == "never":
        promoted, note = False, "kept as a candidate"
    elif active is None:
        promoted, note = True, "the first model"
    elif not settings.auto_promote:
        promoted, note = False, "FLEET_AUTO_PROMOTE is off: promote it with `models promote`"
    elif per_host_day <= settings.alert_budget_per_host_day:
        promoted, note = True, f"held-out alert rate {per_host_day:g} per host-day is within the budget"
    else:
        promoted, note = (
            False,
            f"held-out alert rate {per_host_day:g} per host-day exceeds the budget "
            f"({settings.alert_budget_per_host_day}): kept as a candidate",
        )
    if promoted:
        promote(db, model_id, actor=actor, note=note)
    log.info("model %d trained on %d windows (%s); %s", model_id, len(windows), model.detector_name, note)
    return TrainResult(
        model_id=model_id,
        promoted=promoted,
        rows=len(rows),
        windows=len(windows),
        seconds=round(time.monotonic() - started, 3),
        threshold=model.threshold,
        validation=model.validation,
        promotion_note=note,
    )


def promote(db: Database, model_id: int, *, actor: str, note: str = "") -> int | None:
    """Make ``model_id`` the active model; returns the one it replaces. Recorded, and reversible."""
    with db.transaction() as cur:
        cur.execute(load_sql("models_lock"))
        cur.execute(load_sql("models_get_status"), {"model_id": model_id})
        row = cur.fetchone()
        if row is None:
            raise DetectionError(f"there is no model {model_id}: see `models list`")
        if row[0] == "active":
            return model_id
        cur.execute(load_sql("models_retire_active"))
        previous = cur.fetchone()
        previous_id = int(previous[0]) if previous else None
        cur.execute(load_sql("models_activate"), {"model_id": model_id})
        cur.execute(
            load_sql("model_promotion_insert"),
            {"model_id": model_id, "previous_model_id": previous_id, "actor": actor, "note": note},
        )
        return previous_id


def rollback(db: Database, *, actor: str, note: str = "") -> int:
    """Return to the model active before the last promotion; returns its id."""
    with db.transaction() as cur:
        cur.execute(load_sql("model_promotion_last"))
        row = cur.fetchone()
    if row is None or row[1] is None:
        raise DetectionError("no earlier model to roll back to")
    previous = int(row[1])
    promote(db, previous, actor=actor, note=note or f"rollback from model {int(row[0])}")
    return previous


class ModelCache:
    """The active model of this process, loaded (and its signature checked) once per model id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: tuple[int, models.Model] | None = None

    def active(self, db: Database, key: bytes) -> tuple[int, models.Model] | None:
        with db.transaction() as cur:
            cur.execute(load_sql("models_active_id"))
            row = cur.fetchone()
        if row is None:
            return None
        model_id = int(row[0])
        with self._lock:
            if self._loaded is not None and self._loaded[0] == model_id:
                return self._loaded
        with db.transaction() as cur:
            cur.execute(load_sql("models_active"))
            found = cur.fetchone()
        if found is None:
            return None
        loaded_id, artifact, sha256, signature = found
        model = models.loads(bytes(artifact), sha256=sha256, signature=signature, key=key)
        with self._lock:
            self._loaded = (int(loaded_id), model)
            return self._loaded


# -------------------------------------------------------------------------------------------- scoring


@dataclass
class ScoreResult:
    model_id: int | None = None
    batches: int = 0
    rows: int = 0
    windows: int = 0
    anomalous: int = 0
    alerts_new: int = 0
    alerts_merged: int = 0
    alerts_suppressed: int = 0
    seconds: float = 0.0
    skipped: str = ""
    alert_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def policy_of(settings: Settings) -> AlertPolicy:
    return AlertPolicy(
        cooldown_seconds=settings.alert_cooldown_seconds,
        budget_per_host_day=settings.alert_budget_per_host_day,
        fanout_group=settings.alert_fanout_group,
    )


def _claim(
    cur: psycopg2.extensions.cursor, settings: Settings, batch_ids: Sequence[int] | None
) -> list[tuple[int, int, int, int, int]]:
    cur.execute(
        load_sql("detect_pending_batches"),
        {
            "lookback_hours": settings.score_lookback_hours,
            "batch_ids": list(batch_ids) if batch_ids is not None else None,
            "limit": max(1, settings.score_max_windows // 50),
        },
    )
    claimed: list[tuple[int, int, int, int, int]] = []
    rows_total = 0
    for batch_id, host_id, low, high, flow_rows in cur.fetchall():
        if claimed and rows_total + flow_rows > settings.score_max_windows:
            break  # the rest stay locked until commit, then are pending again
        claimed.append((int(batch_id), int(host_id), int(low or 0), int(high or 0), int(flow_rows)))
        rows_total += flow_rows
    return claimed


def _window_lines(alert_id: int, frame: pd.DataFrame) -> list[str]:
    columns = [frame[column].tolist() for column in WINDOW_COLUMNS if column != "host"]
    return [
        "\t".join([str(alert_id), *(copy_field(value) for value in values)])
        for values in zip(*columns, strict=True)
    ]


def _alert_params(draft: AlertDraft, model_id: int, threshold: float, status: str) -> dict[str, Any]:
    return {
        "host_id": int(draft.host),  # type: ignore[call-overload]
        "model_id": model_id,
        "dedup_key": draft.dedup_key,
        "app": draft.app,
        "process_name": draft.process_name,
        "process_path": draft.process_path,
        "process_sha256": draft.process_sha256,
        "username": draft.username,
        "protocol": draft.protocol,
        "remote_address": draft.remote_address,
        "service_port": draft.service_port,
        "destinations": draft.destinations,
        "first_window": draft.first_window,
        "last_window": draft.last_window,
        "windows": draft.windows,
        "score": draft.score,
        "threshold": threshold,
        "severity": draft.severity,
        "explanation": draft.explanation,
        "reasons": json.dumps(draft.reasons),
        "status": status,
    }


def _write_alerts(
    cur: psycopg2.extensions.cursor, triage: Any, model_id: int, threshold: float, result: ScoreResult
) -> None:
    lines: list[str] = []
    for status, drafts in (("new", triage.new), ("suppressed", triage.suppressed)):
        for draft in drafts:
            cur.execute(load_sql("alert_insert"), _alert_params(draft, model_id, threshold, status))
            alert_id = int(cur.fetchone()[0])
            result.alert_ids.append(alert_id)
            lines.extend(_window_lines(alert_id, draft.window_rows))
    for alert_id, draft in triage.merged:
        params = _alert_params(draft, model_id, threshold, "new")
        params["alert_id"] = alert_id
        cur.execute(load_sql("alert_merge"), params)
        lines.extend(_window_lines(alert_id, draft.window_rows))
    if lines:
        cur.execute(load_sql("alert_windows_stage"))
        data = ("\n".join(lines) + "\n").encode("utf-8")
        cur.copy_expert(load_sql("alert_windows_stage_copy"), io.BytesIO(data))
        cur.execute(load_sql("alert_windows_from_stage"))
    result.alerts_new += len(triage.new)
    result.alerts_merged += len(triage.merged)
    result.alerts_suppressed += len(triage.suppressed)


def score_pending(
    db: Database,
    settings: Settings,
    *,
    cache: ModelCache,
    batch_ids: Sequence[int] | None = None,
) -> ScoreResult:
    """Score unscored batches (these ``batch_ids`` only, when given) with the active model."""
    started = time.monotonic()
    result = ScoreResult()
    active = cache.active(db, model_key(settings))
    if active is None:
        result.skipped = "no active model: train one (`python -m fleet_analytics train`)"
        return result
    model_id, model = active
    result.model_id = model_id
    policy = policy_of(settings)
    with db.transaction() as cur:
        claimed = _claim(cur, settings, batch_ids)
        if not claimed:
            result.skipped = "nothing to score"
            return result
        cur.execute(
            load_sql("task_run_start"), {"task": "score", "detail": json.dumps({"model_id": model_id})}
        )
        run_id = int(cur.fetchone()[0])
        ids = [batch for batch, *_ in claimed]
        hosts = sorted({host for _b, host, *_ in claimed})
        low = min(item[2] for item in claimed)
        high = max(item[3] for item in claimed)
        rows = read_frame(
            cur, "detect_rows_batches", {"host_ids": hosts, "low": low, "high": high, "batch_ids": ids}
        )
        result.batches = len(claimed)
        result.rows = len(rows)
        per_batch: dict[int, tuple[int, int, float | None]] = {}
        if not rows.empty:
            windows = flow_windows(rows, carry=("batch_id",))
            addresses = sorted(pd.unique(windows["remote_address"]).tolist())
            history_rows = read_frame(
                cur,
                "detect_rows_history",
                {
                    "host_ids": hosts,
                    "since": low - model.lookback_seconds,
                    "before": high + 1,
                    "addresses": addresses,
                    "batch_ids": ids,
                },
            )
            history = history_windows(history_rows) if not history_rows.empty else None
            scored = model.score(windows, history=history)
            result.windows = len(scored)
            result.anomalous = int(scored["anomalous"].sum())
            for batch_id, group in scored.groupby("batch_id"):
                per_batch[int(batch_id)] = (
                    len(group),
                    int(group["anomalous"].sum()),
                    float(group["score"].max()),
                )
            drafts = draft_alerts(scored, model, policy)
            if drafts:
                first = min(draft.first_window for draft in drafts)
                cur.execute(
                    load_sql("alerts_recent"), {"host_ids": hosts, "since": first - policy.cooldown_seconds}
                )
                recent = [RecentAlert(int(i), int(h), str(k), int(w)) for i, h, k, w in cur.fetchall()]
                cur.execute(
                    load_sql("alerts_created_per_day"), {"host_ids": hosts, "since": first // 86400 * 86400}
                )
                created: dict[tuple[Hashable, int], int] = {
                    (int(h), int(d)): int(n) for h, d, n in cur.fetchall()
                }
                triage = triage_drafts(drafts, recent, created, policy)
                _write_alerts(cur, triage, model_id, model.threshold, result)
        for batch_id, *_rest in claimed:
            windows_count, anomalous, max_score = per_batch.get(batch_id, (0, 0, None))
            cur.execute(
                load_sql("detect_scored_batch"),
                {
                    "batch_id": batch_id,
                    "model_id": model_id,
                    "run_id": run_id,
                    "windows": windows_count,
                    "anomalous": anomalous,
                    "max_score": None if max_score is None or not np.isfinite(max_score) else max_score,
                    "skipped": "" if windows_count else "no flow rows left (retention)",
                },
            )
        result.seconds = round(time.monotonic() - started, 3)
        detail = {key: value for key, value in result.as_dict().items() if key != "alert_ids"}
        cur.execute(
            load_sql("task_run_finish"), {"run_id": run_id, "status": "done", "detail": json.dumps(detail)}
        )
    return result


def pending_counts(db: Database, settings: Settings) -> tuple[int, int]:
    """(batches waiting within the look-back, batches older than it never scored)."""
    with db.transaction() as cur:
        cur.execute(load_sql("detect_pending_count"), {"lookback_hours": settings.score_lookback_hours})
        within, older = cur.fetchone()
    return int(within), int(older)
