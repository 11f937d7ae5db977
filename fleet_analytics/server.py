"""The production WSGI server: gunicorn, run in-process (``python -m fleet_analytics serve``).

gthread workers (a few threads each) so that a slow client uploading a large batch does not hold a
whole worker; the app is created once in the master and forked (``preload``), and each worker opens its
own PostgreSQL pool on first use. HTTPS when FLEET_TLS_CERT and FLEET_TLS_KEY are set (osqueryd's TLS
plugins speak HTTPS only; plain HTTP is for tests, the demo, and behind a TLS-terminating proxy).
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from fleet_analytics.config import Settings

log = logging.getLogger(__name__)

GC_GEN0_THRESHOLD = 100_000  # allocations between young-generation collections (default 700)


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.options = options
        self.application = app
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def gunicorn_options(settings: Settings, *, host: str, port: int, workers: int | None) -> dict[str, Any]:
    count = workers or settings.web_workers or (os.cpu_count() or 1)
    options: dict[str, Any] = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": count,
        "worker_class": "gthread",
        "threads": settings.web_threads,
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 5,
        "preload_app": True,
        "accesslog": "-" if settings.access_log else None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "fleet_analytics",
        "control_socket_disable": True,
        "limit_request_line": 8190,
    }
    if settings.tls_cert:
        options["certfile"] = settings.tls_cert
        options["keyfile"] = settings.tls_key
    return options


def serve(app: Flask, settings: Settings, *, host: str, port: int, workers: int | None = None) -> int:
    options = gunicorn_options(settings, host=host, port=port, workers=workers)
    # A log request allocates tens of thousands of short-lived objects (1,000 parsed rows): with the
    # default thresholds the cyclic collector runs dozens of times per request and rescans the app's
    # long-lived objects. Freeze what exists before the fork (also kinder to copy-on-write) and collect
    # the young generation less often; reference counting frees the rows themselves.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
    scheme = "https" if settings.tls_cert else "http"
    log.info("serving on %s://%s:%d with %d worker(s)", scheme, host, port, options["workers"])
    _Gunicorn(app, options).run()
    return 0
