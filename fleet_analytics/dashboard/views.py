"""The dashboard's routes. Every query is a named file in sql/fleet/ (``dash_*`` for the dashboard's
own); the pages read rollups (sql/fleet/rollup_*.sql) rather than scanning flows, except the flows
explorer and an alert's chart, which read flows through their indexes within a bounded time range."""

from __future__ import annotations

import calendar
import csv
import io
import ipaddress
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from functools import wraps
from typing import Any, Final, TypeVar

from flask import (
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from werkzeug.wrappers import Response as WerkzeugResponse

from fleet_analytics.api import MAX_NOTE, SEVERITIES, STATUSES, TRIAGE_STATUSES, alert_with_evidence
from fleet_analytics.dashboard import bp, csrf_token, safe_next, services
from fleet_analytics.dashboard.auth import authenticate
from fleet_analytics.db import load_sql
from fleet_analytics.detection import DetectionError, promote, rollback
from fleet_analytics.packs import PackError, admin_packs, delete_pack, save_pack, validate_pack

F = TypeVar("F", bound=Callable[..., Any])

RANGES: Final = {6: "6 hours", 24: "24 hours", 72: "3 days", 168: "7 days", 720: "30 days"}
PAGE: Final = 50
EVIDENCE_ROWS: Final = 100  # flow windows and endpoint rows shown on an alert's page (all: the JSON API)
FLOW_PAGE: Final = 100
FLOW_MAX_SPAN: Final = 7 * 86400
CSV_MAX_ROWS: Final = 1_000_000
ALERT_SORTS: Final = {
    "newest": "newest",
    "score": "highest score",
    "severity": "severity",
    "window": "latest window",
}
SHA256: Final = re.compile(r"^[0-9a-fA-F]{64}$")
CSV_LEFT_OUT: Final = frozenset({"host_id", "flow_key"})  # the explorer's keyset, not data


def admin_required(view: F) -> F:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not g.analyst.is_admin:
            abort(403, "this needs an admin account (python -m fleet_analytics create-user --role admin)")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def rows(cur: Any) -> list[dict[str, Any]]:
    names = [column.name for column in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def query(name: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    with services().db.transaction() as cur:
        cur.execute(load_sql(name), dict(params or {}))
        return rows(cur)


def range_hours() -> int:
    raw = request.args.get("hours", "24")
    if not raw.isdigit() or int(raw) not in RANGES:
        abort(400, f"hours {raw!r}: use one of {', '.join(str(hours) for hours in RANGES)}")
    return int(raw)


def int_arg(name: str, default: int | None = None, *, minimum: int = 0, maximum: int = 2**62) -> int | None:
    raw = request.args.get(name, "").strip()
    if raw == "":
        return default
    if not raw.lstrip("-").isdigit() or not minimum <= int(raw) <= maximum:
        abort(400, f"{name} {raw!r}: use a whole number from {minimum} to {maximum}")
    return int(raw)


def choices(name: str, allowed: tuple[str, ...]) -> list[str] | None:
    values = [value for value in request.args.getlist(name) if value]
    bad = [value for value in values if value not in allowed]
    if bad:
        abort(400, f"{name} {bad[0]!r}: use {', '.join(allowed)}")
    return values or None


def paging(rows: list[dict[str, Any]], page: int) -> dict[str, int]:
    """The total (from the query's ``count(*) OVER ()`` column), this page and the number of pages."""
    total = int(rows[0]["total"]) if rows else 0
    return {"total": total, "page": page, "pages": max(1, -(-total // PAGE))}


def chart(kind: str, labels: list[Any], datasets: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """A chart for static/dashboard.js: labels (epoch s for time axes), datasets {label, data, kind}."""
    return {"kind": kind, "labels": labels, "datasets": datasets, **options}


def traffic_chart(hours: list[dict[str, Any]], since: int) -> dict[str, Any]:
    """Bytes sent and received per hour (rows of dash_traffic), on an axis from ``since`` to now."""
    return chart(
        "line",
        [int(row["hour"]) for row in hours],
        [
            {"label": "sent", "data": [int(row["bytes_sent"]) for row in hours]},
            {"label": "received", "data": [int(row["bytes_received"]) for row in hours]},
        ],
        unit="bytes",
        range=[since, int(time.time())],
    )


# --------------------------------------------------------------------------------------------- login


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = ""
    status = 200
    if request.method == "POST":
        analyst = authenticate(
            services().db, request.form.get("username", "").strip(), request.form.get("password", "")
        )
        if analyst is not None:
            target = safe_next(request.form.get("next"))
            session.clear()
            session.permanent = True
            session["analyst_id"] = analyst.id
            session["epoch"] = analyst.session_epoch
            csrf_token()  # a fresh token for the new session
            return redirect(target)
        error = "Wrong user name or password, or the account is locked or disabled."
        status = 401
    csrf_token()
    return render_template("login.html", error=error, next=request.values.get("next", "")), status


@bp.post("/logout")
def logout() -> WerkzeugResponse:
    session.clear()
    return redirect(url_for("dashboard.login"))


# ------------------------------------------------------------------------------------------ overview


@bp.get("/")
def overview() -> str:
    hours = range_hours()
    now = int(time.time())
    since = (now - hours * 3600) // 3600 * 3600
    params = {"since": since, "host_id": None, "limit": 10}
    traffic = query("dash_traffic", params)
    by_hour = query("dash_alerts_by_hour", params)
    hour_labels = list(range(since, now // 3600 * 3600 + 1, 3600))
    severity_series = {severity: [0] * len(hour_labels) for severity in SEVERITIES}
    position = {hour: index for index, hour in enumerate(hour_labels)}
    for row in by_hour:
        if int(row["hour"]) in position:
            severity_series[row["severity"]][position[int(row["hour"])]] += int(row["alerts"])
    bucket = 60 if hours <= 24 else 600 if hours <= 168 else 3600
    ingest = query("dash_ingest_rate", {"since": since, "bucket": bucket})
    # every bucket of the range, empty ones as zeros (a line between two busy minutes is not traffic)
    ingested = {int(row["at"]): row for row in ingest}
    buckets = list(range(since // bucket * bucket, now // bucket * bucket + 1, bucket))
    counts = query("dash_alert_counts")
    open_alerts = {severity: 0 for severity in SEVERITIES}
    for row in counts:
        if row["status"] in ("new", "acknowledged"):
            open_alerts[row["severity"]] += int(row["alerts"])
    return render_template(
        "overview.html",
        hours=hours,
        ranges=RANGES,
        traffic_chart=traffic_chart(traffic, since),
        alerts_chart=chart(
            "bar",
            hour_labels,
            [{"label": severity, "data": severity_series[severity]} for severity in SEVERITIES],
            stacked=True,
        ),
        ingest_chart=chart(
            "line",
            buckets if ingest else [],
            [
                {
                    "label": f"flow rows per {bucket // 60} min",
                    "data": [int(ingested[at]["flow_rows"]) if at in ingested else 0 for at in buckets],
                },
                {
                    "label": "quarantined",
                    "data": [int(ingested[at]["quarantined"]) if at in ingested else 0 for at in buckets],
                },
            ],
            range=[since, now],
        ),
        traffic_total=sum(int(row["bytes_sent"]) + int(row["bytes_received"]) for row in traffic),
        open_alerts=open_alerts,
        top_hosts=query("dash_top_hosts", params),
        top_apps=query("dash_top_apps", params),
        top_destinations=query("dash_top_destinations", params),
        quarantine=query("dash_quarantine_by_filter", {"since": since}),
        networks=query("dash_agent_spool"),
        seen=query("dash_hosts_seen")[0],
        ingest_rows=sum(int(row["flow_rows"]) for row in ingest),
        bucket=bucket,
    )


# -------------------------------------------------------------------------------------------- alerts


def _alert_filters() -> dict[str, Any]:
    sort = request.args.get("sort", "newest")
    if sort not in ALERT_SORTS:
        abort(400, f"sort {sort!r}: use one of {', '.join(ALERT_SORTS)}")
    since_hours = int_arg("since_hours", None, minimum=1, maximum=24 * 366)
    return {
        "statuses": choices("status", STATUSES),
        "severities": choices("severity", SEVERITIES),
        "host_id": int_arg("host_id", None, minimum=1),
        "host": request.args.get("host", "").strip() or None,
        "q": request.args.get("q", "").strip() or None,
        "since": int(time.time()) - since_hours * 3600 if since_hours else None,
        "sort": sort,
    }


@bp.get("/alerts")
def alerts() -> str:
    filters = _alert_filters()
    page = int_arg("page", 1, minimum=1, maximum=100_000) or 1
    found = query("dash_alerts", {**filters, "limit": PAGE, "offset": (page - 1) * PAGE})
    return render_template(
        "alerts.html",
        alerts=found,
        **paging(found, page),
        filters=filters,
        args=request.args,
        statuses=STATUSES,
        triage_statuses=TRIAGE_STATUSES,
        severities=SEVERITIES,
        sorts=ALERT_SORTS,
    )


def _triage_form() -> tuple[str, str | None]:
    status = request.form.get("status", "")
    if status not in TRIAGE_STATUSES:
        abort(400, f"status {status!r}: use one of {', '.join(TRIAGE_STATUSES)}")
    note = request.form.get("note", "")
    if len(note) > MAX_NOTE:
        abort(400, f"the note has {len(note)} characters: keep it to {MAX_NOTE}")
    return status, note if note.strip() else None


@bp.post("/alerts/bulk")
def alerts_bulk() -> WerkzeugResponse:
    status, note = _triage_form()
    raw = request.form.getlist("alert_id")
    if not raw:
        abort(400, "no alerts chosen: tick the alerts to change first")
    if not all(value.isdigit() for value in raw) or len(raw) > 1000:
        abort(400, "alert ids must be whole numbers, at most 1000 at once")
    changed = query(
        "dash_alerts_bulk_update",
        {
            "status": status,
            "note": note,
            "actor": g.analyst.username,
            "alert_ids": sorted({int(value) for value in raw}),
        },
    )
    flash(f"{len(changed)} alert(s) marked {status.replace('_', ' ')}.")
    return redirect(
        safe_next(request.form.get("back")) if request.form.get("back") else url_for("dashboard.alerts")
    )


@bp.get("/alerts/<int:alert_id>")
def alert_detail(alert_id: int) -> str:
    with services().db.transaction() as cur:
        alert = alert_with_evidence(cur, alert_id, limit=EVIDENCE_ROWS)
        if alert is None:
            abort(404, f"there is no alert {alert_id}")
        windows, flows = alert["flow_windows"], alert["flows"]
        margin = 12 * 3600
        cur.execute(
            load_sql("dash_alert_series"),
            {
                "host_id": alert["host_id"],
                "since": int(alert["first_window"]) - margin,
                "until": int(alert["last_window"]) + margin,
                "process_path": alert["process_path"],
                "remote_address": alert["remote_address"],
            },
        )
        series = rows(cur)
    anomalous = {int(window["window_start"]) for window in windows}
    labels = [int(row["window_start"]) for row in series]
    return render_template(
        "alert.html",
        alert=alert,
        reasons=alert["reasons"]
        if isinstance(alert["reasons"], list)
        else json.loads(alert["reasons"] or "[]"),
        windows=windows,
        flows=flows,
        triage_statuses=TRIAGE_STATUSES,
        series_chart=chart(
            "line",
            labels,
            [
                {"label": "sent (all destinations)", "data": [int(row["bytes_sent"]) for row in series]},
                {
                    "label": "received (all destinations)",
                    "data": [int(row["bytes_received"]) for row in series],
                },
                *(
                    [
                        {
                            "label": f"sent to {alert['remote_address']}",
                            "colour": "#7a4cc2",
                            "data": [int(row["destination_sent"] or 0) for row in series],
                        }
                    ]
                    if alert["remote_address"]
                    else []
                ),
                {
                    "label": "anomalous window",
                    "colour": "#c8102e",
                    "data": [
                        int(row["destination_sent"] if alert["remote_address"] else row["bytes_sent"])
                        if int(row["window_start"]) in anomalous
                        else None
                        for row in series
                    ],
                    "points": True,
                },
            ],
            unit="bytes",
            range=[int(alert["first_window"]) - margin, int(alert["last_window"]) + margin],
        ),
    )


@bp.post("/alerts/<int:alert_id>")
def alert_triage(alert_id: int) -> WerkzeugResponse:
    status, note = _triage_form()
    changed = query(
        "alert_update", {"alert_id": alert_id, "status": status, "note": note, "actor": g.analyst.username}
    )
    if not changed:
        abort(404, f"there is no alert {alert_id}")
    flash(f"Alert {alert_id} marked {status.replace('_', ' ')}.")
    return redirect(url_for("dashboard.alert_detail", alert_id=alert_id))


# --------------------------------------------------------------------------------------------- hosts


def _agent(status: Any) -> dict[str, Any]:
    if isinstance(status, str):
        try:
            status = json.loads(status)
        except ValueError:
            return {}
    return status if isinstance(status, dict) else {}


@bp.get("/hosts")
def hosts() -> str:
    hours = range_hours()
    page = int_arg("page", 1, minimum=1, maximum=100_000) or 1
    q = request.args.get("q", "").strip() or None
    found = query(
        "dash_hosts",
        {
            "since": int(time.time()) - hours * 3600,
            "q": q,
            "host_id": None,
            "limit": PAGE,
            "offset": (page - 1) * PAGE,
        },
    )
    for host in found:
        host["agent"] = _agent(host["agent_status"])
    return render_template(
        "hosts.html",
        hosts=found,
        **paging(found, page),
        q=q or "",
        hours=hours,
        ranges=RANGES,
        args=request.args,
    )


@bp.get("/hosts/<int:host_id>")
def host_detail(host_id: int) -> str:
    hours = range_hours()
    since = int(time.time()) - hours * 3600
    found = query("dash_hosts", {"since": since, "q": None, "host_id": host_id, "limit": 1, "offset": 0})
    if not found:
        abort(404, f"there is no host {host_id}")
    host = found[0]
    host["agent"] = _agent(host["agent_status"])
    params = {"host_id": host_id, "since": since // 3600 * 3600, "limit": 50}
    traffic = query("dash_traffic", params)
    return render_template(
        "host.html",
        host=host,
        hours=hours,
        ranges=RANGES,
        apps=query("dash_host_apps", params),
        destinations=query("dash_host_destinations", params),
        alerts=query("dash_host_alerts", {"host_id": host_id, "limit": 20}),
        traffic_chart=traffic_chart(traffic, since),
    )


# --------------------------------------------------------------------------------------------- flows


def _epoch_arg(name: str, default: int) -> int:
    raw = request.args.get(name, "").strip()
    if not raw:
        return default
    if raw.isdigit():
        return int(raw)
    for layout in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return calendar.timegm(time.strptime(raw, layout))  # the dashboard's times are UTC
        except ValueError:
            continue
    abort(400, f"{name} {raw!r}: use a time like 2026-12-04T09:30 (UTC) or epoch seconds")


def _flow_filters() -> dict[str, Any]:
    now = int(time.time())
    until = _epoch_arg("until", now + 60)
    since = _epoch_arg("since", until - 3600)
    if since >= until:
        abort(400, "since must be before until")
    if until - since > FLOW_MAX_SPAN:
        abort(400, f"the time range spans {(until - since) / 86400:.1f} days: choose at most 7")
    host = request.args.get("host", "").strip()
    host_ids: list[int] | None = None
    if host:
        host_ids = (
            [int(host)]
            if host.isdigit()
            else [int(row["id"]) for row in query("dash_host_ids", {"host": host})]
        )
        host_ids = host_ids or [-1]  # an unknown host matches nothing
    sha256 = request.args.get("sha256", "").strip().lower() or None
    if sha256 is not None and not SHA256.match(sha256):
        abort(400, f"sha256 {sha256!r}: use the 64 hex digits of a SHA-256")
    remote = request.args.get("remote", "").strip() or None
    network = None
    if remote is not None:
        try:
            network = str(ipaddress.ip_network(remote, strict=False))
        except ValueError:
            abort(400, f"remote {remote!r}: use an IP address or a network like 10.0.0.0/8")
    port = int_arg("port", None, minimum=0, maximum=65535)
    protocol = request.args.get("protocol", "").strip() or None
    if protocol not in (None, "tcp", "udp"):
        abort(400, f"protocol {protocol!r}: use tcp or udp")
    return {
        "since": since,
        "until": until,
        "host_ids": host_ids,
        "process": request.args.get("process", "").strip() or None,
        "sha256": sha256,
        "network": network,
        "port": port,
        "protocol": protocol,
    }


def _cursor(raw: str) -> dict[str, Any]:
    if not raw:
        return {"after_window": None, "after_host": None, "after_key": None}
    parts = raw.split("_")
    try:
        window, host, key = int(parts[0]), int(parts[1]), str(uuid.UUID(parts[2]))
    except (IndexError, ValueError):
        abort(400, "the page cursor is not one this page made: start from the first page")
    return {"after_window": window, "after_host": host, "after_key": key}


@bp.get("/flows")
def flows() -> str:
    filters = _flow_filters()
    found = query("dash_flows", {**filters, **_cursor(request.args.get("after", "")), "limit": FLOW_PAGE + 1})
    more = len(found) > FLOW_PAGE
    found = found[:FLOW_PAGE]
    after = f"{found[-1]['window_start']}_{found[-1]['host_id']}_{found[-1]['flow_key']}" if more else ""
    base: dict[str, Any] = {key: value for key, value in request.args.items() if key != "after"}
    return render_template(
        "flows.html",
        flows=found,
        filters=filters,
        args=request.args,
        next_url=url_for("dashboard.flows", after=after, **base) if after else "",
        csv_url=url_for("dashboard.flows_csv", **base),
        since_text=time.strftime("%Y-%m-%dT%H:%M", time.gmtime(filters["since"])),
        until_text=time.strftime("%Y-%m-%dT%H:%M", time.gmtime(filters["until"])),
    )


@bp.get("/flows.csv")
def flows_csv() -> WerkzeugResponse:
    filters = _flow_filters()
    database = services().db

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        columns: list[str] = []
        cursor: dict[str, Any] = {"after_window": None, "after_host": None, "after_key": None}
        sent = 0
        while sent < CSV_MAX_ROWS:
            with database.transaction() as cur:
                cur.execute(load_sql("dash_flows"), {**filters, **cursor, "limit": 5000})
                chunk = rows(cur)
                if not columns:  # the header: the query's columns (the vocabulary's names)
                    columns = [c.name for c in cur.description if c.name not in CSV_LEFT_OUT]
                    writer.writerow(columns)
            for row in chunk:
                writer.writerow([row[column] for column in columns])
            sent += len(chunk)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(chunk) < 5000:
                return
            last = chunk[-1]
            cursor = {
                "after_window": last["window_start"],
                "after_host": last["host_id"],
                "after_key": str(last["flow_key"]),
            }
        writer.writerow([f"# stopped at {CSV_MAX_ROWS} rows: narrow the filters or the time range"])
        yield buffer.getvalue()

    stamp = time.strftime("%Y%m%dT%H%M", time.gmtime(filters["since"]))
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="flows-{stamp}.csv"'},
    )


# -------------------------------------------------------------------------------------------- models


@bp.get("/models")
def models() -> str:
    found = query("models_list", {"limit": 50})
    for model in found:
        validation = model["validation"] if isinstance(model["validation"], dict) else {}
        histogram = validation.get("histogram") or {}
        edges = histogram.get("edges") or []
        counts = histogram.get("counts") or []
        model["histogram_chart"] = chart(
            "bar",
            [round((edges[i] + edges[i + 1]) / 2, 3) for i in range(len(counts))]
            if len(edges) > len(counts)
            else [],
            [{"label": "training and held-out windows", "data": counts}],
            logarithmic=True,
            threshold=model["threshold"],
            categorical=True,
        )
    return render_template("models.html", models=found)


@bp.post("/models/<int:model_id>/promote")
@admin_required
def model_promote(model_id: int) -> WerkzeugResponse:
    try:
        previous = promote(services().db, model_id, actor=g.analyst.username, note="dashboard")
    except DetectionError as exc:
        abort(404, str(exc))
    flash(
        f"Model {model_id} is active" + (f" (was {previous})." if previous and previous != model_id else ".")
    )
    return redirect(url_for("dashboard.models"))


@bp.post("/models/rollback")
@admin_required
def model_rollback() -> WerkzeugResponse:
    try:
        previous = rollback(services().db, actor=g.analyst.username, note="dashboard rollback")
    except DetectionError as exc:
        abort(409, str(exc))
    flash(f"Rolled back: model {previous} is active again.")
    return redirect(url_for("dashboard.models"))


@bp.post("/models/retrain")
@admin_required
def model_retrain() -> WerkzeugResponse:
    from fleet_analytics.tasks import RETRAIN  # noqa: PLC0415

    queue = services().queue
    if queue is None or not queue.send(RETRAIN, kwargs={"reason": f"dashboard ({g.analyst.username})"}):
        abort(
            503,
            "no task queue is reachable (is the worker running?): start it with "
            "`python -m fleet_analytics worker`, or train with `python -m fleet_analytics train`",
        )
    flash("Retraining queued: the new model appears here when the worker has trained it.")
    return redirect(url_for("dashboard.models"))


# --------------------------------------------------------------------------------------------- packs


@bp.get("/packs")
def packs() -> str:
    with services().db.transaction() as cur:
        admin = admin_packs(cur)
    shipped = services().shipped_packs
    return render_template(
        "packs.html",
        shipped={name: json.dumps(pack, indent=2, sort_keys=True) for name, pack in sorted(shipped.items())},
        admin={name: json.dumps(pack, indent=2, sort_keys=True) for name, pack in sorted(admin.items())},
    )


@bp.get("/packs/edit")
@admin_required
def pack_edit() -> str:
    name = request.args.get("name", "")
    with services().db.transaction() as cur:
        admin = admin_packs(cur)
    pack = admin.get(name) or services().shipped_packs.get(name)
    text = json.dumps(pack, indent=2, sort_keys=True) if pack is not None else '{\n  "queries": {}\n}'
    return render_template(
        "pack_edit.html", name=name, text=text, error="", overrides=name in services().shipped_packs
    )


@bp.post("/packs/edit")
@admin_required
def pack_save() -> Any:
    name = request.form.get("name", "").strip()
    text = request.form.get("pack", "")
    if request.form.get("action") == "delete":
        with services().db.transaction() as cur:
            deleted = delete_pack(cur, name)
        if not deleted:
            abort(404, f"there is no admin pack {name!r}")
        flash(
            f"Pack {name} deleted."
            + (" The shipped pack of that name is served again." if name in services().shipped_packs else "")
        )
        return redirect(url_for("dashboard.packs"))
    try:
        document = json.loads(text)
        validate_pack(name, document)
    except json.JSONDecodeError as exc:
        error = f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    except PackError as exc:
        error = str(exc)
    else:
        with services().db.transaction() as cur:
            save_pack(cur, name, document)
        flash(f"Pack {name} saved: nodes receive it at their next config request.")
        return redirect(url_for("dashboard.packs"))
    return (
        render_template(
            "pack_edit.html", name=name, text=text, error=error, overrides=name in services().shipped_packs
        ),
        400,
    )
