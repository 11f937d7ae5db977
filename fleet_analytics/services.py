"""What a running app holds: settings, the database pool, the flow partition cache, the shipped packs
and the embedded PostgreSQL when it runs one. Kept in ``app.extensions["fleet"]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleet_analytics.config import Settings
from fleet_analytics.db import Database
from fleet_analytics.embedded import EmbeddedPostgres
from fleet_analytics.ingest.store import PartitionCache


@dataclass(slots=True)
class Services:
    settings: Settings
    db: Database
    shipped_packs: dict[str, dict[str, Any]]
    partitions: PartitionCache = field(default_factory=PartitionCache)
    embedded: EmbeddedPostgres | None = None

    def close(self) -> None:
        self.db.close()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
