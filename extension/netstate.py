"""The event dispatcher: is this device on the enterprise network? Forwarding happens only when it is.

:func:`evaluate` is the policy, a pure function of :class:`NetworkFacts`: the device is on the
enterprise network when ANY configured condition holds (a default gateway IP in the allowed set, a
default gateway MAC in the allowed set, a DNS search domain in the allowed set). With no condition
configured the device counts as always on (a fleet without roaming devices needs no policy).

:class:`NetworkWatcher` subscribes to the platform's change notifications (:class:`ChangeFeed`: on
Linux rtnetlink for links, addresses, routes and neighbours, IPv4 and IPv6; on Windows the IP Helper's
interface and route notifications, :mod:`extension.netstate_windows`) and re-reads the facts whenever
they fire, debounced, plus a slow periodic check for what emits no notification (resolv.conf edits).
Without a policy nothing is read: the device is always on. Every change of state is logged with its
reason and handed to the listeners; a change to "on" is how the forwarder is woken at once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import select
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True, slots=True)
class Policy:
    gateway_ips: frozenset[str] = frozenset()
    gateway_macs: frozenset[str] = frozenset()  # lower case, colon separated
    dns_search_domains: frozenset[str] = frozenset()  # lower case, without the trailing dot
    fleet_tls: bool = False  # on when the fleet service answers over TLS with the expected certificate

    @property
    def configured(self) -> bool:
        return bool(self.gateway_ips or self.gateway_macs or self.dns_search_domains or self.fleet_tls)

    @classmethod
    def from_settings(
        cls,
        gateway_ips: Iterable[str],
        gateway_macs: Iterable[str],
        domains: Iterable[str],
        *,
        fleet_tls: bool = False,
    ) -> Policy:
        macs = frozenset(mac.strip().lower().replace("-", ":") for mac in gateway_macs if mac.strip())
        bad = sorted(mac for mac in macs if not MAC_RE.match(mac))
        if bad:
            raise ValueError(f"not MAC addresses: {', '.join(bad)} (use the aa:bb:cc:dd:ee:ff form)")
        return cls(
            gateway_ips=frozenset(ip.strip() for ip in gateway_ips if ip.strip()),
            gateway_macs=macs,
            dns_search_domains=frozenset(d.strip().lower().rstrip(".") for d in domains if d.strip()),
            fleet_tls=fleet_tls,
        )


@dataclass(frozen=True, slots=True)
class NetworkFacts:
    gateways: tuple[tuple[str, str], ...] = ()  # (gateway IP, its MAC or "") of the default routes
    search_domains: tuple[str, ...] = ()
    fleet_tls: str = ""  # why the fleet service is (not) reachable with the expected certificate ...
    fleet_tls_ok: bool = False  # ... and whether it is; only probed when the policy asks


@dataclass(frozen=True, slots=True)
class Decision:
    on: bool
    reason: str


def evaluate(policy: Policy, facts: NetworkFacts) -> Decision:
    if not policy.configured:
        return Decision(True, "no enterprise-network policy configured: always on")
    for ip, mac in facts.gateways:
        if ip in policy.gateway_ips:
            return Decision(True, f"default gateway {ip} is an enterprise gateway")
        if mac and mac.lower() in policy.gateway_macs:
            return Decision(True, f"default gateway {ip} has enterprise MAC {mac.lower()}")
    for domain in facts.search_domains:
        if domain.lower().rstrip(".") in policy.dns_search_domains:
            return Decision(True, f"DNS search domain {domain} is an enterprise domain")
    if policy.fleet_tls and facts.fleet_tls_ok:
        return Decision(True, f"the fleet service answers with the expected certificate ({facts.fleet_tls})")
    gateways = ", ".join(ip for ip, _ in facts.gateways) or "none"
    reason = f"no enterprise gateway or DNS search domain (default gateways: {gateways})"
    if policy.fleet_tls:
        reason += f"; fleet service: {facts.fleet_tls}"
    return Decision(False, reason)


def probe_fleet_tls(
    url: str, *, ca_file: Path | None, fingerprints: Iterable[str], timeout: float = 3.0
) -> tuple[bool, str]:
    """Is the fleet service at ``url`` reachable over TLS with the expected certificate? Verified
    against ``ca_file`` (or the system store); with ``fingerprints`` (SHA-256, hex, any separators)
    the certificate must also be one of them. Returns (ok, why). Runs on the watcher's thread only."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https" or not parsed.hostname:
        return False, f"{url} is not an https:// URL"
    port = parsed.port or 443
    wanted = {re.sub(r"[^0-9a-f]", "", item.lower()) for item in fingerprints if item.strip()}
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    try:
        with (
            socket.create_connection((parsed.hostname, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=parsed.hostname) as tls,
        ):
            der = tls.getpeercert(binary_form=True) or b""
    except ssl.SSLCertVerificationError as exc:
        return False, f"{parsed.hostname}:{port} has an unexpected certificate ({exc.verify_message})"
    except (OSError, ssl.SSLError) as exc:
        return False, f"{parsed.hostname}:{port} is not reachable ({exc})"
    fingerprint = hashlib.sha256(der).hexdigest()
    if wanted and fingerprint not in wanted:
        return False, f"{parsed.hostname}:{port} has certificate {fingerprint[:16]}..., not an expected one"
    return True, f"{parsed.hostname}:{port}"


def read_search_domains(resolv_conf: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    domains: list[str] = []
    try:
        text = resolv_conf.read_text()
    except OSError:
        return ()
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] in ("search", "domain"):
            domains.extend(fields[1:])
    return tuple(domains)


def read_facts(
    resolv_conf: Path = Path("/etc/resolv.conf"), fleet_probe: Callable[[], tuple[bool, str]] | None = None
) -> NetworkFacts:
    """The default gateways (IPv4 and IPv6, with their MACs from the neighbour table) and the DNS
    search domains, read now. On Windows from the IP Helper API (:mod:`extension.netstate_windows`:
    the connection-specific DNS suffixes of the adapters that are up; ``resolv_conf`` is not used)."""
    if sys.platform == "win32":
        from extension.netstate_windows import read_windows_facts  # noqa: PLC0415

        return read_windows_facts(fleet_probe=fleet_probe)
    from pyroute2 import IPRoute  # noqa: PLC0415 - Linux only

    gateways: list[tuple[str, str]] = []
    with IPRoute() as ipr:
        for family in (2, 10):
            for route in ipr.get_default_routes(family=family):
                gateway = route.get_attr("RTA_GATEWAY")
                if not gateway:
                    continue
                mac = ""
                for neighbour in ipr.get_neighbours(family=family, dst=gateway):
                    mac = str(neighbour.get_attr("NDA_LLADDR") or "")
                    if mac:
                        break
                gateways.append((str(gateway), mac))
    ok, why = fleet_probe() if fleet_probe is not None else (False, "")
    return NetworkFacts(
        gateways=tuple(gateways),
        search_domains=read_search_domains(resolv_conf),
        fleet_tls=why,
        fleet_tls_ok=ok,
    )


Listener = Callable[[Decision], None]


class ChangeFeed(Protocol):
    """Notifications that the network configuration may have changed (what changed is re-read)."""

    def wait(self, timeout: float) -> bool:
        """True when a notification came within ``timeout`` seconds (it is consumed)."""
        ...

    def close(self) -> None: ...


class RtnetlinkFeed:
    """Linux: rtnetlink multicast groups for links, neighbours, addresses and routes (v4 and v6).
    Made on the thread that uses it: pyroute2's sockets belong to the thread that opened them."""

    def __init__(self) -> None:
        from pyroute2 import IPRoute  # noqa: PLC0415 - Linux only
        from pyroute2.netlink.rtnl import (  # noqa: PLC0415
            RTMGRP_IPV4_IFADDR,
            RTMGRP_IPV4_ROUTE,
            RTMGRP_IPV6_IFADDR,
            RTMGRP_IPV6_ROUTE,
            RTMGRP_LINK,
            RTMGRP_NEIGH,
        )

        self.ipr = IPRoute()
        self.ipr.bind(
            groups=RTMGRP_LINK
            | RTMGRP_NEIGH
            | RTMGRP_IPV4_IFADDR
            | RTMGRP_IPV4_ROUTE
            | RTMGRP_IPV6_IFADDR
            | RTMGRP_IPV6_ROUTE
        )

    def wait(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.ipr], [], [], max(timeout, 0.0))
        if ready:
            self.ipr.get()  # drain this notification; the facts are re-read as a whole
        return bool(ready)

    def close(self) -> None:
        self.ipr.close()


