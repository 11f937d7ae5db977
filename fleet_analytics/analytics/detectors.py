"""Anomaly detectors behind a small registry, with PyOD's contract.

``fit(X)`` learns ``decision_scores_`` (the training scores) and ``threshold_`` (the training scores'
``1 - contamination`` quantile); ``decision_function(X)`` scores new rows, higher = more abnormal;
``predict(X)`` is ``score > threshold_``. Scores of a row never depend on what else is scored with it.

Registry (:data:`DETECTORS`):
- ``iforest``: PyOD's Isolation Forest.
- ``hbos``: PyOD's histogram-based outlier score.
- ``ecod`` and ``copod``: the scoring rules of PyOD's ECOD and COPOD (sums of per-feature empirical
  tail probabilities, -log, with a skewness correction), with the training data's ECDFs frozen at fit.
  PyOD's own ``decision_function`` recomputes the ECDFs over the training data *plus the batch being
  scored*, so a window's score moves with its batch; here it does not. A test checks that on the
  training data the ranking equals PyOD's.
- ``tailmax``: ours: the most surprising single feature, -log10 of its right-tail probability
  among training windows (the features are oriented so that high is unusual).
- ``ensemble`` (default): the members' scores, each standardised by its own training scores (PyOD's
  ``standardizer``), combined by their maximum (``maximization``, the default) or mean
  (``average``); members ``iforest``, ``ecod`` and ``tailmax`` unless given. Isolation Forest sees
  combinations, ECOD the sum of many mild tails, tailmax one extreme value (which Isolation Forest
  cannot split on when the feature was constant in training). docs/detection.md has the evaluation
  behind this choice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from pyod.models.hbos import HBOS
from pyod.models.iforest import IForest
from sklearn.ensemble._iforest import _average_path_length

Matrix = NDArray[np.float64]
Vector = NDArray[np.float64]


class DetectorError(ValueError):
    """Unknown detector, bad parameter or unusable training data; the message says what is accepted."""


def _as_matrix(X: Any) -> Matrix:
    matrix = np.asarray(X, dtype=np.float64)
    if matrix.ndim != 2:
        raise DetectorError(f"expected a 2-d feature matrix, got {matrix.ndim} dimensions")
    if not np.isfinite(matrix).all():
        bad = int((~np.isfinite(matrix)).sum())
        raise DetectorError(f"the feature matrix holds {bad} NaN or infinite values: fix the features first")
    return matrix


class FrozenTails:
    """Per-feature empirical tail probabilities against the training data, -log scaled."""

    def __init__(self, X: Matrix) -> None:
        self.n_ = X.shape[0]
        # per feature: its distinct values, sorted, and how many training values lie below each (the
        # counts are exact; features with few distinct values search far shorter arrays)
        self.values_: list[Vector] = []
        self.below_: list[NDArray[np.int64]] = []
        for column in range(X.shape[1]):
            values, counts = np.unique(X[:, column], return_counts=True)
            self.values_.append(values)
            self.below_.append(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        centred = X - X.mean(axis=0)
        spread = X.std(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            skewness = np.where(spread > 0, (centred**3).mean(axis=0) / spread**3, 0.0)
        self.skew_sign_ = np.sign(skewness)

    def left_right(self, X: Matrix) -> tuple[Matrix, Matrix]:
        """-log P(train <= x) and -log P(train >= x) per cell, with add-one smoothing."""
        left = np.empty_like(X)
        right = np.empty_like(X)
        for column in range(X.shape[1]):
            values, below = self.values_[column], self.below_[column]
            cells = X[:, column]
            # one search per cell: the values are distinct, so the right-side position is the
            # left-side one plus one where the cell equals a training value
            position = np.searchsorted(values, cells, side="left")
            exact = values[np.minimum(position, len(values) - 1)] == cells
            at_most = below[position + exact]
            at_least = self.n_ - below[position]
            left[:, column] = -np.log((at_most + 1.0) / (self.n_ + 1.0))
            right[:, column] = -np.log((at_least + 1.0) / (self.n_ + 1.0))
        return left, right

    def skew_corrected(self, left: Matrix, right: Matrix) -> Matrix:
        # ECOD/COPOD: the left tail for left-skewed features, the right tail for right-skewed ones
        sign = self.skew_sign_
        return np.asarray(left * -1 * np.sign(sign - 1) + right * np.sign(sign + 1), dtype=np.float64)

    def surprise(self, X: Matrix) -> Matrix:
        """-log10 of the right-tail probability per cell: how unusually *high* each value is."""
        _left, right = self.left_right(X)
        return np.asarray(right / np.log(10.0), dtype=np.float64)


class _Base:
    name: str = ""

    def __init__(self, *, contamination: float) -> None:
        if not 0.0 < contamination < 0.5:
            raise DetectorError(f"contamination is {contamination}: use a fraction in (0, 0.5)")
        self.contamination = contamination
        self.decision_scores_: Vector = np.empty(0)
        self.threshold_: float = float("inf")

    def _raw_fit(self, X: Matrix) -> Vector:
        """Fit, and return the training rows' scores."""
        raise NotImplementedError

    def _raw_scores(self, X: Matrix) -> Vector:
        raise NotImplementedError

    def fit(self, X: Any) -> _Base:
        matrix = _as_matrix(X)
        if matrix.shape[0] < 10:
            raise DetectorError(f"{matrix.shape[0]} training rows: train on at least 10")
        self.decision_scores_ = self._raw_fit(matrix)
        self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - self.contamination))
        return self

    def decision_function(self, X: Any) -> Vector:
        matrix = _as_matrix(X)
        if matrix.shape[0] == 0:
            return np.empty(0)
        return self._raw_scores(matrix)

    def predict(self, X: Any) -> NDArray[np.bool_]:
        return self.decision_function(X) > self.threshold_


