"""The web side of the task queue: after a batch is stored, ask the workers to score it.

The web process never starts a broker. It enqueues when one is there: FLEET_BROKER_URL, or the
embedded Redis a worker (or the demo) started in the data directory. Without one, or when the broker
fails, nothing is lost: the batch stays pending and the catch-up task scores it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Final

from fleet_analytics.config import Settings
from fleet_analytics.embedded import EmbeddedRedis

log = logging.getLogger(__name__)

CHECK_EVERY: Final = 5.0  # seconds between looks for the embedded broker's socket
WARN_EVERY: Final = 60.0


class TaskQueue:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded = None if settings.broker_url else EmbeddedRedis(Path(settings.data_dir))
        self.broker_url = settings.broker_url or (self.embedded.url if self.embedded else "")
        self._celery: Any = None
        self._lock = threading.Lock()
        self._available = False
        self._checked = 0.0
        self._warned = 0.0
        self.sent = 0
        self.failed = 0

    def available(self) -> bool:
        if self.embedded is None:
            return True
        now = time.monotonic()
        if now - self._checked >= CHECK_EVERY:
            self._available = self.embedded.socket.exists()
            self._checked = now
        return self._available

    def _app(self) -> Any:
        with self._lock:
            if self._celery is None:
                from celery import Celery  # noqa: PLC0415 - only once a broker is there

                from fleet_analytics.tasks import celery_config  # noqa: PLC0415

                celery = Celery("fleet_analytics.web", set_as_current=False)
                celery.config_from_object(celery_config(self.settings, self.broker_url))
                self._celery = celery
            return self._celery

    def score_batch(self, batch_id: int) -> bool:
        """Enqueue fleet.score_batches for one stored batch; False when not sent (it stays pending)."""
        if not self.available():
            return False
        from fleet_analytics.tasks import SCORE_BATCHES, SCORE_TASK_EXPIRES  # noqa: PLC0415

        try:
            self._app().send_task(SCORE_BATCHES, args=[[batch_id]], expires=SCORE_TASK_EXPIRES, retry=False)
        except Exception as exc:  # any broker failure: the catch-up scores the batch later
            self.failed += 1
            now = time.monotonic()
            if now - self._warned >= WARN_EVERY:
                self._warned = now
                log.warning("could not enqueue scoring (%s); pending batches are scored by the catch-up", exc)
            self._checked = 0.0
            return False
        self.sent += 1
        return True

    def send(self, name: str, *, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None) -> bool:
        """Enqueue task ``name``; False (and logged) when no broker takes it."""
        if not self.available():
            return False
        try:
            self._app().send_task(name, args=args or [], kwargs=kwargs or {}, retry=False)
        except Exception as exc:  # any broker failure: the caller says so
            self.failed += 1
            log.warning("could not enqueue %s: %s", name, exc)
            self._checked = 0.0
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        with self._lock:
            if self._celery is not None:
                self._celery.close()
                self._celery = None