def default_feed() -> ChangeFeed:
    """The change notifications of this platform."""
    if sys.platform == "win32":
        from extension.netstate_windows import IpHelperFeed  # noqa: PLC0415

        return IpHelperFeed()
    return RtnetlinkFeed()


@dataclass
class NetworkWatcher:
    """Re-evaluates the policy on every rtnetlink notification (debounced) and every
    ``periodic_seconds``; calls each listener on every change of state (and once at start)."""

    policy: Policy
    listeners: list[Listener] = field(default_factory=list)
    debounce_seconds: float = 0.3
    periodic_seconds: float = 60.0
    facts: Callable[[], NetworkFacts] = read_facts
    feed: Callable[[], ChangeFeed] = default_feed

    def __post_init__(self) -> None:
        self.decision: Decision | None = None
        self.changes = 0
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def check(self) -> Decision:
        try:
            # without a policy nothing is read (so a platform without a facts reader still forwards)
            facts = self.facts() if self.policy.configured else NetworkFacts()
            decision = evaluate(self.policy, facts)
        except Exception as exc:  # a failed read must not stop the dispatcher; keep the last state
            log.warning("could not read the network state: %s", exc)
            return self.decision or Decision(False, f"network state unreadable: {exc}")
        with self._lock:
            changed = self.decision is None or decision.on != self.decision.on
            self.decision = decision
        if changed:
            self.changes += 1
            log.info("enterprise network: %s (%s)", "on" if decision.on else "off", decision.reason)
            for listener in list(self.listeners):
                try:
                    listener(decision)
                except Exception:
                    log.exception("network-state listener failed")
        return decision

    @property
    def on(self) -> bool:
        return self.decision is not None and self.decision.on

    def start(self) -> None:
        """Subscribe first, then read the first state: a change between the two is never missed.
        (The subscription is made on the watcher's own thread: pyroute2's sockets belong to the
        thread that opened them.)"""
        self._thread = threading.Thread(target=self._run, name="netstate", daemon=True)
        self._thread.start()
        if not self._subscribed.wait(timeout=10):
            log.warning(
                "no rtnetlink subscription after 10 s: network changes are seen by the periodic check only"
            )
        self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            feed = self.feed()
        except Exception as exc:
            log.warning("cannot subscribe to network changes (%s): periodic checks only", exc)
            self._subscribed.set()
            while not self._stop.wait(self.periodic_seconds):
                self.check()
            return
        self._subscribed.set()
        try:
            last_check = time.monotonic()
            while not self._stop.is_set():
                if feed.wait(0.5):
                    deadline = time.monotonic() + self.debounce_seconds
                    while time.monotonic() < deadline:  # a change usually comes as a burst
                        feed.wait(max(deadline - time.monotonic(), 0.0))
                    self.check()
                    last_check = time.monotonic()
                elif time.monotonic() - last_check >= self.periodic_seconds:
                    self.check()
                    last_check = time.monotonic()
        finally:
            feed.close()
