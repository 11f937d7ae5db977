"""Evaluation figures (fleet_analytics.analytics.metrics) on cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleet_analytics.analytics.metrics import (
    Figures,
    false_alerts_per_1000_host_hours,
    figures,
    recall_by_group,
)


def test_perfect_ranking() -> None:
    result = figures([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert result == Figures(1.0, 1.0, 2, 2, None, None, 0)


def test_reversed_ranking() -> None:
    result = figures([1, 1, 0, 0], [0.1, 0.2, 0.9, 0.8], budget=2)
    assert result.roc_auc == 0.0
    # positives ranked 3rd and 4th: AP = (1/3 + 2/4) / 2
    assert result.pr_auc == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert (result.precision_at_budget, result.recall_at_budget, result.alerts) == (0.0, 0.0, 2)


def test_ties() -> None:
    # all scores tied: ROC-AUC one half, AP the prevalence
    tied = figures([1, 0, 0, 0], [5.0, 5.0, 5.0, 5.0], budget=2)
    assert tied.roc_auc == 0.5
    assert tied.pr_auc == pytest.approx(0.25)
    # the budget of 2 among 4 tied items holds the positive half the time, whatever the order
    assert tied.precision_at_budget == pytest.approx(0.25)
    assert tied.recall_at_budget == pytest.approx(0.5)
    # one positive tied with one negative at the top, one negative below: AUC (1 + 0.5) / 2
    partial = figures([1, 0, 0], [2.0, 2.0, 1.0], budget=1)
    assert partial.roc_auc == 0.75
    assert partial.precision_at_budget == pytest.approx(0.5)
    assert partial.recall_at_budget == pytest.approx(0.5)
    assert figures([0, 1, 0], [2.0, 2.0, 1.0], budget=1) == partial  # order does not matter


def test_budget() -> None:
    labels = [1, 0, 1, 0, 0, 1]
    scores = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]
    top3 = figures(labels, scores, budget=3)
    assert top3.precision_at_budget == pytest.approx(2 / 3)
    assert top3.recall_at_budget == pytest.approx(2 / 3)
    assert top3.alerts == 3
    everything = figures(labels, scores, budget=100)
    assert (everything.precision_at_budget, everything.recall_at_budget, everything.alerts) == (0.5, 1.0, 6)
    nothing = figures(labels, scores, budget=0)
    assert (nothing.precision_at_budget, nothing.recall_at_budget, nothing.alerts) == (None, 0.0, 0)
    with pytest.raises(ValueError, match="budget"):
        figures(labels, scores, budget=-1)


def test_alerts() -> None:
    labels = np.array([1, 0, 1, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    result = figures(labels, scores, alerts=scores > 0.5)
    assert result.precision_at_budget == pytest.approx(2 / 3)
    assert result.recall_at_budget == pytest.approx(2 / 3)
    assert result.alerts == 3
    none = figures(labels, scores, alerts=np.zeros(6, dtype=bool))
    assert (none.precision_at_budget, none.recall_at_budget, none.alerts) == (None, 0.0, 0)
    with pytest.raises(ValueError, match="not both"):
        figures(labels, scores, alerts=scores > 0.5, budget=2)
    with pytest.raises(ValueError, match="one value per label"):
        figures(labels, scores, alerts=[True, False])


def test_single_class_gives_none() -> None:
    negatives = figures([0, 0, 0], [0.1, 0.5, 0.9], budget=1)
    assert (negatives.roc_auc, negatives.pr_auc, negatives.positives, negatives.negatives) == (
        None,
        None,
        0,
        3,
    )
    assert (negatives.precision_at_budget, negatives.recall_at_budget) == (0.0, None)
    positives = figures([True, True], [0.1, 0.2])
    assert (positives.roc_auc, positives.pr_auc, positives.positives, positives.negatives) == (
        None,
        None,
        2,
        0,
    )


def test_nan_and_inf_scores_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^2 score\(s\) are NaN or infinite"):
        figures([0, 1, 0], [0.1, math.nan, math.inf])
    with pytest.raises(ValueError, match="one value per label"):
        figures([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0 or 1"):
        figures([0, 2], [0.1, 0.2])


def test_recall_by_group() -> None:
    labels = [1, 1, 1, 0, 1, 0]
    alerted = [True, False, True, True, False, False]
    groups = ["scan", "scan", "c2", "scan", "exfil", "benign"]
    assert recall_by_group(labels, alerted, groups) == {"c2": 1.0, "exfil": 0.0, "scan": 0.5}
    assert recall_by_group([0, 0], [True, False], ["a", "b"]) == {}
    with pytest.raises(ValueError, match="groups"):
        recall_by_group([1], [True], ["a", "b"])


def test_false_alerts_per_1000_host_hours() -> None:
    alerted = [True, True, True, False]
    labels = [1, 0, 0, 0]
    assert false_alerts_per_1000_host_hours(alerted, labels, host_hours=500.0) == 4.0
    assert false_alerts_per_1000_host_hours([False] * 4, labels, host_hours=1.0) == 0.0
    with pytest.raises(ValueError, match="host_hours"):
        false_alerts_per_1000_host_hours(alerted, labels, host_hours=0.0)
    with pytest.raises(ValueError, match="host_hours"):
        false_alerts_per_1000_host_hours(alerted, labels, host_hours=math.nan)