class _PyOD(_Base):
    """A PyOD estimator whose scores are batch-independent (Isolation Forest, HBOS)."""

    def __init__(
        self, *, contamination: float, factory: Callable[..., Any], params: Mapping[str, Any]
    ) -> None:
        super().__init__(contamination=contamination)
        self.params = dict(params)
        try:
            self.model_ = factory(contamination=contamination, **self.params)
        except TypeError as exc:
            raise DetectorError(f"{self.name}: bad parameters {self.params}: {exc}") from None

    def _raw_fit(self, X: Matrix) -> Vector:
        self.model_.fit(X)
        return np.asarray(self.model_.decision_scores_, dtype=np.float64)

    def _raw_scores(self, X: Matrix) -> Vector:
        return np.asarray(self.model_.decision_function(X), dtype=np.float64)


class IForestDetector(_PyOD):
    name = "iforest"

    def __init__(self, *, contamination: float, **params: Any) -> None:
        merged = {"n_estimators": 100, "max_samples": 256, "random_state": 0, "n_jobs": 1, **params}
        super().__init__(contamination=contamination, factory=IForest, params=merged)

    def _raw_fit(self, X: Matrix) -> Vector:
        wanted = self.params["max_samples"]
        if isinstance(wanted, int):
            self.model_.max_samples = min(wanted, X.shape[0])  # as sklearn would, without its warning
        return super()._raw_fit(X)

    def _raw_scores(self, X: Matrix) -> Vector:
        """PyOD's score (sklearn's anomaly score plus its offset), the same figures computed tree by
        tree without sklearn's per-tree joblib dispatch, which costs more than the trees themselves
        on the few thousand rows of a scoring batch. Falls back to the library call where the forest
        lacks the fitted attributes this reads (another scikit-learn version)."""
        forest = getattr(self.model_, "detector_", None)
        lengths = getattr(forest, "_decision_path_lengths", None)
        averages = getattr(forest, "_average_path_length_per_tree", None)
        if forest is None or lengths is None or averages is None or forest._max_features != X.shape[1]:
            return super()._raw_scores(X)
        cells = np.ascontiguousarray(X, dtype=np.float32)  # trees split float32 values
        depths = np.zeros(X.shape[0])
        for tree, path_lengths, average_lengths in zip(forest.estimators_, lengths, averages, strict=True):
            leaves = tree.tree_.apply(cells)  # the fitted tree itself: no per-call validation
            depths += path_lengths[leaves] + average_lengths[leaves] - 1.0
        denominator = len(forest.estimators_) * _average_path_length([forest._max_samples])[0]
        scores = 2.0 ** -np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0)
        return np.asarray(scores + forest.offset_, dtype=np.float64)


class HBOSDetector(_PyOD):
    name = "hbos"

    def __init__(self, *, contamination: float, **params: Any) -> None:
        merged = {"n_bins": 20, **params}
        super().__init__(contamination=contamination, factory=HBOS, params=merged)


class _TailDetector(_Base):
    def __init__(self, *, contamination: float, **params: Any) -> None:
        super().__init__(contamination=contamination)
        if params:
            raise DetectorError(f"{self.name} takes no parameters, got {sorted(params)}")
        self.params: dict[str, Any] = {}
        self._given_tails: FrozenTails | None = None

    def fit_with_tails(self, X: Any, tails: FrozenTails) -> _TailDetector:
        """:meth:`fit`, reusing ``tails`` already fitted on the same ``X`` (ensemble members share)."""
        self._given_tails = tails
        try:
            self.fit(X)
        finally:
            self._given_tails = None
        return self

    def _raw_fit(self, X: Matrix) -> Vector:
        self.tails_ = self._given_tails or FrozenTails(X)
        return self._raw_scores(X)

    def _combine(self, left: Matrix, right: Matrix, skewed: Matrix) -> Matrix:
        raise NotImplementedError

    def _raw_scores(self, X: Matrix) -> Vector:
        return self.scores_from(*self.tails_.left_right(X))

    def scores_from(self, left: Matrix, right: Matrix) -> Vector:
        """The scores given the tails (:meth:`FrozenTails.left_right`), which members share."""
        skewed = self.tails_.skew_corrected(left, right)
        return np.asarray(self._combine(left, right, skewed).sum(axis=1), dtype=np.float64)


