"""Rollups of the flows for the dashboard: traffic per host and hour, per application and hour, per
destination and hour, and each host's applications and destinations per day (sql/fleet/rollup_*.sql).

:func:`roll_up_pending` sums ingested batches into them exactly once: in one transaction it claims
batches (``rolled_batches`` rows), reads their flow rows once into a temporary table, and upserts the
five sums. A crash before the commit leaves the batches unclaimed for the next run; one rollup runs
at a time (an advisory lock; a second caller returns at once and the first takes the batches). The
Celery tasks that score new batches run it first, so the overview follows ingest within seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

from fleet_analytics.config import Settings
from fleet_analytics.db import Database, load_sql

log = logging.getLogger(__name__)

ROLLUPS: Final = (
    "rollup_traffic",
    "rollup_apps",
    "rollup_destinations",
    "rollup_host_apps",
    "rollup_host_destinations",
)
CLAIM_BATCHES: Final = 500  # batches per transaction (a few hundred thousand rows at most)


@dataclass
class RollupResult:
    batches: int = 0
    rows: int = 0
    runs: int = 0
    seconds: float = 0.0
    busy: bool = False  # another rollup held the lock


def roll_up_once(db: Database, settings: Settings, *, limit: int = CLAIM_BATCHES) -> RollupResult:
    """Claim up to ``limit`` pending batches and sum them into the rollups, in one transaction."""
    started = time.monotonic()
    result = RollupResult()
    with db.transaction() as cur:
        cur.execute(load_sql("rollup_lock"))
        if not cur.fetchone()[0]:
            result.busy = True
            return result
        cur.execute(
            load_sql("rollup_claim"), {"lookback_hours": settings.score_lookback_hours, "limit": limit}
        )
        claimed = cur.fetchall()
        if not claimed:
            return result
        cur.execute(
            load_sql("rollup_stage"),
            {
                "host_ids": sorted({int(host) for _b, host, _l, _h in claimed}),
                "low": min(int(low or 0) for _b, _h, low, _x in claimed),
                "high": max(int(high or 0) for _b, _h, _l, high in claimed),
                "batch_ids": [int(batch) for batch, *_ in claimed],
            },
        )
        result.rows = cur.rowcount
        for name in ROLLUPS:
            cur.execute(load_sql(name))
        result.batches = len(claimed)
        result.runs = 1
    result.seconds = time.monotonic() - started
    return result


def roll_up_pending(db: Database, settings: Settings, *, max_runs: int = 100) -> RollupResult:
    """Roll up every pending batch (in transactions of :data:`CLAIM_BATCHES`)."""
    total = RollupResult()
    started = time.monotonic()
    for _ in range(max_runs):
        result = roll_up_once(db, settings)
        total.busy = total.busy or result.busy
        if result.batches == 0:
            break
        total.batches += result.batches
        total.rows += result.rows
        total.runs += 1
    total.seconds = time.monotonic() - started
    if total.batches:
        log.info("rolled up %d batches (%d flow rows) in %.2f s", total.batches, total.rows, total.seconds)
    return total


def delete_rollups_before(db: Database, before: int) -> int:
    """Retention: rollup rows of hours and days before ``before`` (epoch s) are deleted."""
    with db.transaction() as cur:
        cur.execute(load_sql("rollups_delete_before"), {"before": int(before)})
        return int(cur.fetchone()[0])
