"""From scored flow windows to alerts: grouping, explanation, deduplication and the daily budget.

Pure decisions over values; :mod:`fleet_analytics.detection` stores what they decide.

1. :func:`draft_alerts` groups a run's anomalous windows by host and application. An application
   with anomalous windows to at least ``fanout_group`` endpoints (address and port: a scan, a sweep)
   becomes one alert about all of them; otherwise each destination address is its own alert. The
   window with the highest score explains the alert.
2. :func:`triage_drafts` compares the drafts with the host's recent alerts: a draft with the same
   host, application and destination as an alert whose last window is within ``cooldown_seconds``
   is merged into it (no new alert). A new alert past the host's budget for that UTC day is kept as
   *suppressed*: stored and counted, not shown as new, unless it is critical (a score far past
   anything seen in training is never noise). Highest scores claim the budget first.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd

from fleet_analytics.analytics.explain import explain
from fleet_analytics.analytics.features import CONTEXT, UNIT_KEYS
from fleet_analytics.analytics.model import Model

STATUSES: Final = ("new", "acknowledged", "resolved", "false_positive", "suppressed")
SEVERITIES: Final = ("low", "medium", "high", "critical")
WINDOW_COLUMNS: Final = (*UNIT_KEYS, "bytes_sent", "bytes_received", "connections", "score")
ENDPOINTS: Final = ["remote_address", "service_port"]


@dataclass(frozen=True)
class AlertPolicy:
    cooldown_seconds: int = 6 * 3600
    budget_per_host_day: int = 5
    fanout_group: int = 8
    max_windows_kept: int = 500  # flow windows recorded per alert and run (the highest scores)

    def __post_init__(self) -> None:
        if self.cooldown_seconds < 0 or self.budget_per_host_day < 0 or self.fanout_group < 2:
            raise ValueError(
                "alert policy: cooldown_seconds and budget_per_host_day must be >= 0, fanout_group >= 2"
            )


@dataclass
class AlertDraft:
    host: Hashable
    dedup_key: str
    app: str
    process_name: str
    process_path: str
    process_sha256: str
    username: str
    protocol: str | None
    remote_address: str | None
    service_port: int | None  # the remote port outbound, the local port inbound
    destinations: int
    first_window: int
    last_window: int
    windows: int
    score: float
    severity: str
    explanation: str
    reasons: list[dict[str, Any]]
    window_rows: pd.DataFrame = field(repr=False)  # WINDOW_COLUMNS of the windows behind it

    @property
    def day(self) -> int:
        return self.first_window // 86400


def dedup_key(app: str, remote_address: str | None) -> str:
    return f"{app}|{remote_address if remote_address is not None else '*'}"


def _draft(
    model: Model, host: Hashable, app: str, group: pd.DataFrame, *, fanout: bool, policy: AlertPolicy
) -> AlertDraft:
    top = group.loc[group["score"].idxmax()]
    features = group.loc[[top.name], list(model.features)]
    surprise = model.surprise(features).iloc[0].to_dict()
    context = {name: top[name] for name in (*CONTEXT, *model.features) if name in top.index}
    sentence, reasons = explain(top.to_dict(), surprise, model.profile, context=context)
    addresses = pd.unique(group["remote_address"])
    if fanout:
        shown = ", ".join(str(address) for address in addresses[:5])
        more = f" and {len(addresses) - 5} more" if len(addresses) > 5 else ""
        sentence = (
            f"{top['process_name'] or top['process_path'] or 'an unknown process'} reached {len(addresses)} "
            f"destinations ({shown}{more}) on {group['service_port'].nunique()} ports in "
            f"{group['window_start'].nunique()} windows. Most anomalous: {sentence}"
        )
    kept = group.nlargest(policy.max_windows_kept, "score")[list(WINDOW_COLUMNS)].reset_index(drop=True)
    return AlertDraft(
        host=host,
        dedup_key=dedup_key(app, None if fanout else str(top["remote_address"])),
        app=app,
        process_name=str(top["process_name"]),
        process_path=str(top["process_path"]),
        process_sha256=str(top["process_sha256"]),
        username=str(top["username"]),
        protocol=None if fanout else str(top["protocol"]),
        remote_address=None if fanout else str(top["remote_address"]),
        service_port=None if fanout else int(top["service_port"]),
        destinations=len(addresses),
        first_window=int(group["window_start"].min()),
        last_window=int(group["window_start"].max()),
        windows=len(group),
        score=float(top["score"]),
        severity=str(model.severity([float(top["score"])])[0]),
        explanation=sentence,
        reasons=[{"feature": r.feature, "surprise": r.surprise, "text": r.text} for r in reasons],
        window_rows=kept,
    )


def draft_alerts(scored: pd.DataFrame, model: Model, policy: AlertPolicy) -> list[AlertDraft]:
    """One draft per host and application when it was anomalous towards at least ``fanout_group``
    (address, port) endpoints (a scan, a sweep); otherwise one per host, application and address."""
    anomalous = scored[scored["anomalous"]]
    drafts: list[AlertDraft] = []
    if anomalous.empty:
        return drafts
    for (host, app), group in anomalous.groupby(["host", "app"], sort=False):
        if len(group[ENDPOINTS].drop_duplicates()) >= policy.fanout_group:
            drafts.append(_draft(model, host, str(app), group, fanout=True, policy=policy))
            continue
        for _address, pair in group.groupby("remote_address", sort=False):
            drafts.append(_draft(model, host, str(app), pair, fanout=False, policy=policy))
    drafts.sort(key=lambda draft: -draft.score)
    return drafts


@dataclass(frozen=True)
class RecentAlert:
    alert_id: int
    host: Hashable
    dedup_key: str
    last_window: int


@dataclass
class Triage:
    new: list[AlertDraft] = field(default_factory=list)
    merged: list[tuple[int, AlertDraft]] = field(default_factory=list)
    suppressed: list[AlertDraft] = field(default_factory=list)


def triage_drafts(
    drafts: list[AlertDraft],
    recent: list[RecentAlert],
    created: Mapping[tuple[Hashable, int], int],
    policy: AlertPolicy,
) -> Triage:
    """Decide each draft: new, merged into a recent alert, or suppressed by the budget.

    ``recent`` are the hosts' alerts (any status) whose last window is within the cooldown;
    ``created`` counts alerts already created per (host, UTC day) (suppressed ones excluded).
    """
    latest: dict[tuple[Hashable, str], RecentAlert] = {}
    for alert in recent:
        key = (alert.host, alert.dedup_key)
        if key not in latest or alert.last_window > latest[key].last_window:
            latest[key] = alert
    counts = dict(created)
    outcome = Triage()
    for draft in sorted(drafts, key=lambda item: -item.score):
        match = latest.get((draft.host, draft.dedup_key))
        if match is not None and draft.first_window - match.last_window <= policy.cooldown_seconds:
            outcome.merged.append((match.alert_id, draft))
            continue
        budget_key = (draft.host, draft.day)
        if counts.get(budget_key, 0) >= policy.budget_per_host_day and draft.severity != "critical":
            outcome.suppressed.append(draft)  # the budget bounds noise; a critical alert is never noise
            continue
        counts[budget_key] = counts.get(budget_key, 0) + 1
        outcome.new.append(draft)
    return outcome
