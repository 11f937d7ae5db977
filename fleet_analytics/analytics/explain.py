"""Plain-words explanations of why a flow window scored as anomalous.

Each feature's *surprise* is -log10 of the share of training windows with a value at least as high
(:class:`~fleet_analytics.analytics.detectors.FrozenTails` over a sample of the training features).
The features with the largest surprise are the ones that drove the score; each is rendered with the
window's own values and the fleet profile's figures, e.g. "sent 48 MB, 35x this application's fleet
median (1.4 MB)" or "destination never seen before on any of 50 hosts".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from fleet_analytics.analytics.features import Profile

MIN_SURPRISE: Final = 2.0  # p <= 0.01 among training windows: worth saying
MAX_REASONS: Final = 4


def human_bytes(count: float) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" or value >= 100 else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover - the loop returns


def times(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def _count_phrase(seen: int, hosts: int) -> str:
    return f"seen on none of {hosts} hosts" if seen == 0 else f"seen on {seen} of {hosts} hosts"


# a reason that says what these say already: once it is given, they are not repeated
SUBSUMES: Final = {
    "joint_rarity": ("process_rarity", "destination_rarity", "pair_rarity"),
    "port_external_rarity": ("port_rarity",),
    "port_rarity": ("port_external_rarity",),
}


def _hosts_phrase(seen: int, hosts: int, what: str) -> str:
    if seen == 0:
        return f"{what} never seen before on any of {hosts} hosts"
    return f"{what} seen on only {seen} of {hosts} hosts"


@dataclass(frozen=True)
class Reason:
    feature: str
    surprise: float  # -log10 p among training windows
    text: str


def endpoint(window: Mapping[str, Any]) -> str:
    """``203.0.113.9:443/tcp (name)`` outbound; ``203.0.113.9 on local port 22/tcp`` inbound."""
    address = str(window["remote_address"])
    name = str(window.get("remote_hostname") or "")
    named = f" ({name})" if name else ""
    port = f"{window['service_port']}/{window['protocol']}"
    if window.get("direction") == "inbound":
        return f"{address}{named} on local port {port}"
    shown = f"[{address}]" if ":" in address else address
    return f"{shown}:{port}{named}"


def headline(window: Mapping[str, Any]) -> str:
    process = str(window.get("process_name") or window.get("process_path") or "an unknown process")
    user = str(window.get("username") or "")
    who = f"{process} ({user})" if user else process
    inbound = window.get("direction") == "inbound"
    return (
        f"{who} sent {human_bytes(window['bytes_sent'])} and received "
        f"{human_bytes(window['bytes_received'])} {'with' if inbound else 'to and from'} {endpoint(window)}"
    )


def _seen(table: Any, key: Any) -> int:
    try:
        return int(table.get(key, 0))
    except TypeError:
        return 0


def reason_text(
    feature: str, window: Mapping[str, Any], profile: Profile, context: Mapping[str, Any]
) -> str | None:
    """The words for one feature of one window, or None when there is nothing useful to say."""
    hosts = profile.hosts
    app = str(window["app"])
    if feature in ("log_bytes_sent", "app_sent_deviation"):
        median = profile.app_median_bytes(app, "sent")
        return (
            f"sent {human_bytes(window['bytes_sent'])}, {times(window['bytes_sent'] / max(median, 1.0))} "
            f"this application's fleet median ({human_bytes(median)})"
        )
    if feature in ("log_bytes_received", "app_received_deviation"):
        median = profile.app_median_bytes(app, "received")
        return (
            f"received {human_bytes(window['bytes_received'])}, "
            f"{times(window['bytes_received'] / max(median, 1.0))} this application's fleet median "
            f"({human_bytes(median)})"
        )
    if feature == "log_send_ratio":
        ratio = (window["bytes_sent"] + 1) / (window["bytes_received"] + 1)
        return f"uploaded {times(ratio)} more than it downloaded"
    if feature == "destination_rarity":
        return _hosts_phrase(_seen(profile.destination_hosts, window["remote_address"]), hosts, "destination")
    if feature == "pair_rarity":
        seen = _seen(profile.pair_hosts, (app, window["remote_address"]))
        if seen == 0:
            return f"this application never talked to this destination on any of {hosts} hosts"
        return f"this application talked to this destination on only {seen} of {hosts} hosts"
    if feature == "new_for_host":
        return "first contact with this destination from this host"
    port = f"{window['direction']} {window['service_port']}/{window['protocol']}"
    if feature == "port_rarity":
        seen = _seen(profile.port_hosts, (window["protocol"], window["direction"], window["service_port"]))
        return _hosts_phrase(seen, hosts, f"port {port}")
    if feature == "port_external_rarity":
        where = "outside" if context.get("external", 0) else "inside"
        key = (
            window["protocol"],
            window["direction"],
            window["service_port"],
            float(context.get("external", 0)),
        )
        return _hosts_phrase(
            _seen(profile.port_external_hosts, key), hosts, f"port {port} {where} the network"
        )
    if feature == "pair_sent_total":
        total = float(np.expm1(float(context.get("pair_sent_total", 0.0))))
        return f"sent {human_bytes(total)} to this destination over the look-back"
    if feature == "pair_windows":
        count = round(float(np.expm1(float(context.get("pair_windows", 0.0)))))
        return f"in contact with this destination in {count} windows of the look-back"
    binary = str(window.get("process_sha256") or "") or str(window.get("process_path") or "") or "unknown"
    if feature == "process_rarity":
        seen = _seen(profile.binary_hosts, binary)
        sha = str(window.get("process_sha256") or "")
        what = f"executable {window.get('process_path') or '?'}" + (f" (sha256 {sha[:12]}…)" if sha else "")
        return _hosts_phrase(seen, hosts, what)
    if feature == "joint_rarity":
        seen = _seen(profile.binary_hosts, binary)
        destination = _seen(profile.destination_hosts, window["remote_address"])
        sha = str(window.get("process_sha256") or "")
        binary = f"sha256 {sha[:12]}…, " if sha else ""
        return (
            f"{'a new' if seen == 0 else 'a rare'} executable {window.get('process_path') or '?'} "
            f"({binary}{_count_phrase(seen, hosts)}) talking to {'a new' if destination == 0 else 'a rare'} "
            f"destination ({_count_phrase(destination, hosts)})"
        )
    if feature == "fanout_addresses":
        return f"contacted {int(context.get('fanout_address_count', 0))} distinct addresses in one window"
    if feature == "fanout_ports":
        return f"contacted {int(context.get('fanout_port_count', 0))} distinct ports in one window"
    if feature in ("log_connections", "process_connections"):
        count = int(context.get("process_connection_count", window.get("connections", 0)))
        return f"opened {count} connections in one window"
    if feature == "hour_rarity":
        hour = (int(window["window_start"]) // 3600) % 24
        return f"active at {hour:02d}:00 UTC, an hour when this host is rarely active"
    if feature == "host_sent_deviation":
        return "the host as a whole sent far more than usual in this window"
    if feature == "beacon_score":
        interval = float(context.get("beacon_interval", 0.0))
        contacts = int(context.get("beacon_contacts", 0))
        score = float(context.get("beacon_score", 0.0))
        return (
            f"regular contacts about every {interval:.0f} s, {contacts} times (beacon score {score:.2f})"
            if interval
            else f"regular contacts (beacon score {score:.2f})"
        )
    return None


def explain(
    window: Mapping[str, Any],
    surprise: Mapping[str, float],
    profile: Profile,
    *,
    context: Mapping[str, Any] | None = None,
) -> tuple[str, list[Reason]]:
    """The explanation of one window: a sentence, and the reasons behind it (most surprising first).

    ``surprise`` maps feature names to -log10 p; ``context`` holds extra figures (fan-out counts,
    beacon interval) the reasons quote.
    """
    extra = dict(context or {})
    ranked = sorted(surprise.items(), key=lambda item: (-item[1], item[0]))
    reasons: list[Reason] = []
    said: set[str] = set()
    covered: set[str] = set()
    for feature, value in ranked:
        if value < MIN_SURPRISE or len(reasons) >= MAX_REASONS or not math.isfinite(value):
            break
        if feature in covered:
            continue
        text = reason_text(feature, window, profile, extra)
        if text is None or text in said:
            continue
        said.add(text)
        covered.update(SUBSUMES.get(feature, ()))
        reasons.append(Reason(feature, round(float(value), 2), text))
    sentence = headline(window)
    if reasons:
        sentence += ": " + "; ".join(reason.text for reason in reasons)
    else:
        sentence += ": an unusual combination of otherwise ordinary figures"
    return sentence, reasons
