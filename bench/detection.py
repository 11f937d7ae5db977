"""Detection throughput: scoring (featurise plus score) in flow windows per second, and retraining time,
each against a baseline measured in the same run.

    .venv/bin/python bench/detection.py --hosts 50 --days 8 --detector ensemble

A fleet is simulated (``fleet_analytics.simulate``, not timed, ending at the evaluation's fixed date so
every run scores the same windows) and summed into flow windows; the last day is the one scored, the
days before it the training period (50 hosts x 7 days is about 1M windows).

  retrain   ``fleet_analytics.analytics.model.train`` on the training windows, as the nightly task runs
            it (out-of-sample features over the folds, the detector fitted, validated, the profile
            and explanation tails kept). Baseline: PyOD's ``IForest`` (defaults) fitted on a feature
            matrix of the same number of rows (the training features, precomputed): the cost of the
            library call alone.
  score     the scored day in batches of ``--batch-minutes`` of windows, each with the look-back
            history the service reads for it (earlier windows of the batch's hosts towards the batch's
            destinations, ``lookback`` seconds back): ``Model.score`` featurises and scores. The
            batches go to ``--workers`` forked processes (the Celery worker's concurrency, one per
            core), as independent tasks. Reported in windows/s over the whole day, wall clock.
            Baseline: the detector's ``decision_function`` alone on the same windows' precomputed
            features, in the same batches and processes.
Ratios: our figure over the baseline's (score: throughput ratio; retrain: time ratio). Medians over
``--rounds``. The machine is shared and noisy: compare ratios, not absolute figures, across runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fleet_analytics.analytics.features import FEATURES, flow_windows  # noqa: E402
from fleet_analytics.analytics.model import train, training_features  # noqa: E402
from fleet_analytics.evaluate import EVALUATION_END  # noqa: E402
from fleet_analytics.simulate import simulate  # noqa: E402

log = logging.getLogger("bench.detection")
DAY = 86400


def history_for(windows: pd.DataFrame, batch: pd.DataFrame, lookback: int) -> pd.DataFrame:
    """What ``detect_rows_history`` reads for a batch: earlier windows of its hosts towards its
    destinations within the look-back."""
    begin = int(batch["window_start"].min())
    earlier = windows[(windows["window_start"] >= begin - lookback) & (windows["window_start"] < begin)]
    return earlier[
        earlier["host"].isin(pd.unique(batch["host"]))
        & earlier["remote_address"].isin(pd.unique(batch["remote_address"]))
    ]


_STATE: dict[str, Any] = {}


def _warm(_index: int) -> None:
    time.sleep(0.2)  # every worker up before the clock starts


def _score_batch(index: int) -> tuple[int, np.ndarray]:
    batch, history = _STATE["batches"][index]
    out = _STATE["model"].score(batch, history=history)
    return len(out), out[list(_STATE["model"].features)].to_numpy()


def _baseline_batch(index: int) -> int:
    return len(_STATE["model"].detector.decision_function(_STATE["features"][index]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    simulation = simulate(hosts=args.hosts, days=args.days, seed=args.seed, attacks=(), end=EVALUATION_END)
    windows = flow_windows(simulation.flows.rename(columns={"host_identifier": "host"}))
    cut = simulation.end - DAY
    clean = windows[windows["window_start"] < cut]
    test = windows[windows["window_start"] >= cut].reset_index(drop=True)
    log.info(
        "simulated %d hosts x %.1f days: %d windows (%d to train on, %d scored) in %.0f s",
        args.hosts,
        args.days,
        len(windows),
        len(clean),
        len(test),
        time.monotonic() - started,
    )
    from pyod.models.iforest import IForest  # noqa: PLC0415

    rounds: list[dict[str, float]] = []
    model = None
    for index in range(args.rounds):
        began = time.perf_counter()
        model = train(clean, detector=args.detector, contamination=args.contamination, seed=index)
        retrain_s = time.perf_counter() - began
        X = training_features(clean, folds=7)[list(FEATURES)].to_numpy()
        rows = np.resize(X, (len(clean), X.shape[1]))  # as many rows as the training windows
        began = time.perf_counter()
        IForest(random_state=index).fit(rows)
        baseline_fit_s = time.perf_counter() - began

        batches = []
        minutes = test["window_start"] // (args.batch_minutes * 60)
        for _key, batch in test.groupby(minutes, sort=True):
            batches.append((batch, history_for(windows, batch, model.lookback_seconds)))
        _STATE["model"], _STATE["batches"] = model, batches
        context = multiprocessing.get_context("fork")
        with context.Pool(args.workers) as pool:  # forked after the state is set: nothing is pickled in
            pool.map(_warm, range(args.workers))
            began = time.perf_counter()
            outputs = pool.map(_score_batch, range(len(batches)), chunksize=1)
            score_s = time.perf_counter() - began
            scored = sum(count for count, _ in outputs)
            _STATE["features"] = [matrix for _, matrix in outputs]
        with context.Pool(args.workers) as pool:
            pool.map(_warm, range(args.workers))
            began = time.perf_counter()
            pool.map(_baseline_batch, range(len(batches)), chunksize=1)
            baseline_score_s = time.perf_counter() - began
        figures = {
            "retrain_s": retrain_s,
            "baseline_fit_s": baseline_fit_s,
            "retrain_ratio": retrain_s / baseline_fit_s,
            "score_windows_per_s": scored / score_s,
            "baseline_windows_per_s": scored / baseline_score_s,
            "score_ratio": (scored / score_s) / (scored / baseline_score_s),
        }
        log.info("round %d: %s", index + 1, {k: round(v, 3) for k, v in figures.items()})
        rounds.append(figures)
    assert model is not None
    return {
        "command": " ".join(sys.argv),
        "hosts": args.hosts,
        "days": args.days,
        "detector": args.detector,
        "training_windows": len(clean),
        "scored_windows": len(test),
        "batches": len(batches),
        "workers": args.workers,
        "median": {key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]},
        "rounds": rounds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--days", type=float, default=8.0, help="the last day is scored, the rest trained on")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--detector", default="ensemble")
    parser.add_argument("--contamination", type=float, default=0.0002)
    parser.add_argument("--batch-minutes", type=int, default=5, help="scoring batch span")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="scoring processes (the worker's concurrency)")
    args = parser.parse_args()
    if args.hosts < 1 or args.days <= 1 or args.rounds < 1 or args.batch_minutes < 1 or args.workers < 1:
        parser.error("--hosts, --rounds, --batch-minutes and --workers must be at least 1, --days above 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
