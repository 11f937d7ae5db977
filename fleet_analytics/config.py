"""Settings of the fleet service: defaults, then ``FLEET_*`` environment variables, then the test
config (``create_app(test_config)``), validated once at start into a frozen :class:`Settings`.

Every setting is documented in docs/fleet.md; :data:`SETTINGS` is the single list of them (name,
type, default, bounds, meaning). Environment values are strings and are parsed by the setting's type:
``FLEET_ENROLL_SECRET=123`` stays the string ``"123"``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
ENV_PREFIX: Final = "FLEET_"


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it and says what is accepted."""


def default_data_dir() -> Path:
    """Per-user state directory; as root a system path (the embedded PostgreSQL may not live in /root)."""
    if os.geteuid() == 0:
        return Path("/var/lib/osquery-netflow-fleet")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local/state")
    return Path(state) / "osquery-netflow-fleet"


@dataclass(frozen=True, slots=True)
class Setting:
    name: str  # the Settings field; the env var is FLEET_<NAME>
    kind: type  # str, int, float, bool or Path
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


MIB: Final = 1024 * 1024
# the detector names of fleet_analytics.analytics.detectors.DETECTORS (not imported: PyOD is heavy; a test
# checks they agree)
DETECTOR_NAMES: Final = ("ensemble", "iforest", "hbos", "ecod", "copod", "tailmax")
SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("database_url", str, "", help="PostgreSQL 15+ URL; empty: an embedded PostgreSQL in data_dir"),
    Setting("data_dir", Path, None, help="state directory (embedded PostgreSQL, Redis); default per user"),
    Setting("enroll_secret", str, "", help="when set, made the active enroll secret at start"),
    Setting("packs_dir", Path, ROOT / "sql" / "packs", help="the shipped osquery packs (*.conf, JSON)"),
    Setting("flows_query", str, "netflow_flows", help="query name whose rows are flow windows"),
    Setting("max_body_bytes", int, 16 * MIB, 1024, 1024 * MIB, "largest request body as sent (gzip)"),
    Setting(
        "max_decompressed_bytes", int, 128 * MIB, 1024, 4096 * MIB, "largest request body once decompressed"
    ),
    Setting("max_row_age_seconds", int, 7 * 86400, 60, 366 * 86400, "older flow windows are quarantined"),
    Setting("max_clock_skew_seconds", int, 600, 0, 86400, "tolerance for windows in the future"),
    Setting("max_bytes_per_second", float, 12.5e9, 1.0, 1e13, "per flow; above it a byte count is absurd"),
    Setting("max_items_per_request", int, 500_000, 1, 10_000_000, "log items per request"),
    Setting("flow_retention_days", int, 30, 1, 3650, "flow partitions older than this are dropped"),
    Setting(
        "results_retention_days", int, 30, 1, 3650, "batches, results, status logs, quarantine kept this long"
    ),
    Setting("partitions_ahead_days", int, 2, 0, 60, "flow partitions created ahead of today"),
    Setting("pool_max", int, 8, 1, 200, "PostgreSQL connections per process at most"),
    Setting("statement_timeout_ms", int, 60_000, 100, 3_600_000, "PostgreSQL statement timeout"),
    Setting("retry_after_seconds", int, 30, 1, 3600, "Retry-After sent with 503 answers"),
    Setting("web_workers", int, 0, 0, 64, "gunicorn worker processes; 0: one per CPU"),
    Setting("web_threads", int, 4, 1, 64, "threads per gunicorn worker"),
    Setting("access_log", bool, False, help="log every request (gunicorn's access log, to stderr)"),
    Setting(
        "secret_key",
        str,
        "",
        help="signs dashboard sessions; empty: a random key kept in data_dir/session.key",
    ),
    Setting(
        "cookie_secure",
        str,
        "auto",
        help="session cookie Secure flag: auto (when tls_cert is set), always (behind a TLS proxy), never",
    ),
    Setting("session_hours", int, 12, 1, 24 * 30, "a dashboard login lasts this long"),
    Setting(
        "rollup_retention_days", int, 400, 1, 3650, "the dashboard's hourly and daily sums kept this long"
    ),
    Setting("tls_cert", str, "", help="PEM certificate (chain) for HTTPS; empty: plain HTTP"),
    Setting("tls_key", str, "", help="PEM private key of tls_cert"),
    Setting("broker_url", str, "", help="Celery broker (redis://...); empty: an embedded Redis in data_dir"),
    Setting(
        "score_on_ingest", bool, True, help="enqueue scoring after each stored batch (when a broker runs)"
    ),
    Setting("model_key", str, "", help="signs model artifacts (HMAC); empty: a key file in data_dir"),
    Setting(
        "detector",
        str,
        "ensemble",
        help="detector for training: ensemble, iforest, hbos, ecod, copod, tailmax",
    ),
    Setting("contamination", float, 0.0002, 1e-6, 0.2, "share of training windows above the threshold"),
    Setting("training_days", float, 7.0, 0.05, 90.0, "length of the training period, ending now"),
    Setting(
        "training_folds",
        int,
        7,
        3,
        60,
        "spans the training period is cut into (cross-fitted, then one to check)",
    ),
    Setting("retrain_hour", int, 2, 0, 23, "UTC hour of the nightly retraining (Celery beat)"),
    Setting(
        "auto_promote", bool, True, help="promote a retrained model whose check passes; else a candidate"
    ),
    Setting("score_interval_seconds", int, 60, 5, 3600, "catch-up scoring period (Celery beat)"),
    Setting("score_lookback_hours", int, 48, 1, 24 * 30, "batches received this recently are scored"),
    Setting("score_max_windows", int, 200_000, 1000, 10_000_000, "flow rows scored per task at most"),
    Setting("beacon_lookback_seconds", int, 86400, 600, 7 * 86400, "history a beacon score looks at"),
    Setting("alert_cooldown_seconds", int, 6 * 3600, 0, 30 * 86400, "a repeat within it joins the alert"),
    Setting("alert_budget_per_host_day", int, 5, 0, 10_000, "new alerts per host and UTC day at most"),
    Setting("alert_fanout_group", int, 8, 2, 100_000, "anomalous destinations making one fan-out alert"),
)
TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    data_dir: Path
    enroll_secret: str
    packs_dir: Path
    flows_query: str
    max_body_bytes: int
    max_decompressed_bytes: int
    max_row_age_seconds: int
    max_clock_skew_seconds: int
    max_bytes_per_second: float
    max_items_per_request: int
    flow_retention_days: int
    results_retention_days: int
    partitions_ahead_days: int
    pool_max: int
    statement_timeout_ms: int
    retry_after_seconds: int
    web_workers: int
    web_threads: int
    access_log: bool
    secret_key: str
    cookie_secure: str
    session_hours: int
    rollup_retention_days: int
    tls_cert: str
    tls_key: str
    broker_url: str
    score_on_ingest: bool
    model_key: str
    detector: str
    contamination: float
    training_days: float
    training_folds: int
    retrain_hour: int
    auto_promote: bool
    score_interval_seconds: int
    score_lookback_hours: int
    score_max_windows: int
    beacon_lookback_seconds: int
    alert_cooldown_seconds: int
    alert_budget_per_host_day: int
    alert_fanout_group: int


