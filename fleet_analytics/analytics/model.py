"""Training and scoring: flow windows in, a fitted model and scores out (pure, no database).

Training is out of sample, as scoring is: the training period is cut into ``folds`` equal spans of
time, and each span's windows are featurised against a profile that did not see them
(:func:`training_features`: cross-fitted against the other spans, the last against the spans
before it), so a destination new to that profile is as new to the model as it will be when
scoring. The detector is fitted on every span but the last and checked on the last (the validation
figures: its alert rate per host and day). The profile stored for scoring is fitted on the whole
period.

Windows of alerts an analyst marked false positive are added to the training data ``known_normal_weight``
times (they are normal, and the detector should learn so); windows of confirmed alerts are left out.

An artifact is the pickled model, signed with HMAC-SHA256 under the service's model key: :func:`load`
checks the sha256 and the signature before unpickling, and refuses anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from fleet_analytics.analytics.detectors import Detector, FrozenTails, make_detector
from fleet_analytics.analytics.features import (
    DEFAULT_LOOKBACK,
    FEATURES,
    UNIT_KEYS,
    Profile,
    featurize,
    fit_profile,
)

ARTIFACT_FORMAT: Final = 2  # 2: the profile counts binaries apart from applications
TAIL_SAMPLE: Final = 20_000  # training feature rows kept for explanations
HISTOGRAM_BINS: Final = 40


class ModelIntegrityError(RuntimeError):
    """An artifact failed its checksum or signature, or is not one of ours: it is never unpickled."""


class TrainingError(ValueError):
    """The training data cannot make a model; the message says what is missing."""


@dataclass
class Model:
    detector_name: str
    params: dict[str, Any]
    contamination: float
    features: tuple[str, ...]
    profile: Profile
    detector: Detector
    tails: FrozenTails
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    lookback_seconds: int = DEFAULT_LOOKBACK

    @property
    def threshold(self) -> float:
        return float(self.detector.threshold_)

    def score(self, windows: pd.DataFrame, *, history: pd.DataFrame | None = None) -> pd.DataFrame:
        """``windows`` with the feature columns, ``score`` and ``anomalous`` added."""
        features = featurize(windows, self.profile, history=history, lookback_seconds=self.lookback_seconds)
        scores = self.detector.decision_function(features[list(self.features)].to_numpy())
        out = pd.concat([windows, features], axis=1)
        out["score"] = scores
        out["anomalous"] = scores > self.threshold
        return out

    def surprise(self, features: pd.DataFrame) -> pd.DataFrame:
        """-log10 of the right-tail probability of each feature value among training windows."""
        values = self.tails.surprise(features[list(self.features)].to_numpy(dtype=np.float64))
        return pd.DataFrame(values, columns=list(self.features), index=features.index)

    def severity(self, scores: np.ndarray | pd.Series) -> np.ndarray:
        """low, medium, high or critical by how far past the threshold a score is, in units of the gap
        between the threshold and the highest training score."""
        top = float(self.training.get("score_max", self.threshold))
        gap = max(top - self.threshold, 1e-9)
        excess = (np.asarray(scores, dtype=np.float64) - self.threshold) / gap
        return np.select([excess >= 2.0, excess >= 1.0, excess >= 0.4], ["critical", "high", "medium"], "low")


def fold_of(window_start: pd.Series, folds: int) -> pd.Series:
    low = int(window_start.min())
    high = int(window_start.max()) + 1
    span = max((high - low) / folds, 1.0)
    return ((window_start - low) // span).clip(upper=folds - 1).astype("int64")


def training_features(
    windows: pd.DataFrame, *, folds: int, lookback_seconds: int = DEFAULT_LOOKBACK
) -> pd.DataFrame:
    """Out-of-sample features of every span (column ``fold`` says which), index of ``windows``.

    The training period is cut into ``folds`` spans. The last span (validation) is featurised against
    the profile of the spans before it, as scoring meets a new day. Every other span is cross-fitted:
    featurised against the profile of all the other spans but the last, so that what the detector
    learns as normal novelty (a destination, a binary new to the profile) is the novelty of a
    representative period, not of whatever came first (a weekend with only the servers up makes every
    workstation binary look new on Monday). Each span's look-back history is the ``lookback_seconds``
    before it, as when scoring.
    """
    fold = fold_of(windows["window_start"], folds)
    last = folds - 1
    starts = windows["window_start"]
    parts = []
    for index in range(folds):
        current = windows[fold == index]
        reference = windows[fold < last] if index == last else windows[(fold != index) & (fold != last)]
        if current.empty or reference.empty:
            continue
        begin = int(current["window_start"].min())
        previous = windows[(starts >= begin - lookback_seconds) & (starts < begin)]
        features = featurize(
            current, fit_profile(reference), history=previous, lookback_seconds=lookback_seconds
        )
        features["fold"] = index
        parts.append(features)
    if not parts:
        raise TrainingError("the training period has too few spans with traffic: train on a longer period")
    return pd.concat(parts)


def _key_index(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(frame[list(UNIT_KEYS)])


def train(
    windows: pd.DataFrame,
    *,
    detector: str = "iforest",
    contamination: float = 0.001,
    params: Mapping[str, Any] | None = None,
    folds: int = 7,
    known_normal: pd.DataFrame | None = None,
    known_normal_weight: int = 20,
    known_bad: pd.DataFrame | None = None,
    seed: int = 0,
    lookback_seconds: int = DEFAULT_LOOKBACK,
) -> Model:
    """A model fitted on flow windows (:func:`~fleet_analytics.analytics.features.flow_windows`).

    ``known_normal`` and ``known_bad`` are frames with the :data:`UNIT_KEYS` columns of windows an
    analyst judged (false positives, and confirmed attacks).
    """
    if folds < 3:
        raise TrainingError(f"folds is {folds}: use at least 3 (two to cross-fit, one to validate)")
    if windows.empty:
        raise TrainingError("no flow windows in the training period: ingest traffic first")
    if known_bad is not None and not known_bad.empty:
        windows = windows[~_key_index(windows).isin(_key_index(known_bad))]
    features = training_features(windows, folds=folds, lookback_seconds=lookback_seconds)
    last = int(features["fold"].max())
    fit_rows = features[features["fold"] < last]
    check_rows = features[features["fold"] == last]
    if len(fit_rows) < 10 or check_rows.empty:
        raise TrainingError(
            f"{len(fit_rows)} windows to fit and {len(check_rows)} to validate: train on a longer period"
        )
    matrix = fit_rows[list(FEATURES)].to_numpy()
    if known_normal is not None and not known_normal.empty:
        normal = _key_index(windows.loc[fit_rows.index]).isin(_key_index(known_normal))
        if normal.any():
            extra = np.repeat(matrix[normal], known_normal_weight - 1, axis=0)
            matrix = np.vstack([matrix, extra])
    arguments = dict(params or {})
    if detector == "iforest":
        arguments.setdefault("random_state", seed)
    model_detector = make_detector(detector, contamination=contamination, params=arguments)
    model_detector.fit(matrix)
    rng = np.random.default_rng(seed)
    sample = matrix[rng.choice(len(matrix), size=min(len(matrix), TAIL_SAMPLE), replace=False)]
    check_scores = model_detector.decision_function(check_rows[list(FEATURES)].to_numpy())
    check_windows = windows.loc[check_rows.index]
    host_days = max(
        check_windows["host"].nunique()
        * (int(check_windows["window_start"].max()) - int(check_windows["window_start"].min()) + 60)
        / 86400.0,
        1e-9,
    )
    scores = model_detector.decision_scores_
    counts, edges = np.histogram(np.concatenate([scores, check_scores]), bins=HISTOGRAM_BINS)
    model = Model(
        detector_name=detector,
        params=dict(getattr(model_detector, "params", {})),
        contamination=contamination,
        features=FEATURES,
        profile=fit_profile(windows),
        detector=model_detector,
        tails=FrozenTails(sample),
        lookback_seconds=lookback_seconds,
        training={
            "windows": len(windows),
            "fitted_windows": len(fit_rows),
            "hosts": int(windows["host"].nunique()),
            "window_start_min": int(windows["window_start"].min()),
            "window_start_max": int(windows["window_start"].max()),
            "folds": folds,
            "score_max": float(scores.max()),
            "score_quantiles": {
                str(q): float(np.quantile(scores, q)) for q in (0.5, 0.9, 0.99, 0.999, 0.9999)
            },
            "known_normal": 0 if known_normal is None else len(known_normal),
            "known_bad": 0 if known_bad is None else len(known_bad),
        },
        validation={
            "windows": len(check_rows),
            "host_days": round(host_days, 3),
            "above_threshold": int((check_scores > model_detector.threshold_).sum()),
            "above_threshold_per_host_day": round(
                float((check_scores > model_detector.threshold_).sum()) / host_days, 3
            ),
            "histogram": {"edges": [float(edge) for edge in edges], "counts": [int(c) for c in counts]},
        },
    )
    return model


def dumps(model: Model) -> bytes:
    buffer = io.BytesIO()
    pickle.dump({"format": ARTIFACT_FORMAT, "model": model}, buffer, protocol=5)
    return buffer.getvalue()


def sign(artifact: bytes, key: bytes) -> tuple[str, str]:
    """(sha256 hex, HMAC-SHA256 hex) of an artifact."""
    return hashlib.sha256(artifact).hexdigest(), hmac.new(key, artifact, hashlib.sha256).hexdigest()


def loads(artifact: bytes, *, sha256: str, signature: str, key: bytes) -> Model:
    """The model in an artifact, after checking its sha256 and its signature under ``key``."""
    actual_sha, actual_signature = sign(artifact, key)
    if not hmac.compare_digest(actual_sha, sha256):
        raise ModelIntegrityError(
            f"artifact sha256 is {actual_sha}, the registry says {sha256}: refusing to load"
        )
    if not hmac.compare_digest(actual_signature, signature):
        raise ModelIntegrityError(
            "artifact signature does not match this service's model key: it was not made here (or the key "
            "changed); retrain, or set FLEET_MODEL_KEY to the key that signed it"
        )
    payload = pickle.loads(artifact)  # noqa: S301 - signed by us, checked above
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != ARTIFACT_FORMAT:
        raise ModelIntegrityError(f"artifact format {found!r} is not {ARTIFACT_FORMAT}: retrain")
    model = payload["model"]
    if not isinstance(model, Model):
        raise ModelIntegrityError("artifact does not hold a model")
    return model
