"""The endpoint's settings: defaults, then a config file, then ``EXTENSION_*`` environment variables,
then command-line flags. The only module that reads the environment.

Every value is validated here; a bad one raises :class:`SettingsError` whose message names the setting,
what was wrong and how to fix it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    pass


def default_data_dir(platform: str = sys.platform, environ: Mapping[str, str] = os.environ) -> Path:
    """Root (or any Windows account: the agent runs as LocalSystem there) keeps its state machine-wide;
    other users in their XDG state directory."""
    if platform == "win32":
        return Path(environ.get("ProgramData") or "C:\\ProgramData") / "osquery-netflow"
    if os.geteuid() == 0:
        return Path("/var/lib/osquery-netflow")
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "osquery-netflow"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = dataclasses.field(default_factory=default_data_dir)
    window_seconds: int = 60  # flow aggregation interval
    drain_interval: float = 1.0  # seconds between drains of the kernel map
    grace_seconds: float = 2.0  # a window is aggregated this long after it ends (late drains)
    raw_retention_seconds: int = 3600  # raw rows older than this (and already aggregated) are pruned
    flow_retention_seconds: int = 7 * 86400
    exclude_loopback: bool = False
    map_entries: int = 65536  # capacity of the kernel flow map (per buffer; there are two)
    ringbuf_bytes: int = 1 << 20
    resolve_hostnames: bool = True
    dns_snoop: bool = True  # learn names from DNS answers this host receives (needs root)
    bpf_object: Path | None = None  # prebuilt netflow.bpf.o; built from source when unset
    spool_max_bytes: int = 100 << 20  # outbound spool bound; past it the oldest lines go (counted)
    emit_results: bool = True  # standalone: the pack's rows as osquery result lines into the spool
    # forwarding the spool to the fleet service (osquery's TLS remote API); off while fleet_url is empty
    fleet_url: str = ""  # e.g. https://fleet.example.com:8443
    enroll_secret: str = ""
    enroll_secret_file: Path | None = None  # read at start; beats enroll_secret
    ca_file: Path | None = None  # CA bundle for the fleet service's certificate (system store if unset)
    verify_tls: bool = True
    batch_bytes: int = 1 << 20  # uncompressed JSON per request at most (one oversize line goes alone)
    # the enterprise-network policy: forwarding only while ANY of these matches (always, if none set)
    enterprise_gateways: tuple[str, ...] = ()  # default-gateway IPs
    enterprise_gateway_macs: tuple[str, ...] = ()
    enterprise_dns_domains: tuple[str, ...] = ()  # DNS search domains
    enterprise_fleet_tls: bool = False  # on while the fleet service answers with the expected certificate
    enterprise_fleet_fingerprints: tuple[str, ...] = ()  # SHA-256 of the expected certificate(s)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "netflow.db"

    @property
    def spool_path(self) -> Path:
        return self.data_dir / "spool.db"

    @property
    def bpf_build_dir(self) -> Path:
        return self.data_dir / "bpf"


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
ENV_PREFIX = "EXTENSION_"


def _convert(name: str, raw: Any) -> Any:
    """Convert one raw value (a string from the environment, or a JSON/TOML value) to the field's type."""
    default = getattr(Settings(), name) if name != "data_dir" else Path()
    try:
        if name in ("data_dir", "bpf_object", "enroll_secret_file", "ca_file"):
            if raw in (None, ""):
                return default_data_dir() if name == "data_dir" else None
            return Path(str(raw)).expanduser()
        if isinstance(default, tuple):  # a list: comma-separated text, or a TOML/JSON list
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        if isinstance(default, str):
            return str(raw)
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            if isinstance(raw, bool):
                raise ValueError("expected a whole number")
            return int(str(raw).strip())
        if isinstance(default, float):
            return float(str(raw).strip())
    except ValueError as exc:
        raise SettingsError(
            f"setting {name} = {raw!r} is not valid ({exc}); "
            f"set {ENV_PREFIX}{name.upper()} or '{name}' in the config file to a valid value"
        ) from None
    raise SettingsError(f"setting {name} has an unsupported type")  # pragma: no cover - programming error


def _validate(settings: Settings) -> Settings:
    checks: list[tuple[bool, str, str]] = [
        (
            1 <= settings.window_seconds <= 86400,
            "window_seconds",
            "a whole number of seconds from 1 to 86400",
        ),
        (0.05 <= settings.drain_interval <= 60, "drain_interval", "seconds from 0.05 to 60"),
        (0 <= settings.grace_seconds <= 600, "grace_seconds", "seconds from 0 to 600"),
        (settings.raw_retention_seconds >= 0, "raw_retention_seconds", "0 or more seconds"),
        (settings.flow_retention_seconds >= 0, "flow_retention_seconds", "0 or more seconds"),
        (1024 <= settings.map_entries <= 1 << 22, "map_entries", "from 1024 to 4194304"),
        (settings.spool_max_bytes >= 1 << 16, "spool_max_bytes", "at least 65536 bytes"),
        (settings.batch_bytes >= 1024, "batch_bytes", "at least 1024 bytes"),
        (
            settings.fleet_url == "" or settings.fleet_url.startswith(("https://", "http://")),
            "fleet_url",
            "an https:// URL (http:// only for tests on this host)",
        ),
        (
            settings.ringbuf_bytes >= 4096 and settings.ringbuf_bytes & (settings.ringbuf_bytes - 1) == 0,
            "ringbuf_bytes",
            "a power of two of at least 4096",
        ),
    ]
    for ok, name, wanted in checks:
        if not ok:
            raise SettingsError(
                f"setting {name} = {getattr(settings, name)!r} is not valid: it must be {wanted}; "
                f"fix {ENV_PREFIX}{name.upper()} or '{name}' in the config file"
            )
    return settings


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(
            f"cannot read config file {path}: {exc.strerror}; fix the path in {ENV_PREFIX}CONFIG or --config"
        ) from None
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise SettingsError(
            f"config file {path} is not valid {kind}: {exc}; fix it (TOML unless the name ends in .json)"
        ) from None
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a table of settings at the top level")
    return data


def load(
    *,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults < config file (``EXTENSION_CONFIG`` or ``config_file``) < environment < ``overrides``."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or (Path(env[ENV_PREFIX + "CONFIG"]) if env.get(ENV_PREFIX + "CONFIG") else None)
    if path is not None:
        for key, raw in _read_config_file(path).items():
            if key not in _FIELDS:
                known = ", ".join(sorted(_FIELDS))
                raise SettingsError(f"config file {path}: unknown setting '{key}'; known settings: {known}")
            values[key] = _convert(key, raw)
    for key in _FIELDS:
        env_name = ENV_PREFIX + key.upper()
        if env_name in env:
            values[key] = _convert(key, env[env_name])
    for key, raw in (overrides or {}).items():
        if raw is not None:
            values[key] = _convert(key, raw)
    values.setdefault("data_dir", default_data_dir(environ=env))
    return _validate(Settings(**values))