def _parse(setting: Setting, value: Any, source: str) -> Any:
    where = f"{setting.env} ({source})"
    kind = setting.kind
    if kind is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise ConfigError(f"{where} is {value!r}: use true or false")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where} is {value!r}: use a number")
        try:
            number = kind(value) if not isinstance(value, str) else kind(value.strip())
        except (TypeError, ValueError):
            what = "whole number" if kind is int else "number"
            raise ConfigError(f"{where} is {value!r}: use a {what}") from None
        if kind is int and isinstance(value, float) and value != number:
            raise ConfigError(f"{where} is {value!r}: use a whole number")
        if setting.minimum is not None and number < setting.minimum:
            raise ConfigError(f"{where} is {number}: the least accepted is {setting.minimum:g}")
        if setting.maximum is not None and number > setting.maximum:
            raise ConfigError(f"{where} is {number}: the most accepted is {setting.maximum:g}")
        return number
    if kind is Path:
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise ConfigError(f"{where} is {value!r}: use a directory path")
        return Path(str(value).strip()).expanduser()
    if not isinstance(value, str):
        raise ConfigError(f"{where} is {value!r}: use a string")
    return value


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults < FLEET_* environment < overrides (keys are setting names, either case, with or without
    the FLEET_ prefix). Raises ConfigError naming the first bad or unknown setting."""
    env = os.environ if environ is None else environ
    known = {setting.name: setting for setting in SETTINGS}
    given: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        name = key.lower().removeprefix(ENV_PREFIX.lower())
        if name not in known:
            raise ConfigError(f"unknown setting {key!r}: the settings are {', '.join(sorted(known))}")
        given[name] = value
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name in given:
            values[setting.name] = _parse(setting, given[setting.name], "given config")
        elif setting.env in env:
            values[setting.name] = _parse(setting, env[setting.env], "environment")
        else:
            values[setting.name] = setting.default
    if values["data_dir"] is None:
        values["data_dir"] = default_data_dir()
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Checks across settings."""
    if settings.database_url and not settings.database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "FLEET_DATABASE_URL must be a postgresql:// URL, "
            f"not {settings.database_url.split(':', 1)[0]}:// "
            "(or leave it empty for the embedded PostgreSQL)"
        )
    if settings.flow_retention_days * 86400 < settings.max_row_age_seconds + 86400:
        raise ConfigError(
            f"FLEET_FLOW_RETENTION_DAYS ({settings.flow_retention_days}) must keep at least one day more "
            "than "
            f"FLEET_MAX_ROW_AGE_SECONDS ({settings.max_row_age_seconds} s) accepts: raise the retention or "
            "lower the age"
        )
    if settings.max_decompressed_bytes < settings.max_body_bytes:
        raise ConfigError("FLEET_MAX_DECOMPRESSED_BYTES must be at least FLEET_MAX_BODY_BYTES")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("set both FLEET_TLS_CERT and FLEET_TLS_KEY (or neither, for plain HTTP)")
    for name in ("tls_cert", "tls_key"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"FLEET_{name.upper()} {path} is not a readable file")
    if settings.detector not in DETECTOR_NAMES:
        raise ConfigError(f"FLEET_DETECTOR is {settings.detector!r}: use one of {', '.join(DETECTOR_NAMES)}")
    if settings.broker_url and not settings.broker_url.startswith(
        ("redis://", "rediss://", "redis+socket://")
    ):
        raise ConfigError("FLEET_BROKER_URL must be a redis://, rediss:// or redis+socket:// URL (or empty)")
    if settings.cookie_secure not in ("auto", "always", "never"):
        raise ConfigError(f"FLEET_COOKIE_SECURE is {settings.cookie_secure!r}: use auto, always or never")
    if settings.secret_key and len(settings.secret_key) < 32:
        raise ConfigError(
            "FLEET_SECRET_KEY is too short: use at least 32 random characters (or leave it empty)"
        )
    if not settings.flows_query or any(ch in settings.flows_query for ch in "/ "):
        raise ConfigError(f"FLEET_FLOWS_QUERY {settings.flows_query!r} must be a bare query name")


def as_flask_config(settings: Settings) -> dict[str, Any]:
    """The settings under their FLEET_* names, for app.config (read-only copies)."""
    return {ENV_PREFIX + field.name.upper(): getattr(settings, field.name) for field in fields(settings)}


def key_file(path: Path, *, when_short: str) -> str:
    """A random secret kept in ``path`` (made 0600 on first use, by whichever process comes first), so
    that every process and restart of the service shares it. ConfigError when the file holds fewer
    than 32 characters: ``when_short`` says what deleting it costs."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < 32:
        raise ConfigError(f"the key in {path} is too short: delete it ({when_short})")
    return key