class ECODDetector(_TailDetector):
    name = "ecod"

    def _combine(self, left: Matrix, right: Matrix, skewed: Matrix) -> Matrix:
        return np.maximum(np.maximum(left, right), skewed)


class COPODDetector(_TailDetector):
    name = "copod"

    def _combine(self, left: Matrix, right: Matrix, skewed: Matrix) -> Matrix:
        return np.maximum(skewed, (left + right) / 2.0)


class TailMaxDetector(_TailDetector):
    """The single most surprising feature: max over features of -log10 P(train >= x). Our features
    are oriented so that high is unusual; one value beyond everything seen in training (a binary and
    a destination both new to the fleet) scores as high as it can, however ordinary the rest."""

    name = "tailmax"

    def scores_from(self, left: Matrix, right: Matrix) -> Vector:
        return np.asarray(right.max(axis=1) / np.log(10.0), dtype=np.float64)

    def _combine(self, left: Matrix, right: Matrix, skewed: Matrix) -> Matrix:  # pragma: no cover - unused
        return right


@dataclass
class _Member:
    detector: _Base
    mean: float = 0.0
    std: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


class EnsembleDetector(_Base):
    name = "ensemble"

    def __init__(
        self,
        *,
        contamination: float,
        members: tuple[str, ...] = ("iforest", "ecod", "tailmax"),
        combine: str = "max",
    ) -> None:
        super().__init__(contamination=contamination)
        unknown = [name for name in members if name not in SINGLE]
        if unknown or not members:
            raise DetectorError(f"ensemble members {list(members)}: choose from {sorted(SINGLE)}")
        if combine not in ("mean", "max"):
            raise DetectorError(f"ensemble combine {combine!r}: use mean or max")
        self.combine = combine
        self.params = {"members": list(members), "combine": combine}
        self.members_ = [_Member(SINGLE[name](contamination=contamination)) for name in members]

    def _combined(self, standardised: list[Vector]) -> Vector:
        stacked = np.vstack(standardised)
        return np.asarray(
            stacked.max(axis=0) if self.combine == "max" else stacked.mean(axis=0), dtype=np.float64
        )

    def _raw_fit(self, X: Matrix) -> Vector:
        standardised = []
        shared: FrozenTails | None = None
        for member in self.members_:
            detector = member.detector
            if isinstance(detector, _TailDetector):
                # the same training data: the same tails, fitted and kept once
                if shared is None:
                    detector.fit(X)
                    shared = detector.tails_
                else:
                    detector.fit_with_tails(X, shared)
            else:
                detector.fit(X)
            scores = member.detector.decision_scores_
            member.mean = float(scores.mean())
            member.std = float(scores.std()) or 1.0
            standardised.append((scores - member.mean) / member.std)
        return self._combined(standardised)

    def _raw_scores(self, X: Matrix) -> Vector:
        tails: dict[int, tuple[Matrix, Matrix]] = {}  # the tails of X, computed once per FrozenTails
        standardised = []
        for member in self.members_:
            detector = member.detector
            if isinstance(detector, _TailDetector):
                key = id(detector.tails_)
                if key not in tails:
                    tails[key] = detector.tails_.left_right(X)
                scores = detector.scores_from(*tails[key])
            else:
                scores = detector.decision_function(X)
            standardised.append((scores - member.mean) / member.std)
        return self._combined(standardised)


SINGLE: Final[dict[str, Callable[..., _Base]]] = {
    "iforest": IForestDetector,
    "hbos": HBOSDetector,
    "ecod": ECODDetector,
    "copod": COPODDetector,
    "tailmax": TailMaxDetector,
}
DETECTORS: Final[dict[str, Callable[..., _Base]]] = {**SINGLE, "ensemble": EnsembleDetector}
DEFAULT_DETECTOR: Final = "ensemble"

Detector = _Base


def make_detector(name: str, *, contamination: float, params: Mapping[str, Any] | None = None) -> Detector:
    """A new, unfitted detector from the registry."""
    factory = DETECTORS.get(name)
    if factory is None:
        raise DetectorError(f"unknown detector {name!r}: choose one of {', '.join(sorted(DETECTORS))}")
    arguments = dict(params or {})
    if name == "ensemble" and "members" in arguments:
        arguments["members"] = tuple(arguments["members"])
    return factory(contamination=contamination, **arguments)
