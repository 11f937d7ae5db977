"""How well detection works: on the labelled simulator, and on the labelled public flow datasets.

**Simulator** (:func:`evaluate_simulation`). A fleet is simulated with attacks injected in its last
day only. The model is trained on the days before (the clean period), as the service trains it
(:func:`~fleet_analytics.analytics.model.train`); the last day is scored, and alerts are decided
hour by hour in time order as the service decides them (grouping, deduplication within the
cooldown, the daily budget per host). Reported:

- ROC-AUC and PR-AUC over the last day's flow windows (a window is positive when it holds a row of
  an injected attack);
- per scenario: whether each injection raised at least one alert (recall at the alert budget), and
  the share of its windows above the threshold;
- false alerts (alerts whose windows hold no attack row) per host per day and per 1,000 host-hours.

**Public datasets** (:func:`evaluate_dataset`). Network-level records without process fields (see
:mod:`fleet_analytics.analytics.datasets`), summed into flow windows (KDD has neither addresses nor
a clock, so there each record is its own window). The windows are split at random in two halves
(seeded); the second half is always the one scored. Two protocols:

- ``unsupervised`` (ADBench's): the profile and the detector are fitted on the whole first half
  *without its labels*, attacks included.
- ``clean``: fitted on the first half's normal windows only, as the service trains on a period
  taken as normal (and reviewed false positives). Not run with fewer than
  :data:`MIN_FIT_WINDOWS` normal windows.

ROC-AUC and PR-AUC are reported per window and per flow record (each record takes its window's
score), precision and recall at the detector's learned threshold, and ROC-AUC per attack class
(that class's windows against all normal windows).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from fleet_analytics.analytics import datasets as public
from fleet_analytics.analytics.alerts import AlertPolicy, RecentAlert, draft_alerts, triage_drafts
from fleet_analytics.analytics.detectors import make_detector
from fleet_analytics.analytics.features import FEATURES, UNIT_KEYS, featurize, fit_profile, flow_windows
from fleet_analytics.analytics.metrics import figures
from fleet_analytics.analytics.model import train
from fleet_analytics.simulate import SCENARIOS, simulate

log = logging.getLogger(__name__)

HOUR: Final = 3600
DAY: Final = 86400
# the simulated fleets end here unless told otherwise (a Thursday, 00:00 UTC): the same seed gives the
# same fleet and figures on every run; the attack day is a Wednesday, the training week holds a weekend
EVALUATION_END: Final = 1_795_651_200


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass(frozen=True)
class EvaluationSettings:
    detector: str = "ensemble"
    contamination: float = 0.0002
    folds: int = 7
    policy: AlertPolicy = field(default_factory=AlertPolicy)
    beacon_lookback_seconds: int = DAY


def decide_alerts(scored: pd.DataFrame, model: Any, policy: AlertPolicy) -> list[Any]:
    """Alerts as the service decides them: hour by hour in time order, with the cooldown and budget
    carried over. Returns the drafts that became new alerts (suppressed ones are not shown)."""
    recent: list[RecentAlert] = []
    created: dict[tuple[Hashable, int], int] = {}
    shown: list[Any] = []
    hours = scored["window_start"] // HOUR
    for _hour, chunk in scored.groupby(hours, sort=True):
        drafts = draft_alerts(chunk, model, policy)
        if not drafts:
            continue
        outcome = triage_drafts(drafts, recent, created, policy)
        for draft in outcome.new:
            alert_id = len(shown)
            shown.append(draft)
            recent.append(RecentAlert(alert_id, draft.host, draft.dedup_key, draft.last_window))
            created[(draft.host, draft.day)] = created.get((draft.host, draft.day), 0) + 1
        for alert_id, draft in outcome.merged:
            merged = shown[alert_id] if alert_id < len(shown) else None
            if merged is not None:
                merged.window_rows = pd.concat([merged.window_rows, draft.window_rows], ignore_index=True)
            recent.append(RecentAlert(alert_id, draft.host, draft.dedup_key, draft.last_window))
        for draft in outcome.suppressed:
            recent.append(RecentAlert(-1, draft.host, draft.dedup_key, draft.last_window))
    return shown


def evaluate_simulation(
    *,
    hosts: int = 50,
    days: float = 7.0,
    seed: int = 1,
    settings: EvaluationSettings | None = None,
    attacks: Sequence[str] = SCENARIOS,
    end: int = EVALUATION_END,
) -> dict[str, Any]:
    """Train on the clean days of a simulated fleet ending at ``end`` (epoch s), score its last day
    with attacks, report figures."""
    config = settings or EvaluationSettings()
    started = time.monotonic()
    simulation = simulate(hosts=hosts, days=days, seed=seed, attacks=attacks, end=end)
    rows = simulation.flows.rename(columns={"host_identifier": "host"})
    windows = flow_windows(rows, carry=("scenario",))
    cut = simulation.end - DAY
    clean = windows[windows["window_start"] < cut]
    test = windows[windows["window_start"] >= cut].reset_index(drop=True)
    if (clean["scenario"] != "").any():
        raise AssertionError("attack rows in the training period: the simulator must inject in the last day")
    generated = time.monotonic()
    model = train(
        clean, detector=config.detector, contamination=config.contamination, folds=config.folds, seed=seed
    )
    trained = time.monotonic()
    # scored hour by hour, each hour with the look-back before it, as the service scores batches
    parts = []
    for _hour, batch in test.groupby(test["window_start"] // HOUR, sort=True):
        begin = int(batch["window_start"].min())
        history = windows[
            (windows["window_start"] >= begin - config.beacon_lookback_seconds)
            & (windows["window_start"] < begin)
        ]
        parts.append(model.score(batch, history=history))
    scored = pd.concat(parts)
    labels = (scored["scenario"] != "").to_numpy().astype(int)
    window_figures = figures(labels, scored["score"].to_numpy(), alerts=scored["anomalous"].to_numpy())
    alerts = decide_alerts(scored, model, config.policy)
    scored_at = time.monotonic()

    key_index = pd.MultiIndex.from_frame(scored[list(UNIT_KEYS)])
    scenario_of = pd.Series(scored["scenario"].to_numpy(), index=key_index)
    scenario_of = scenario_of[~scenario_of.index.duplicated()]
    false_alerts = 0
    detected: dict[tuple[str, str], int] = {}
    alert_rows = []
    for alert in alerts:
        keys = pd.MultiIndex.from_frame(alert.window_rows[list(UNIT_KEYS)])
        found = scenario_of.reindex(keys).fillna("")
        names = sorted({name for name in found if name})
        if not names:
            false_alerts += 1
        for name in names:
            detected[(str(alert.host), name)] = detected.get((str(alert.host), name), 0) + 1
        alert_rows.append(
            {"host": alert.host, "scenarios": names, "severity": alert.severity, "text": alert.explanation}
        )
    per_scenario: dict[str, dict[str, Any]] = {}
    injections: list[dict[str, Any]] = []
    attack_windows = scored[scored["scenario"] != ""]
    for injection in simulation.injections:
        mine = attack_windows[
            (attack_windows["host"] == injection.host_identifier)
            & (attack_windows["scenario"] == injection.scenario)
        ]
        injections.append(
            {
                "scenario": injection.scenario,
                "host": injection.host_identifier,
                "detected": (injection.host_identifier, injection.scenario) in detected,
                "windows": len(mine),
                "windows_above_threshold": int(mine["anomalous"].sum()),
                "max_score_over_threshold": _round(float(mine["score"].max()) - model.threshold)
                if len(mine)
                else None,
            }
        )
    for row in injections:
        entry = per_scenario.setdefault(
            row["scenario"], {"injected": 0, "detected": 0, "windows": 0, "windows_above_threshold": 0}
        )
        entry["injected"] += 1
        entry["detected"] += int(row["detected"])
    for name, group in attack_windows.groupby("scenario"):
        entry = per_scenario.setdefault(
            str(name), {"injected": 0, "detected": 0, "windows": 0, "windows_above_threshold": 0}
        )
        entry["windows"] = len(group)
        entry["windows_above_threshold"] = int(group["anomalous"].sum())
    for entry in per_scenario.values():
        entry["recall"] = _round(entry["detected"] / entry["injected"]) if entry["injected"] else None
        entry["window_recall"] = (
            _round(entry["windows_above_threshold"] / entry["windows"]) if entry["windows"] else None
        )
    host_days = hosts * 1.0
    return {
        "data": {
            "hosts": hosts,
            "days": days,
            "seed": seed,
            "end": end,
            "rows": len(rows),
            "windows": len(windows),
            "training_windows": len(clean),
            "scored_windows": len(test),
            "attack_windows": int(labels.sum()),
        },
        "settings": {
            "detector": config.detector,
            "contamination": config.contamination,
            "folds": config.folds,
            "alert_budget_per_host_day": config.policy.budget_per_host_day,
            "alert_cooldown_seconds": config.policy.cooldown_seconds,
        },
        "windows": {
            "roc_auc": _round(window_figures.roc_auc),
            "pr_auc": _round(window_figures.pr_auc),
            "above_threshold": window_figures.alerts,
            "precision": _round(window_figures.precision_at_budget),
            "recall": _round(window_figures.recall_at_budget),
        },
        "alerts": {
            "total": len(alerts),
            "false": false_alerts,
            "false_per_host_day": _round(false_alerts / host_days),
            "false_per_1000_host_hours": _round(false_alerts / (hosts * 24) * 1000),
        },
        "scenarios": dict(sorted(per_scenario.items())),
        "injections": injections,
        "seconds": {
            "simulate": round(generated - started, 2),
            "train": round(trained - generated, 2),
            "score_and_alert": round(scored_at - trained, 2),
        },
        # one alert per scenario (its first), to read how each is explained
        "examples": [
            next(row for row in alert_rows if name in row["scenarios"])
            for name in sorted({name for row in alert_rows for name in row["scenarios"]})
        ],
        "false_alerts": [row for row in alert_rows if not row["scenarios"]][:20],
    }


PROTOCOLS: Final = ("unsupervised", "clean")
MIN_FIT_WINDOWS: Final = 20  # fewer normal windows than this to fit on: the clean protocol is not run


def _dataset_protocol(
    protocol: str,
    windows: pd.DataFrame,
    half: np.ndarray,
    flows: pd.DataFrame,
    *,
    detector: str,
    contamination: float,
) -> dict[str, Any]:
    """One protocol on one dataset: fit on the chosen windows of the first half, score the second."""
    labels_all = windows["label"].to_numpy().astype(int)
    chosen = half if protocol == "unsupervised" else half & (labels_all == 0)
    fit_windows = windows[chosen]
    test_windows = windows[~half]
    if len(fit_windows) < MIN_FIT_WINDOWS:
        return {"skipped": f"only {len(fit_windows)} window(s) to fit on (need {MIN_FIT_WINDOWS})"}
    profile = fit_profile(fit_windows)
    fit_features = featurize(fit_windows, profile)
    model = make_detector(detector, contamination=contamination).fit(fit_features[list(FEATURES)].to_numpy())
    # the look-back history is the other half as it arrived (unlabelled), as the service would have it
    test_features = featurize(test_windows, profile, history=windows[half])
    scores = model.decision_function(test_features[list(FEATURES)].to_numpy())
    labels = test_windows["label"].to_numpy().astype(int)
    per_window = figures(labels, scores, alerts=scores > model.threshold_)
    # per flow record: the score of the scored window it falls in (records of the other half are not
    # scored)
    keys = ["host", "window_start", "protocol", "remote_address", "direction"]
    records = flows.rename(columns={"host_identifier": "host"})[[*keys, "label"]].assign(
        _record=np.arange(len(flows))
    )
    joined = records.merge(test_windows[keys].assign(score=scores), on=keys, how="inner")
    per_record = joined.groupby("_record").agg(label=("label", "max"), score=("score", "max"))
    per_flow = (
        figures(per_record["label"].to_numpy().astype(int), per_record["score"].to_numpy())
        if len(per_record)
        else None
    )
    # per attack class (the dataset's label detail): its windows against all normal windows
    negative = labels == 0
    details = test_windows["label_detail"].to_numpy()
    per_class: dict[str, Any] = {}
    for detail in sorted(set(details[labels == 1])):
        mask = negative | (details == detail)
        part = figures(labels[mask], scores[mask], alerts=(scores > model.threshold_)[mask])
        per_class[str(detail)] = {
            "windows": int((details == detail).sum()),
            "roc_auc": _round(part.roc_auc),
            "recall_at_threshold": _round(part.recall_at_budget),
        }
    return {
        "fitted_windows": len(fit_windows),
        "fitted_positive_windows": int(fit_windows["label"].sum()),
        "window_roc_auc": _round(per_window.roc_auc),
        "window_pr_auc": _round(per_window.pr_auc),
        "precision_at_threshold": _round(per_window.precision_at_budget),
        "recall_at_threshold": _round(per_window.recall_at_budget),
        "flow_records_scored": len(per_record),
        "flow_roc_auc": _round(per_flow.roc_auc) if per_flow else None,
        "flow_pr_auc": _round(per_flow.pr_auc) if per_flow else None,
        "per_class": per_class,
    }


def evaluate_dataset(
    name: str,
    *,
    detector: str = "iforest",
    contamination: float = 0.01,
    seed: int = 0,
    limit: int | None = None,
    protocols: Sequence[str] = PROTOCOLS,
) -> dict[str, Any]:
    """One public dataset under each protocol (see the module docstring)."""
    unknown = [protocol for protocol in protocols if protocol not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}: choose from {list(PROTOCOLS)}")
    started = time.monotonic()
    loaded = public.load(name, limit=limit)
    flows = loaded.flows.reset_index(drop=True)
    if "remote_address" not in loaded.real_columns:
        # no addresses and a synthetic clock (KDD): windows would merge unrelated records, so each
        # record is its own window
        seconds = public.DEFAULT_WINDOW_SECONDS
        flows = flows.assign(
            ts=np.arange(len(flows), dtype="float64") * seconds,
            window_start=np.arange(len(flows), dtype="int64") * seconds,
        )
    records = public.to_windows(flows).rename(columns={"host_identifier": "host"})
    # "" sorts before any detail, so a window's carried detail is its attack's when it has one
    records["label_detail"] = records["label_detail"].where(records["label"] > 0, "")
    windows = flow_windows(records, carry=("label", "label_detail"))
    rng = np.random.default_rng(seed)
    half = rng.random(len(windows)) < 0.5
    labels = windows["label"].to_numpy().astype(int)
    return {
        "dataset": name,
        "records": len(flows),
        "positives": int(flows["label"].sum()),
        "windows": len(windows),
        "positive_windows": int(labels.sum()),
        "scored_windows": int((~half).sum()),
        "scored_positive_windows": int(labels[~half].sum()),
        "detector": detector,
        "protocols": {
            protocol: _dataset_protocol(
                protocol, windows, half, flows, detector=detector, contamination=contamination
            )
            for protocol in protocols
        },
        "real_columns": list(loaded.real_columns),
        "seconds": round(time.monotonic() - started, 2),
    }
