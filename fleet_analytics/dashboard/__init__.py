"""The analysts' dashboard: server-rendered pages (Jinja templates, one small script, Chart.js vendored
under static/vendor), behind a login.

Pages: overview, alerts (list with filters, sorting, triage and bulk triage; detail with the
explanation, the flow windows and a chart), hosts (list, detail), flows explorer (keyset pages, CSV
export), models (figures, score distribution, promote, roll back, retrain), packs (view; admins edit).
Every page but the login page needs a session (:mod:`fleet_analytics.dashboard.auth`); every POST
needs the session's CSRF token; admin-only actions answer 403 to analysts.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as WerkzeugResponse

from fleet_analytics.analytics.explain import human_bytes
from fleet_analytics.dashboard.auth import cookie_secure, csrf_matches, session_analyst, session_key
from fleet_analytics.services import Services

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)

PUBLIC_ENDPOINTS: Final = frozenset({"dashboard.login", "dashboard.static"})
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def services() -> Services:
    fleet: Services = current_app.extensions["fleet"]
    return fleet


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def safe_next(target: str | None) -> str:
    """A redirect target after login: a path on this site only (never another host)."""
    if not target:
        return url_for("dashboard.overview")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("dashboard.overview")
    return target


@bp.before_request
def require_session() -> WerkzeugResponse | None:
    if request.method not in ("GET", "HEAD", "OPTIONS") and not csrf_matches(
        session.get("csrf"), request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
    ):
        abort(400, "the form's security token is missing or out of date: reload the page and try again")
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    analyst = session_analyst(services().db, session.get("analyst_id"), session.get("epoch"))
    if analyst is None:
        session.pop("analyst_id", None)
        return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
    g.analyst = analyst
    return None


@bp.after_request
def security_headers(response: Response) -> WerkzeugResponse:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "dashboard.static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def when(value: Any) -> str:
    """Epoch seconds or a datetime as 'YYYY-MM-DD HH:MM UTC'; '' for nothing."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
    else:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            return str(value)
        if seconds <= 0:
            return ""  # the agents' "never" (0)
        try:
            moment = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return str(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def ago(value: Any) -> str:
    """How long ago, in words ('3 min ago'); '' for nothing."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        seconds = (datetime.now(tz=UTC) - value).total_seconds()
    else:
        try:
            seconds = datetime.now(tz=UTC).timestamp() - float(value)
        except (TypeError, ValueError):
            return ""
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def register_dashboard(app: Flask) -> None:
    """Mount the dashboard on ``app``: session cookie settings, template helpers, the blueprint."""
    settings = app.extensions["fleet"].settings
    app.config.update(
        SECRET_KEY=session_key(settings),
        SESSION_COOKIE_NAME="fleet_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=cookie_secure(settings),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
    )
    app.jinja_env.globals.update(csrf_token=csrf_token)
    app.jinja_env.filters.update(when=when, ago=ago, bytes=human_bytes)
    from fleet_analytics.dashboard import views  # noqa: F401, PLC0415 - registers the routes on bp

    app.register_blueprint(bp)


def wants_html() -> bool:
    """Whether an error should be a page (a dashboard request) rather than JSON (the APIs)."""
    return request.blueprint == "dashboard" or (
        request.blueprint is None and not request.path.startswith("/api/") and request.path != "/healthz"
    )


def error_page(status: int, reason: str) -> tuple[str, int]:
    return render_template("error.html", status=status, reason=reason), status
