"""The fleet-side analytics service: osquery TLS ingest into PostgreSQL, detection (Celery workers,
PyOD), the analysts' JSON API and dashboard.

``create_app(test_config=None)`` builds the Flask app: settings from defaults, then ``FLEET_*``
environment variables, then ``test_config`` (validated: a bad one raises ConfigError naming it). With no
``FLEET_DATABASE_URL`` it starts an embedded PostgreSQL in ``FLEET_DATA_DIR``, migrates it, and stops it
at exit.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from fleet_analytics.config import Settings, as_flask_config, load_settings
from fleet_analytics.dashboard import error_page, register_dashboard, wants_html
from fleet_analytics.db import Database, DatabaseUnavailable, load_sql, migrate
from fleet_analytics.embedded import EmbeddedPostgres
from fleet_analytics.ingest.protocol import RequestError
from fleet_analytics.ingest.store import make_secret_active
from fleet_analytics.packs import shipped_packs
from fleet_analytics.services import Services
from fleet_analytics.tasks.queue import TaskQueue

log = logging.getLogger(__name__)

__all__ = ["create_app"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    settings = load_settings(test_config)
    app = Flask(__name__)
    app.config.update(as_flask_config(settings))
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    packs = shipped_packs(settings.packs_dir)
    embedded = None
    dsn = settings.database_url
    if not dsn:
        embedded = EmbeddedPostgres(settings.data_dir)
        dsn = embedded.start()
        atexit.register(embedded.stop)
        migrate(dsn)
    db = Database(dsn, pool_max=settings.pool_max, statement_timeout_ms=settings.statement_timeout_ms)
    queue = TaskQueue(settings)
    fleet = Services(settings=settings, db=db, shipped_packs=packs, embedded=embedded, queue=queue)
    app.extensions["fleet"] = fleet
    apply_enroll_secret(fleet.db, settings)

    from fleet_analytics.api import bp as api_bp  # noqa: PLC0415
    from fleet_analytics.ingest.views import bp as osquery_bp  # noqa: PLC0415 - views import the app's pieces

    app.register_blueprint(osquery_bp)
    app.register_blueprint(api_bp)
    register_dashboard(app)
    register_error_handlers(app)

    @app.get("/healthz")
    def healthz() -> Response:
        with fleet.db.transaction() as cur:
            cur.execute(load_sql("health"))
        return jsonify({"status": "ok"})

    return app


def apply_enroll_secret(db: Database, settings: Settings) -> None:
    """FLEET_ENROLL_SECRET becomes the one active secret. With PostgreSQL down this is logged and left
    to the next start (the service still starts, and answers 503 until the database is back)."""
    if not settings.enroll_secret:
        return
    try:
        with db.transaction() as cur:
            revoked = make_secret_active(cur, settings.enroll_secret)
    except DatabaseUnavailable as exc:
        log.warning("FLEET_ENROLL_SECRET not applied now: %s", exc)
        return
    if revoked:
        log.info("FLEET_ENROLL_SECRET is now the enroll secret; %d other(s) revoked", revoked)


def error(status: int, reason: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": reason, **extra}), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RequestError)
    def request_error(exc: RequestError) -> tuple[Response, int]:
        if exc.status == 401 and request.path.startswith("/api/v1/osquery/"):
            return error(401, exc.reason, node_invalid=True)
        if exc.status == 401:
            response, status = error(401, exc.reason)
            response.headers["WWW-Authenticate"] = 'Bearer realm="fleet"'
            return response, status
        return error(exc.status, exc.reason)

    @app.errorhandler(DatabaseUnavailable)
    def unavailable(exc: DatabaseUnavailable) -> Any:
        retry = app.config["FLEET_RETRY_AFTER_SECONDS"]
        log.warning("%s %s: 503: %s", request.method, request.path, exc)
        if wants_html():
            return error_page(503, f"The database is unavailable; retry in {retry} s. ({exc})")
        response, status = error(503, f"the database is unavailable; retry later ({exc})", retry_after=retry)
        response.headers["Retry-After"] = str(retry)
        return response, status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        if wants_html():
            pages = {404: f"There is no page {request.path}.", 405: f"{request.method} is not allowed here."}
            default = exc.description if exc.description and exc.description != type(exc).description else ""
            return error_page(status, default or pages.get(status, exc.name))
        reasons = {
            413: f"the request body exceeds {app.config['MAX_CONTENT_LENGTH']} bytes: send smaller batches",
            400: f"bad request: {exc.description}",
            404: f"no such endpoint: {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
        }
        return error(status, reasons.get(status, exc.description or exc.name))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("%s %s failed", request.method, request.path)
        if wants_html():
            return error_page(500, f"Something went wrong on our side ({type(exc).__name__}); it is logged.")
        return error(500, f"internal error ({type(exc).__name__}); nothing was acknowledged: retry later")
