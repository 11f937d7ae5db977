"""What a running app holds: settings, the database pool, the flow partition cache, the shipped packs
and the embedded PostgreSQL when it runs one. Kept in ``app.extensions["fleet"]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleet_analytics.config import Settings
from fleet_analytics.db import Database
from fleet_analytics.embedded import EmbeddedPostgres
from fleet_analytics.ingest.store import PartitionCache
from fleet_analytics.tasks.queue import TaskQueue


@dataclass(slots=True)
class Services:
    settings: Settings
    db: Database
    shipped_packs: dict[str, dict[str, Any]]
    partitions: PartitionCache = field(default_factory=PartitionCache)
    embedded: EmbeddedPostgres | None = None
    queue: TaskQueue | None = None  # tasks to the worker (scoring after ingest when FLEET_SCORE_ON_INGEST)

    def close(self) -> None:
        if self.queue is not None:
            self.queue.close()
        self.db.close()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
