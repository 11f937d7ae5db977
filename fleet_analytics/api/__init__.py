"""The analysts' JSON API: alerts (list, detail with the flow windows behind them, triage) and models.

Every route needs ``Authorization: Bearer <token>``; tokens are made with
``python -m fleet_analytics token create`` and stored as sha256 only. Errors are JSON with a reason:
401 for a missing or unknown token, 400 for a bad parameter or body (naming it), 404 for no such alert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import wraps
from typing import Any, Final, TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request

from fleet_analytics.db import load_sql
from fleet_analytics.ingest.protocol import RequestError
from fleet_analytics.services import Services

bp = Blueprint("api", __name__, url_prefix="/api/v1")

STATUSES: Final = ("new", "acknowledged", "resolved", "false_positive", "suppressed")
TRIAGE_STATUSES: Final = ("new", "acknowledged", "resolved", "false_positive")
SEVERITIES: Final = ("low", "medium", "high", "critical")
MAX_PAGE: Final = 500
MAX_NOTE: Final = 4000
ROLES: Final = ("admin", "analyst")

F = TypeVar("F", bound=Callable[..., Any])


def services() -> Services:
    fleet: Services = current_app.extensions["fleet"]
    return fleet


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def token_holder(token: str) -> dict[str, Any] | None:
    digest = token_digest(token)
    with services().db.transaction() as cur:
        cur.execute(load_sql("api_token_lookup"), {"token_sha256": digest})
        row = cur.fetchone()
        if row is None:
            cur.execute(load_sql("api_token_get"), {"token_sha256": digest})
            row = cur.fetchone()
    if row is None:
        return None
    return {"id": int(row[0]), "name": str(row[1]), "role": str(row[2])}


class Unauthorized(RequestError):
    def __init__(self, reason: str) -> None:
        super().__init__(401, reason)


def token_required(view: F) -> F:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send Authorization: Bearer <token> (python -m fleet_analytics token create)")
        holder = token_holder(token.strip())
        if holder is None:
            raise Unauthorized("the API token is unknown or revoked: create one with `token create`")
        g.api_token = holder
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in row.items()}


def _dicts(cur: Any) -> list[dict[str, Any]]:
    names = [column.name for column in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _rows(cur: Any) -> list[dict[str, Any]]:
    return [_jsonable(row) for row in _dicts(cur)]


def _list_arg(name: str, allowed: tuple[str, ...]) -> list[str] | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    values = [value.strip() for value in raw.split(",") if value.strip()]
    bad = [value for value in values if value not in allowed]
    if bad or not values:
        raise RequestError(400, f"{name} {raw!r}: use a comma-separated list of {', '.join(allowed)}")
    return values


def _int_arg(name: str, *, minimum: int, maximum: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(400, f"{name} {raw!r} is not a whole number") from None
    if value < minimum or (maximum is not None and value > maximum):
        limits = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise RequestError(400, f"{name} {value} is out of range: use {limits}")
    return value


def _since_arg() -> datetime | None:
    raw = request.args.get("since")
    if raw is None or raw == "":
        return None
    try:
        if raw.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(raw), tz=UTC)
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise RequestError(400, f"since {raw!r}: use epoch seconds or an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@bp.get("/alerts")
@token_required
def list_alerts() -> Response:
    known = {"since", "host", "status", "severity", "limit", "cursor"}
    unknown = sorted(set(request.args) - known)
    if unknown:
        raise RequestError(400, f"unknown parameter(s) {', '.join(unknown)}: use {', '.join(sorted(known))}")
    host = request.args.get("host") or None
    host_id = int(host) if host is not None and host.isdigit() else None
    limit = _int_arg("limit", minimum=1, maximum=MAX_PAGE) or 50
    params = {
        "since": _since_arg(),
        "host_id": host_id,
        "host_identifier": host if host is not None and host_id is None else None,
        "statuses": _list_arg("status", STATUSES),
        "severities": _list_arg("severity", SEVERITIES),
        "before_id": _int_arg("cursor", minimum=1),
        "limit": limit + 1,
    }
    with services().db.transaction() as cur:
        cur.execute(load_sql("alerts_list"), params)
        alerts = _rows(cur)
    more = len(alerts) > limit
    alerts = alerts[:limit]
    return jsonify({"alerts": alerts, "next_cursor": alerts[-1]["id"] if more else None})


def _alert(cur: Any, alert_id: int) -> dict[str, Any]:
    cur.execute(load_sql("alert_get"), {"alert_id": alert_id})
    found = _rows(cur)
    if not found:
        raise RequestError(404, f"there is no alert {alert_id}")
    return found[0]


def alert_with_evidence(cur: Any, alert_id: int, *, limit: int) -> dict[str, Any] | None:
    """An alert with the flow windows (``flow_windows``) and the endpoint's rows (``flows``) behind it,
    ``limit`` of each; None when there is no such alert. Values as the database returns them."""
    cur.execute(load_sql("alert_get"), {"alert_id": alert_id})
    found = _dicts(cur)
    if not found:
        return None
    alert = found[0]
    cur.execute(load_sql("alert_windows_list"), {"alert_id": alert_id, "limit": limit})
    alert["flow_windows"] = _dicts(cur)
    cur.execute(
        load_sql("alert_flows"),
        {
            "alert_id": alert_id,
            "host_id": alert["host_id"],
            "first_window": alert["first_window"],
            "last_window": alert["last_window"],
            "limit": limit,
        },
    )
    alert["flows"] = _dicts(cur)
    return alert


@bp.get("/alerts/<int:alert_id>")
@token_required
def get_alert(alert_id: int) -> Response:
    limit = _int_arg("limit", minimum=1, maximum=5000) or 500
    with services().db.transaction() as cur:
        alert = alert_with_evidence(cur, alert_id, limit=limit)
    if alert is None:
        raise RequestError(404, f"there is no alert {alert_id}")
    alert["flow_windows"] = [_jsonable(window) for window in alert["flow_windows"]]
    alert["flows"] = [_jsonable(flow) for flow in alert["flows"]]
    return jsonify(_jsonable(alert))


@bp.patch("/alerts/<int:alert_id>")
@token_required
def update_alert(alert_id: int) -> Response:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise RequestError(400, 'send a JSON object: {"status": ..., "note": ...}')
    unknown = sorted(set(body) - {"status", "note"})
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(unknown)}: only status and note can change")
    status = body.get("status")
    note = body.get("note")
    if status is None and note is None:
        raise RequestError(400, "send status, note or both")
    if status is not None and status not in TRIAGE_STATUSES:
        raise RequestError(400, f"status {status!r}: use one of {', '.join(TRIAGE_STATUSES)}")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise RequestError(400, f"note must be text of at most {MAX_NOTE} characters")
    actor = f"token:{g.api_token['name']}"
    with services().db.transaction() as cur:
        cur.execute(
            load_sql("alert_update"), {"alert_id": alert_id, "status": status, "note": note, "actor": actor}
        )
        if cur.fetchone() is None:
            raise RequestError(404, f"there is no alert {alert_id}")
        alert = _alert(cur, alert_id)
    return jsonify(alert)


@bp.get("/models")
@token_required
def list_models() -> Response:
    limit = _int_arg("limit", minimum=1, maximum=MAX_PAGE) or 20
    with services().db.transaction() as cur:
        cur.execute(load_sql("models_list"), {"limit": limit})
        models = _rows(cur)
    return jsonify({"models": models})
