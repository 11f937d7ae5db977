"""The logger plugin ``net_forwarder``: osqueryd's result and status logs into the outbound spool.

Fleet admins enable it beside their own logger (``--logger_plugin=filesystem,net_forwarder``). It never
touches the network: it only appends to the spool (extension.spool), from which the forwarder sends
batches to the fleet service once it has them acknowledged.

Requests, as osqueryd sends them to a logger (osquery/core/plugins/logger.cpp):

``{"string": line}``            a result log line (JSON)                -> spooled as ``result``
``{"snapshot": line}``          a snapshot query's result line          -> spooled as ``result``
``{"status": "...", "log": j}`` status log lines, j a JSON list of ``{s, f, i, m, c, u, h}``
                                                                        -> spooled as ``status``
``{"init": name, "log": j}``    status lines buffered before the logger started -> as ``status``
``{"action": "features"}``      answered with the status *code* 1 (LOGGER_FEATURE_LOGSTATUS): this
                                logger wants status logs, not event logs
``{"event": ...}``              never requested (see features); answered with an error

Status lines are stored with the field names of osquery's TLS logger (severity, filename, line,
message, version, unixTime, calendarTime, hostIdentifier), so the fleet service receives the same
shape from this plugin as from a stock osqueryd ``--logger_plugin=tls``. Every answer is a status, never
an exception (the SDK's own LoggerPlugin answers init/status with an error and cannot answer features).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from osquery import LoggerPlugin
from osquery.extensions.ttypes import ExtensionResponse, ExtensionStatus

from extension.spool import Spool, SpoolError

log = logging.getLogger(__name__)

LOGGER_NAME = "net_forwarder"
FEATURE_LOGSTATUS = 1  # osquery's LOGGER_FEATURE_LOGSTATUS
STATUS_FIELDS = {
    "s": "severity",
    "f": "filename",
    "i": "line",
    "m": "message",
    "c": "version",
    "u": "unixTime",
}


class LoggerRequestError(ValueError):
    pass


def status_lines(raw: str) -> list[str]:
    """osqueryd's intermediate status lines (a JSON list of ``{s, f, i, m, c, u, h}``) as TLS-logger
    status log lines."""
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise LoggerRequestError(f"the status 'log' is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise LoggerRequestError("the status 'log' must be a JSON list")
    lines = []
    for entry in entries:
        if not isinstance(entry, dict) or not {"s", "m", "u"} <= entry.keys():
            raise LoggerRequestError("each status line needs at least s, m and u")
        record: dict[str, Any] = {name: entry.get(short, "") for short, name in STATUS_FIELDS.items()}
        record["hostIdentifier"] = entry.get("h", "")
        try:
            record["calendarTime"] = time.strftime("%a %b %d %H:%M:%S %Y UTC", time.gmtime(int(entry["u"])))
        except (TypeError, ValueError, OverflowError):
            raise LoggerRequestError(f"status line time u={entry['u']!r} is not epoch seconds") from None
        lines.append(json.dumps(record, separators=(",", ":")))
    return lines


def handle(request: Mapping[str, str], spool: Spool) -> tuple[int, str]:
    """Answer one logger request: (status code, message). Pure apart from the spool append."""
    if "string" in request:
        spool.append("result", [request["string"]])
    elif "snapshot" in request:
        spool.append("result", [request["snapshot"]])
    elif "status" in request or "init" in request:
        lines = status_lines(request.get("log", "[]"))
        if lines:
            spool.append("status", lines)
    elif request.get("action") == "features":
        return FEATURE_LOGSTATUS, "OK"  # osqueryd reads the code as a feature bitmask
    elif "event" in request:
        return 1, "net_forwarder does not take event logs (its features do not ask for them)"
    else:
        return 1, f"unsupported logger request with keys {sorted(request)}"
    return 0, "OK"


class NetForwarder(LoggerPlugin):  # type: ignore[misc]  # the SDK is untyped
    _spool: ClassVar[Spool | None] = None
    _path: ClassVar[Path | None] = None
    _max_bytes: ClassVar[int] = 100 << 20
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def configure(cls, path: Path, *, max_bytes: int) -> None:
        with cls._lock:
            cls._path, cls._max_bytes, cls._spool = path, max_bytes, None

    def name(self) -> str:
        return LOGGER_NAME

    def log_string(self, value: str) -> Any:  # required by the SDK's abstract class; call() routes
        return self._answer({"string": value}).status

    def _spool_now(self) -> Spool:
        with self._lock:
            if NetForwarder._spool is None:
                if NetForwarder._path is None:
                    raise SpoolError("the logger plugin has no spool configured")
                NetForwarder._spool = Spool(NetForwarder._path, max_bytes=NetForwarder._max_bytes)
            return NetForwarder._spool

    def _answer(self, request: Mapping[str, str]) -> Any:
        try:
            code, message = handle(request, self._spool_now())
        except (LoggerRequestError, SpoolError, ValueError) as exc:
            code, message = 1, str(exc)
        except Exception as exc:  # never let the SDK turn it into an opaque Thrift error
            log.exception("logger request failed")
            code, message = 1, f"internal error: {exc}"
        return ExtensionResponse(status=ExtensionStatus(code=code, message=message), response=[])

    def call(self, context: Mapping[str, str]) -> Any:
        return self._answer(context)
