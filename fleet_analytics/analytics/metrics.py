# mypy: disable-error-code="import-untyped"
"""Evaluation figures from labels and scores: pure functions, no I/O.

Labels are 0/1 (or booleans), 1 = malicious; a larger score means more anomalous. Report PR-AUC
(average precision), precision at the alert budget and false alerts per 1,000 host-hours beside
ROC-AUC: ROC-AUC alone flatters detectors on rare positives (on ADBench smtp, Isolation Forest has
0.90 ROC-AUC but 0.01 PR-AUC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, roc_auc_score


@dataclass(frozen=True)
class Figures:
    roc_auc: float | None  # None when either class is absent
    pr_auc: float | None  # average precision; None when either class is absent
    positives: int
    negatives: int
    precision_at_budget: float | None  # among the alerts; None when there are none (or no budget/alerts)
    recall_at_budget: float | None  # among the positives; None when there are none (or no budget/alerts)
    alerts: int  # items alerted (the alerts given, or min(budget, items))


def _labels(labels: ArrayLike) -> NDArray[np.int64]:
    values = np.asarray(labels)
    if values.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, not of shape {values.shape}")
    if values.dtype == bool:
        return values.astype(np.int64)
    if not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"labels must be 0/1 or booleans, not {values.dtype}")
    bad = ~np.isin(values, (0, 1))
    if bad.any():
        raise ValueError(f"labels must be 0 or 1: {int(bad.sum())} value(s) are not, e.g. {values[bad][0]!r}")
    return values.astype(np.int64)


def _flags(values: ArrayLike, what: str, size: int) -> NDArray[np.bool_]:
    array = np.asarray(values)
    if array.shape != (size,):
        raise ValueError(f"{what} must have one value per label ({size}), not shape {array.shape}")
    if array.dtype != bool:
        if not np.issubdtype(array.dtype, np.number) or not np.isin(array, (0, 1)).all():
            raise ValueError(f"{what} must be booleans (or 0/1), not {array.dtype}")
        array = array.astype(bool)
    return array


def _scores(scores: ArrayLike, size: int) -> NDArray[np.float64]:
    array = np.asarray(scores, dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f"scores must have one value per label ({size}), not shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} score(s) are NaN or infinite (e.g. at index {int(np.flatnonzero(bad)[0])}): "
            "fix the detector (PyOD's PCA gives inf on constant features) or drop those items"
        )
    return array


def _top_budget_true_positives(truth: NDArray[np.int64], scores: NDArray[np.float64], budget: int) -> float:
    """Expected true positives among the top-``budget`` scores, ties at the cut broken at random: the
    items strictly above the cut count fully, the tied ones by their share of the remaining slots. So the
    figure does not depend on the items' order (the datasets are often ordered by class)."""
    if budget == 0:
        return 0.0
    cut = np.partition(scores, len(scores) - budget)[len(scores) - budget]
    above = scores > cut
    tied = scores == cut
    slots = budget - int(above.sum())
    return float(truth[above].sum()) + slots * float(truth[tied].mean())


def figures(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    alerts: ArrayLike | None = None,
    budget: int | None = None,
) -> Figures:
    """ROC-AUC, PR-AUC (sklearn's average precision) and, given the alerts or a budget, precision and
    recall of the alerts.

    ``alerts``: which items were alerted (booleans, e.g. ``scores > threshold``). ``budget``: instead,
    alert the ``budget`` highest scores (all items when the budget exceeds them); ties at the cut are
    broken at random in expectation, so precision and recall may be fractional counts over the budget
    and do not depend on the items' order. Give one of them or neither (then the budget figures are
    None and ``alerts`` is 0), not both.

    ROC-AUC and PR-AUC are None when either class is absent: ROC-AUC compares positives with negatives
    and is undefined without both; average precision is undefined without positives and trivially 1.0
    without negatives, which would say nothing about the detector. Precision is None with no alerts,
    recall None with no positives.

    Raises ValueError for NaN or infinite scores (naming how many), labels other than 0/1 and lengths
    that differ.
    """
    truth = _labels(labels)
    values = _scores(scores, len(truth))
    positives = int(truth.sum())
    negatives = len(truth) - positives
    both = positives > 0 and negatives > 0
    roc = float(roc_auc_score(truth, values)) if both else None
    pr = float(average_precision_score(truth, values)) if both else None
    if alerts is not None and budget is not None:
        raise ValueError("give alerts or budget, not both")
    if alerts is not None:
        alerted = _flags(alerts, "alerts", len(truth))
        count = int(alerted.sum())
        true_positives = float(truth[alerted].sum())
    elif budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 0:
            raise ValueError(f"budget must be a non-negative integer, not {budget!r}")
        count = min(int(budget), len(truth))
        true_positives = _top_budget_true_positives(truth, values, count)
    else:
        return Figures(roc, pr, positives, negatives, None, None, 0)
    precision = true_positives / count if count else None
    recall = true_positives / positives if positives else None
    return Figures(roc, pr, positives, negatives, precision, recall, count)


def recall_by_group(labels: ArrayLike, alerted: ArrayLike, groups: ArrayLike) -> dict[str, float]:
    """Recall per group (scenario, attack class, ...): the share of the group's positives alerted.
    Groups without positives are left out (their recall is undefined); keys are the group values as
    text, in sorted order."""
    truth = _labels(labels)
    flags = _flags(alerted, "alerted", len(truth))
    names = np.asarray(groups)
    if names.shape != truth.shape:
        raise ValueError(f"groups must have one value per label ({len(truth)}), not shape {names.shape}")
    frame = pd.DataFrame({"group": pd.Series(names).astype("str"), "hit": flags})
    frame = frame.loc[truth == 1]
    recall = frame.groupby("group", sort=True)["hit"].mean()
    return {str(group): float(value) for group, value in recall.items()}


def false_alerts_per_1000_host_hours(alerted: ArrayLike, labels: ArrayLike, *, host_hours: float) -> float:
    """Alerts on negatives (label 0) per 1,000 host-hours of monitoring (hosts x hours covered by the
    items): what an analyst would have to dismiss."""
    truth = _labels(labels)
    flags = _flags(alerted, "alerted", len(truth))
    if not (isinstance(host_hours, int | float | np.number) and math.isfinite(host_hours) and host_hours > 0):
        raise ValueError(f"host_hours must be a positive finite number, not {host_hours!r}")
    false_alerts = int((flags & (truth == 0)).sum())
    return false_alerts * 1000.0 / float(host_hours)
