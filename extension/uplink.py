"""The spool's way out, run inside the agent (``python -m extension run``): the network watcher decides
whether the device is on the enterprise network, the forwarder sends the spool to the fleet service
only while it is, and a change to "on" wakes the forwarder at once.

The osquery logger plugin (in osqueryd's extension process) and standalone mode (in the agent) both
append to the same spool file; only the agent forwards it.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from extension.forwarder import Forwarder
from extension.netstate import Decision, NetworkWatcher, Policy, probe_fleet_tls, read_facts
from extension.settings import Settings, SettingsError
from extension.spool import Spool

log = logging.getLogger(__name__)


def enroll_secret(settings: Settings) -> str:
    if settings.enroll_secret_file is not None:
        try:
            secret = settings.enroll_secret_file.read_text().strip()
        except OSError as exc:
            raise SettingsError(
                f"cannot read the enroll secret file {settings.enroll_secret_file}: {exc.strerror}; "
                "fix EXTENSION_ENROLL_SECRET_FILE"
            ) from None
    else:
        secret = settings.enroll_secret.strip()
    if not secret:
        raise SettingsError(
            "fleet_url is set but there is no enroll secret: set EXTENSION_ENROLL_SECRET or "
            "EXTENSION_ENROLL_SECRET_FILE (the fleet service's enroll secret)"
        )
    return secret


class Uplink:
    def __init__(self, settings: Settings, spool: Spool) -> None:
        try:
            policy = Policy.from_settings(
                settings.enterprise_gateways,
                settings.enterprise_gateway_macs,
                settings.enterprise_dns_domains,
                fleet_tls=settings.enterprise_fleet_tls,
            )
        except ValueError as exc:
            raise SettingsError(f"enterprise_gateway_macs: {exc}") from None
        self.spool = spool
        self.wake = threading.Event()
        self._stop = threading.Event()
        probe = None
        if settings.enterprise_fleet_tls:

            def probe() -> tuple[bool, str]:
                return probe_fleet_tls(
                    settings.fleet_url,
                    ca_file=settings.ca_file,
                    fingerprints=settings.enterprise_fleet_fingerprints,
                )

        self.watcher = NetworkWatcher(
            policy, listeners=[self._on_change], facts=lambda: read_facts(fleet_probe=probe)
        )
        self.forwarder = Forwarder(
            spool,
            base_url=settings.fleet_url,
            enroll_secret=enroll_secret(settings),
            host_identifier=socket.gethostname(),
            ca_file=settings.ca_file,
            verify_tls=settings.verify_tls,
            batch_bytes=settings.batch_bytes,
            is_allowed=lambda: self.watcher.on,
            wake=self.wake,
        )
        self._thread: threading.Thread | None = None

    def _on_change(self, decision: Decision) -> None:
        if decision.on:
            self.wake.set()  # forward what waited while off, now

    def start(self) -> None:
        self.watcher.start()
        self._thread = threading.Thread(
            target=self.forwarder.run, args=(self._stop,), name="forwarder", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.watcher.stop()

    def info(self) -> dict[str, Any]:
        decision = self.watcher.decision
        stats = self.forwarder.stats()
        return {
            "enterprise_network": "" if decision is None else ("on" if decision.on else "off"),
            "enterprise_reason": "" if decision is None else decision.reason,
            "forwarded_lines": stats.lines_sent,
            "last_forward_success": int(stats.last_success_ts or 0),
            "last_forward_error": stats.last_error or "",
        }


def spool_info(spool: Spool) -> dict[str, Any]:
    stats = spool.stats()
    return {
        "spool_rows": stats.rows,
        "spool_bytes": stats.bytes,
        "spool_oldest_unsent": int(stats.oldest_created or 0),
        "spool_dropped_rows": stats.dropped_rows,
        "spool_rejected_rows": stats.rejected_rows,
    }
