# mypy: disable-error-code="import-untyped"
"""Labelled public network-flow datasets mapped onto our flow-window vocabulary, for evaluation.

The files are read in place from the shared datasets directory (``../shared/datasets`` relative to the
project root, or ``$FLEET_DATASETS_DIR``; see :func:`dataset_dir`); nothing is copied into the project.
``/work/shared/datasets/README.md`` and the READMEs beside the files describe them.

Names (:func:`available` lists those whose files are present):

=================================  ===================================================================
``stratosphere-001-njrat``         Zeek conn.log, NjRAT-infected Windows host 192.168.1.115 on a LAN;
                                   Stratosphere's per-flow labels (Malicious = the NjRAT C&C)
``stratosphere-002-nmap``          Zeek conn.log (JSON lines), host 172.16.1.11 running nmap scans;
                                   unlabelled upstream: we label the scan connections (below)
``stratosphere-003-android-rat``   Zeek conn.log, Android phone 10.8.0.61 (over a VPN) infected with
                                   the AndroidTester RAT; we label 1337/tcp (the README's C&C port)
``stratosphere-005-simda``         Zeek conn.log, Simda-infected Windows host 192.168.1.116 on a LAN;
                                   we label its C&C check-ins and DGA lookups (below)
``stratosphere-008-mixed``         Zeek conn.log, 24 h of a Windows host 147.32.81.167 on the Internet;
                                   Stratosphere's per-flow labels (Malicious = inbound attacks)
``cicids2017``                     CIC-IDS2017 as corrected by Engelen et al. (CICFlowMeter flows),
                                   random samples per class; internal network 192.168.10.0/24
``kdd99-http``, ``kdd99-smtp``     KDD Cup 99 http / smtp subsets as packaged by ADBench (3 features)
=================================  ===================================================================

**The records.** :attr:`LabelledFlows.flows` has one row per flow/connection record, with every
column of :data:`~fleet_analytics.ingest.filters.FLOW_COLUMNS` (integers ``int64``, text ``str``)
plus ``host_identifier`` (the monitored host: its canonical address, ``"kdd99"`` for KDD),
``label`` (0/1), ``label_detail`` (the dataset's own label text, or ours where it has none), ``ts``
(record start, float seconds: epoch, except 001/005 relative and KDD synthetic, below) and
``duration`` (float seconds). None of the datasets has
process, user, executable, host-name or Community ID fields: those columns are unknown fillers
(text ``""``, integers ``0``). :attr:`LabelledFlows.real_columns` names the vocabulary columns that
carry real data; ``window_start`` is ``floor(ts / 60) * 60`` with ``window_seconds`` 60 (use
:func:`to_windows` for other windows).

**Mapping decisions, all datasets.**

* Only TCP and UDP records are kept (the endpoint counts TCP and UDP sockets only, and the ingest
  filters refuse other protocols): Zeek's ICMP records and CIC's protocols other than 6/17 are
  dropped and the number is logged; :attr:`LabelledFlows.source_rows` counts the file's records
  before that.
* Local side: each capture has a monitored host or internal network (below). When the originator is
  in it, the originator is local and the direction ``outbound``; when only the responder is, the
  responder is local and the direction ``inbound`` (bytes and packets swap sides). When both are
  internal the originator's view is taken (``outbound``): its own endpoint would report it so. When
  neither is (none in these files), the originator's view too. ``host_identifier`` is the local
  address.
* ``bytes_sent``/``bytes_received`` are payload bytes (Zeek ``orig_bytes``/``resp_bytes``, ``-`` read
  as 0; CICFlowMeter's total payload length each way), as the endpoint counts socket payload.
  ``sends``/``receives`` are packets each way (Zeek ``orig_pkts``/``resp_pkts``; CIC total packets):
  the endpoint counts send/receive calls, which packets only approximate.
* ``connections`` is 1 per record (one connection or UDP exchange).
* ``activity``: ``connect_failed`` for a TCP record whose handshake never completed (Zeek conn_state
  S0, REJ, RSTOS0, SH; for CIC, no backward packet or a lone backward RST with no payload either
  way), else ``connect`` (outbound) or ``accept`` (inbound). Failed inbound attempts keep
  ``connect_failed``: the endpoint would record no row for them at all (no socket is accepted), and
  they are kept so that inbound scans stay visible. UDP is never ``connect_failed``.
* ``first_seen``/``last_seen`` are ``floor(ts)`` and ``floor(ts + duration)``.
* ``family`` is 6 for addresses with a colon, else 4; addresses are canonical (RFC 5952 text).

**Per dataset.**

Records kept (TCP/UDP) of the source's, and positives: 001 669 of 992, 244; 002 4,121 of 4,504, 4,113;
003 342 of 361, 12; 005 873 of 992, 274; 008 5,643 of 5,663, 4,181; cicids2017 18,726 of 18,733,
13,732; kdd99-http 567,498, 2,211; kdd99-smtp 95,156, 30.

* 001 (NjRAT, first 1,000 log lines = 992 records: 739 Background, 244 Malicious, 9 Benign): internal
  = 192.168.1.0/24, fd2d:ab8c:225::/64 and link-local fe80::/10. ``label`` 1 exactly for
  ``label == "Malicious"`` (detail ``CC``: 237 to 41.108.179.197:1177, 7 HTTPS flows); Benign and
  Background (unverified, mostly the LAN's normal traffic) are 0. The 323 ICMP records dropped
  include no Malicious one (one Benign). ``label_detail`` is ``label`` or ``label/detailedlabel``
  (``Malicious/CC``).
  ``ts`` is seconds from the capture start (the file's timestamps are relative), not epoch time.
* 002 (nmap, 4,504 records, no labels upstream): every record is from the scanner 172.16.1.11, the
  monitored host. We label 1 (``nmap-scan``) all its TCP/UDP connections except its UDP/53 DNS
  queries to 8.8.8.8 (nmap's reverse lookups; 0, ``dns-lookup``). The probes to 0.0.0.4 and the TCP/80
  probes to 8.8.8.8 (host discovery) count as scan. These labels are ours, from the README.
* 003 (AndroidTester RAT, the full conn.log: 361 records; the README's "370 flows" counts the file's
  370 lines including its header): monitored host 10.8.0.61 (internal 10.8.0.0/24, the VPN).
  The README names 1337/TCP as the malicious connections: ``label`` 1 for TCP to or from port 1337
  (12 records, all to 147.32.83.234, detail ``C&C 1337/tcp``); the rest is 0, ``unlabelled``: the
  phone's other traffic, not verified benign.
* 005 (Simda, first 1,000 log lines = 992 records): internal = 192.168.1.0/24, fd77:48a1:c0bb::/64,
  fe80::/10; the infected host is 192.168.1.116. The README only says "malicious dga connections";
  the shared copy has no dns.log/http.log, so the rule comes from the upstream dns.log and http.log of
  the same commit (1c90a369), read once to write it: ``label`` 1 for 192.168.1.116's TCP/80
  connections to the 16 servers its ``GET /login.php`` check-ins for DGA host names went to
  (:data:`SIMDA_CHECKIN_SERVERS`, detail ``Simda C&C check-in``), and for its UDP/53 queries to
  8.8.8.8 except the two for dns.msftncsi.com (:data:`SIMDA_BENIGN_DNS_UIDS`; detail
  ``Simda DGA lookup``; the last 12, a burst at 367.3 s, have no entry in the upstream dns.log, which
  stops at 1,000 lines, and are taken as DGA lookups like the bursts before). Everything else,
  including a TCP/80 connection to 13.107.21.200 with no check-in, is 0 (``unlabelled``). ``ts`` is
  relative, as in 001.
* 008 (Windows host on the Internet, 5,663 records): monitored host 147.32.81.167 (a public
  address: every record has it on one side). Labels as in 001: 4,201 ``Malicious/External-Attack-
  to-Device`` (all inbound: Internet scanning of the host; 20 are ICMP and dropped, 4,181 kept),
  1,402 Benign, 60 Background. Most of the host's windows are malicious: the labels describe flows,
  not incidents.
* cicids2017 (the sampled class files present: BENIGN 5000, Botnet 736, DDoS 5000, Infiltration 36,
  Portscan 5000, SSH-Patator 2961): internal network 192.168.10.0/24 (172.16.0.1 is the attackers'
  NATed address and is *not* internal). ``Timestamp`` is read as UTC (its values fall 12:00-20:00,
  the capture's 9:00-17:00 ADT working day); ``Flow Duration`` is microseconds. ``label`` is 1 for
  every ``Label`` other than ``BENIGN``, **except attempted attacks**: the corrected release marks
  flows of an attack that carried no malicious payload (e.g. a TCP handshake that never sent the
  exploit) with a label ending ``- Attempted`` and an ``Attempted Category`` other than -1. They are
  labelled 0 (as the corrected release advises: they do not show the attack's behaviour) and keep
  their text in ``label_detail``, so they can be filtered or studied. The sampled files here contain
  none (``Attempted Category`` is -1 throughout).
* kdd99-http / kdd99-smtp (ADBench ``16_http.npz``: 567,498 rows, 2,211 anomalous;
  ``34_smtp.npz``: 95,156 rows, 30): ``X`` is ``log(x + 0.1)`` of duration, source bytes and
  destination bytes (checked: ``exp(X) - 0.1`` is integral to 1e-8); inverted and rounded to
  ``duration``, ``bytes_sent`` (source bytes) and ``bytes_received``. No addresses:
  ``host_identifier`` ``"kdd99"``, addresses ``""``, family 0, direction ``unknown``, ports 0 except
  ``remote_port`` 80 (http) / 25 (smtp) and ``protocol`` ``tcp``, which the subsets are defined by.
  ``ts`` is synthetic: the row's index in the file, in seconds (so windows are meaningless there).
  ``label_detail`` is ``anomaly`` or ``normal``.

**limit**: at most that many records. Zeek captures: the first ``limit`` TCP/UDP records in file
order (so windows stay contiguous in time). CIC and KDD: a seeded random sample (``numpy``
``default_rng(SAMPLE_SEED)``) kept in file order, because their files are ordered by class (CIC) or
have the anomalies in a few runs (KDD), so the first rows would have one class only.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from fleet_analytics.ingest.filters import ACTIVITIES, FLOW_COLUMNS, INTEGER_COLUMNS, canonical_address

log = logging.getLogger(__name__)

ROOT: Final = Path(__file__).resolve().parents[2]
ENV_VAR: Final = "FLEET_DATASETS_DIR"
DEFAULT_DIR: Final = "../shared/datasets"
DEFAULT_WINDOW_SECONDS: Final = 60
SAMPLE_SEED: Final = 0

EXTRA_COLUMNS: Final = ("host_identifier", "label", "label_detail", "ts", "duration")
WINDOW_EXTRA_COLUMNS: Final = ("host_identifier", "label", "label_detail")
TEXT_VOCABULARY: Final = tuple(column for column in FLOW_COLUMNS if column not in INTEGER_COLUMNS)
PROCESS_COLUMNS: Final = (
    "pid",
    "process_name",
    "process_path",
    "process_sha256",
    "uid",
    "username",
    "process_start_time",
    "parent_pid",
    "cmdline",
)
# vocabulary columns with real data in the network-level captures (Zeek, CIC)
CAPTURE_REAL_COLUMNS: Final = (
    "window_start",
    "window_seconds",
    "protocol",
    "family",
    "direction",
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "bytes_sent",
    "bytes_received",
    "connections",
    "activity",
    "first_seen",
    "last_seen",
    "sends",
    "receives",
)
KDD_REAL_COLUMNS: Final = ("protocol", "remote_port", "bytes_sent", "bytes_received", "connections")
# Zeek conn_state of a TCP attempt that never completed its handshake
ZEEK_FAILED_STATES: Final = frozenset({"S0", "REJ", "RSTOS0", "SH"})
# the endpoint's order of significance of activities (docs/endpoint.md): a window shows the first
ACTIVITY_ORDER: Final = ("connect_failed", "connect", "accept", "listen", "data", "close")
if frozenset(ACTIVITY_ORDER) != ACTIVITIES:
    raise AssertionError("ACTIVITY_ORDER must list the vocabulary's activities")

SIMDA_HOST: Final = "192.168.1.116"
# the servers Simda's `GET /login.php` check-ins (DGA host names) went to, in upstream http.log @ 1c90a369
SIMDA_CHECKIN_SERVERS: Final = frozenset(
    {
        "104.239.157.210",
        "23.253.126.58",
        "141.8.224.169",
        "146.148.34.125",
        "185.53.178.6",
        "185.53.178.9",
        "185.53.179.7",
        "195.22.4.21",
        "208.100.26.251",
        "217.70.184.38",
        "23.89.102.68",
        "35.225.160.245",
        "54.72.9.51",
        "67.55.121.97",
        "72.5.65.113",
        "74.119.239.234",
    }
)
# the two DNS queries of 192.168.1.116 for dns.msftncsi.com (Windows' connectivity check), upstream dns.log
SIMDA_BENIGN_DNS_UIDS: Final = frozenset({"CaBhzn4douRRoJ519a", "CuJjU1u6XyGQ4tfBi"})

STRATOSPHERE_CITATION: Final = (
    "Stratosphere Laboratory (CTU Prague), security-datasets-for-testing, "
    "github.com/stratosphereips/security-datasets-for-testing @ 1c90a369, {path}; original capture: "
    "{source}. GPL-2.0 (LICENSE beside the files). Cite: Sebastian Garcia, Veronica Valeros, "
    "Stratosphere Laboratory, Czech Technical University in Prague."
)
CIC_CITATION: Final = (
    "CIC-IDS2017: Iman Sharafaldin, Arash Habibi Lashkari, Ali A. Ghorbani, 'Toward Generating a New "
    "Intrusion Detection Dataset and Intrusion Traffic Characterization', ICISSP 2018 (Canadian Institute "
    "for Cybersecurity, research terms). Corrected flows and labels: Gints Engelen, Vera Rimmer, Wouter "
    "Joosen, 'Troubleshooting an Intrusion Detection Dataset: the CICIDS2017 Case Study', IEEE SPW (WTMC) "
    "2021, intrusion-detection.distrinet-research.be/CNS2022/. Random per-class sample from "
    "github.com/ScubaInstructor/fuh @ 86d1bab5 : nids-daten/sampled_CICIDS2017_improved_rnd_5000."
)
KDD_CITATION: Final = (
    "KDD Cup 1999 ({subset} subset, 3 features) as packaged by ADBench: Songqiao Han, Xiyang Hu, "
    "Hailiang Huang, Minqi Jiang, Yue Zhao, 'ADBench: Anomaly Detection Benchmark', NeurIPS 2022 "
    "Datasets and Benchmarks; github.com/Minqi824/ADBench @ 3dac8221 : adbench/datasets/Classical/"
    "{file} (BSD-2-Clause)."
)


class UnknownDataset(KeyError):
    """No dataset has this name; the message lists the known names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DatasetUnavailable(ValueError):
    """The dataset's files are not where we looked; the message says where and how to point elsewhere."""


@dataclass(frozen=True)
class LabelledFlows:
    name: str  # e.g. "stratosphere-001-njrat", "cicids2017", "kdd99-http"
    flows: pd.DataFrame  # one row per record: FLOW_COLUMNS + EXTRA_COLUMNS (see the module docstring)
    citation: str  # the source and how to cite it
    real_columns: tuple[str, ...]  # vocabulary columns with real data; the others are unknown fillers
    source_rows: int  # records in the source file(s) before dropping non-TCP/UDP ones (and before limit)


# ---------------------------------------------------------------------------------------------------
# where the files are


def dataset_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """The datasets directory: ``directory`` if given, else ``$FLEET_DATASETS_DIR``, else
    ``../shared/datasets``; a relative path is taken from the project root (not the working directory)."""
    chosen = os.fspath(directory) if directory is not None else os.environ.get(ENV_VAR) or DEFAULT_DIR
    path = Path(chosen).expanduser()
    return (path if path.is_absolute() else ROOT / path).resolve()


def _where(directory: Path) -> str:
    return (
        f"looked in {directory} (set {ENV_VAR} to the datasets directory, absolute or relative to "
        f"{ROOT}; default {DEFAULT_DIR})"
    )


# ---------------------------------------------------------------------------------------------------
# building frames in our vocabulary


def _text(values: Any, index: pd.Index) -> pd.Series:
    return pd.Series(values, index=index, dtype="str")


def _vocabulary_frame(n: int, columns: Mapping[str, Any]) -> pd.DataFrame:
    """A frame of ``n`` rows with every vocabulary and extra column: the given ones converted to their
    dtype, the rest unknown (``""`` / ``0``)."""
    unknown = set(columns).difference(FLOW_COLUMNS, EXTRA_COLUMNS)
    if unknown:
        raise AssertionError(f"not vocabulary columns: {sorted(unknown)}")
    index = pd.RangeIndex(n)
    data: dict[str, pd.Series] = {}
    for column in (*FLOW_COLUMNS, *EXTRA_COLUMNS):
        value = columns.get(column)
        if isinstance(value, pd.Series):
            value = value.to_numpy()
        if column in ("ts", "duration"):
            data[column] = pd.Series(value, index=index, dtype="float64")
        elif column in TEXT_VOCABULARY or column in ("host_identifier", "label_detail"):
            data[column] = _text("" if value is None else value, index)
        else:
            data[column] = pd.Series(0 if value is None else value, index=index, dtype="int64")
    return pd.DataFrame(data, index=index)


def _canonical(addresses: pd.Series) -> pd.Series:
    """Canonical text of each address (mapped once per distinct value); ValueError naming bad ones."""
    uniques = pd.unique(addresses)
    parsed = {text: canonical_address(str(text)) for text in uniques}
    bad = sorted(str(text) for text, value in parsed.items() if value is None)
    if bad:
        raise ValueError(f"{len(bad)} distinct value(s) are not IP addresses, e.g. {bad[:5]}")
    return addresses.map({text: value[1] for text, value in parsed.items() if value is not None})


def _in_networks(addresses: pd.Series, networks: Iterable[str]) -> pd.Series:
    nets = [ipaddress.ip_network(net) for net in networks]
    inside = {
        text: any(
            ipaddress.ip_address(text) in net for net in nets if net.version == (6 if ":" in text else 4)
        )
        for text in pd.unique(addresses)
    }
    return addresses.map(inside).astype(bool)


@dataclass(frozen=True)
class _Endpoints:
    """Record-level fields in the originator / responder view, before choosing the local side."""

    ts: pd.Series
    duration: pd.Series
    protocol: pd.Series  # "tcp" / "udp"
    orig_address: pd.Series
    orig_port: pd.Series
    resp_address: pd.Series
    resp_port: pd.Series
    orig_bytes: pd.Series
    resp_bytes: pd.Series
    orig_packets: pd.Series
    resp_packets: pd.Series
    failed: pd.Series  # TCP handshake never completed
    label: pd.Series
    label_detail: pd.Series


def _local_view(records: _Endpoints, internal: Iterable[str]) -> pd.DataFrame:
    """Choose the local side (module docstring) and build the vocabulary frame."""
    orig = _canonical(records.orig_address)
    resp = _canonical(records.resp_address)
    networks = tuple(internal)
    orig_inside = _in_networks(orig, networks).to_numpy(dtype=bool)
    resp_inside = _in_networks(resp, networks).to_numpy(dtype=bool)
    inbound: NDArray[np.bool_] = ~orig_inside & resp_inside
    neither = int((~orig_inside & ~resp_inside).sum())
    if neither:
        log.info("%d record(s) have neither side in %s: the originator's view is taken", neither, networks)

    def side(local: pd.Series, remote: pd.Series) -> NDArray[Any]:
        return np.where(inbound, np.asarray(remote), np.asarray(local))

    ts = records.ts.to_numpy(dtype="float64")
    duration = records.duration.to_numpy(dtype="float64")
    local_address = side(orig, resp)
    failed = records.failed.to_numpy(dtype=bool)
    activity = np.select([failed, inbound], ["connect_failed", "accept"], "connect")
    first_seen = np.floor(ts).astype("int64")
    return _vocabulary_frame(
        len(ts),
        {
            "window_start": (first_seen // DEFAULT_WINDOW_SECONDS) * DEFAULT_WINDOW_SECONDS,
            "window_seconds": DEFAULT_WINDOW_SECONDS,
            "protocol": records.protocol,
            "family": np.where(pd.Series(local_address).str.contains(":", regex=False), 6, 4),
            "direction": np.where(inbound, "inbound", "outbound"),
            "local_address": local_address,
            "local_port": side(records.orig_port, records.resp_port),
            "remote_address": side(resp, orig),
            "remote_port": side(records.resp_port, records.orig_port),
            "bytes_sent": side(records.orig_bytes, records.resp_bytes),
            "bytes_received": side(records.resp_bytes, records.orig_bytes),
            "connections": 1,
            "activity": activity,
            "first_seen": first_seen,
            "last_seen": np.floor(ts + duration).astype("int64"),
            "sends": side(records.orig_packets, records.resp_packets),
            "receives": side(records.resp_packets, records.orig_packets),
            "host_identifier": local_address,
            "label": records.label,
            "label_detail": records.label_detail,
            "ts": ts,
            "duration": duration,
        },
    )


# ---------------------------------------------------------------------------------------------------
# Zeek conn.log


def _read_zeek_tsv(path: Path) -> pd.DataFrame:
    """A Zeek TSV log as text columns named by its ``#fields`` line (every value as written)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fields = next((line.split("\t")[1:] for line in lines if line.startswith("#fields\t")), None)
    if fields is None:
        raise ValueError(f"{path} has no #fields header line: not a Zeek TSV log")
    body = "\n".join(line for line in lines if line and not line.startswith("#"))
    if not body:
        return pd.DataFrame({field: pd.Series([], dtype="str") for field in fields})
    return pd.read_csv(
        io.StringIO(body),
        sep="\t",
        header=None,
        names=fields,
        dtype="str",
        na_filter=False,
        quoting=csv.QUOTE_NONE,
        engine="c",
    )


def _read_zeek_json(path: Path) -> pd.DataFrame:
    """A Zeek JSON-lines log as text columns (absent fields as Zeek's unset ``-``)."""
    frame = pd.read_json(path, lines=True, dtype=False)
    return frame.astype("str").where(frame.notna(), "-")


def _zeek_count(values: pd.Series) -> pd.Series:
    """A Zeek count column: unset ``-`` (and ``(empty)``) read as 0."""
    cleaned = values.astype("str").str.strip().replace({"-": "0", "(empty)": "0", "": "0"})
    return pd.to_numeric(cleaned, errors="raise").astype("float64").round().astype("int64")


def _zeek_float(values: pd.Series) -> pd.Series:
    cleaned = values.astype("str").str.strip().replace({"-": "0", "(empty)": "0", "": "0"})
    return pd.to_numeric(cleaned, errors="raise").astype("float64")


ZeekLabeler = Callable[[pd.DataFrame], tuple[pd.Series, pd.Series]]


def _stratosphere_labels(conn: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """``label``/``detailedlabel`` columns: 1 exactly for ``Malicious``; detail ``label[/detailed]``."""
    missing = {"label", "detailedlabel"}.difference(conn.columns)
    if missing:
        raise ValueError(f"the log has no {sorted(missing)} column(s)")
    label = conn["label"].str.strip()
    detailed = conn["detailedlabel"].str.strip().replace({"(empty)": "", "-": ""})
    known = {"Malicious", "Benign", "Background"}
    other = sorted(set(pd.unique(label)).difference(known))
    if other:
        raise ValueError(f"unexpected label value(s) {other}; expected {sorted(known)}")
    detail = label.where(detailed == "", label + "/" + detailed)
    return (label == "Malicious").astype("int64"), detail


def _nmap_labels(conn: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    dns = (conn["proto"] == "udp") & (conn["id.resp_p"].astype("str") == "53")
    return (~dns).astype("int64"), _text(np.where(dns, "dns-lookup", "nmap-scan"), conn.index)


def _android_rat_labels(conn: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    ports = conn[["id.orig_p", "id.resp_p"]].astype("str")
    rat = (conn["proto"] == "tcp") & ((ports["id.resp_p"] == "1337") | (ports["id.orig_p"] == "1337"))
    return rat.astype("int64"), _text(np.where(rat, "C&C 1337/tcp", "unlabelled"), conn.index)


def _simda_labels(conn: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    from_host = conn["id.orig_h"] == SIMDA_HOST
    port = conn["id.resp_p"].astype("str")
    checkin = (
        from_host & (conn["proto"] == "tcp") & (port == "80") & conn["id.resp_h"].isin(SIMDA_CHECKIN_SERVERS)
    )
    dga = (
        from_host
        & (conn["proto"] == "udp")
        & (port == "53")
        & (conn["id.resp_h"] == "8.8.8.8")
        & ~conn["uid"].isin(SIMDA_BENIGN_DNS_UIDS)
    )
    detail = np.select([checkin, dga], ["Simda C&C check-in", "Simda DGA lookup"], "unlabelled")
    return (checkin | dga).astype("int64"), _text(detail, conn.index)


def _from_zeek(conn: pd.DataFrame, internal: Iterable[str], labeler: ZeekLabeler) -> tuple[pd.DataFrame, int]:
    source_rows = len(conn)
    conn = conn.assign(proto=conn["proto"].astype("str").str.strip().str.lower())
    kept = conn["proto"].isin(["tcp", "udp"])
    if not kept.all():
        dropped = conn.loc[~kept, "proto"].value_counts()
        log.info("dropped %d record(s) not TCP/UDP: %s", int((~kept).sum()), dropped.to_dict())
    conn = conn.loc[kept].reset_index(drop=True)
    label, detail = labeler(conn)
    records = _Endpoints(
        ts=_zeek_float(conn["ts"]),
        duration=_zeek_float(conn["duration"]),
        protocol=conn["proto"],
        orig_address=conn["id.orig_h"].astype("str").str.strip(),
        orig_port=_zeek_count(conn["id.orig_p"]),
        resp_address=conn["id.resp_h"].astype("str").str.strip(),
        resp_port=_zeek_count(conn["id.resp_p"]),
        orig_bytes=_zeek_count(conn["orig_bytes"]),
        resp_bytes=_zeek_count(conn["resp_bytes"]),
        orig_packets=_zeek_count(conn["orig_pkts"]),
        resp_packets=_zeek_count(conn["resp_pkts"]),
        failed=(conn["proto"] == "tcp") & conn["conn_state"].isin(ZEEK_FAILED_STATES),
        label=label,
        label_detail=detail,
    )
    return _local_view(records, internal), source_rows


# ---------------------------------------------------------------------------------------------------
# the datasets


@dataclass(frozen=True)
class _Spec:
    files: tuple[str, ...]  # relative to the datasets directory; a glob pattern for CIC's class files
    read: Callable[[Path, tuple[Path, ...]], tuple[pd.DataFrame, int]]  # -> (records, source_rows)
    citation: str
    real_columns: tuple[str, ...]
    sampled: bool  # limit draws a seeded sample (else: the first records)


def _zeek_reader(
    internal: tuple[str, ...], labeler: ZeekLabeler, *, json_lines: bool = False
) -> Callable[[Path, tuple[Path, ...]], tuple[pd.DataFrame, int]]:
    def read(_directory: Path, paths: tuple[Path, ...]) -> tuple[pd.DataFrame, int]:
        conn = _read_zeek_json(paths[0]) if json_lines else _read_zeek_tsv(paths[0])
        return _from_zeek(conn, internal, labeler)

    return read


CIC_COLUMNS: Final = (
    "Src IP",
    "Src Port",
    "Dst IP",
    "Dst Port",
    "Protocol",
    "Timestamp",
    "Flow Duration",
    "Total Fwd Packet",
    "Total Bwd packets",
    "Total Length of Fwd Packet",
    "Total Length of Bwd Packet",
    "Bwd RST Flags",
    "Label",
    "Attempted Category",
)
CIC_INTERNAL: Final = ("192.168.10.0/24",)
CIC_INTEGERS: Final = (
    "Src Port",
    "Dst Port",
    "Protocol",
    "Flow Duration",
    "Total Fwd Packet",
    "Total Bwd packets",
    "Total Length of Fwd Packet",
    "Total Length of Bwd Packet",
    "Bwd RST Flags",
    "Attempted Category",
)


def _read_cic(_directory: Path, paths: tuple[Path, ...]) -> tuple[pd.DataFrame, int]:
    frames = []
    for path in paths:
        header = pd.read_csv(path, nrows=0).columns
        missing = sorted(set(CIC_COLUMNS).difference(header))
        if missing:
            raise ValueError(f"{path} lacks the column(s) {missing}")
        frames.append(
            pd.read_csv(
                path,
                usecols=list(CIC_COLUMNS),
                dtype=dict.fromkeys(CIC_INTEGERS, "int64")
                | {"Src IP": "str", "Dst IP": "str", "Timestamp": "str", "Label": "str"},
                na_filter=False,
            )
        )
    cic = pd.concat(frames, ignore_index=True)
    source_rows = len(cic)
    kept = cic["Protocol"].isin([6, 17])
    if not kept.all():
        dropped = cic.loc[~kept, "Protocol"].value_counts()
        log.info("dropped %d flow(s) not TCP/UDP (protocol: count) %s", int((~kept).sum()), dropped.to_dict())
    cic = cic.loc[kept].reset_index(drop=True)
    stamps = pd.to_datetime(cic["Timestamp"].str.strip(), format="ISO8601", utc=True)
    ts = (stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    text = cic["Label"].str.strip()
    attempted = text.str.endswith("- Attempted") | (cic["Attempted Category"] != -1)
    tcp = cic["Protocol"] == 6
    no_payload = (cic["Total Length of Fwd Packet"] == 0) & (cic["Total Length of Bwd Packet"] == 0)
    refused = (cic["Bwd RST Flags"] > 0) & (cic["Total Bwd packets"] == 1) & no_payload
    records = _Endpoints(
        ts=ts,
        duration=cic["Flow Duration"].astype("float64") / 1e6,
        protocol=_text(np.where(tcp, "tcp", "udp"), cic.index),
        orig_address=cic["Src IP"].str.strip(),
        orig_port=cic["Src Port"],
        resp_address=cic["Dst IP"].str.strip(),
        resp_port=cic["Dst Port"],
        orig_bytes=cic["Total Length of Fwd Packet"],
        resp_bytes=cic["Total Length of Bwd Packet"],
        orig_packets=cic["Total Fwd Packet"],
        resp_packets=cic["Total Bwd packets"],
        failed=tcp & ((cic["Total Bwd packets"] == 0) | refused),
        label=((text != "BENIGN") & ~attempted).astype("int64"),
        label_detail=text,
    )
    return _local_view(records, CIC_INTERNAL), source_rows


def _kdd_reader(
    subset: str, remote_port: int
) -> Callable[[Path, tuple[Path, ...]], tuple[pd.DataFrame, int]]:
    def read(_directory: Path, paths: tuple[Path, ...]) -> tuple[pd.DataFrame, int]:
        with np.load(paths[0], allow_pickle=False) as archive:
            features = np.asarray(archive["X"], dtype="float64")
            anomalous = np.asarray(archive["y"])
        if features.ndim != 2 or features.shape[1] != 3 or anomalous.shape != (features.shape[0],):
            raise ValueError(
                f"{paths[0]}: expected X of shape (n, 3) and y of shape (n,), "
                f"got {features.shape} and {anomalous.shape}"
            )
        if not np.isfinite(features).all():
            raise ValueError(f"{paths[0]}: {int((~np.isfinite(features)).sum())} non-finite value(s) in X")
        # X = log(x + 0.1) of duration, source bytes, destination bytes (ADBench's preprocessing)
        values = np.maximum(np.rint(np.exp(features) - 0.1), 0.0)
        n = len(values)
        label = (anomalous != 0).astype("int64")
        return (
            _vocabulary_frame(
                n,
                {
                    "window_start": (np.arange(n) // DEFAULT_WINDOW_SECONDS) * DEFAULT_WINDOW_SECONDS,
                    "window_seconds": DEFAULT_WINDOW_SECONDS,
                    "protocol": "tcp",
                    "direction": "unknown",
                    "remote_port": remote_port,
                    "bytes_sent": values[:, 1].astype("int64"),
                    "bytes_received": values[:, 2].astype("int64"),
                    "connections": 1,
                    "activity": "connect",
                    "first_seen": np.arange(n, dtype="int64"),
                    "last_seen": np.arange(n, dtype="int64") + values[:, 0].astype("int64"),
                    "host_identifier": "kdd99",
                    "label": label,
                    "label_detail": np.where(label == 1, "anomaly", "normal"),
                    "ts": np.arange(n, dtype="float64"),
                    "duration": values[:, 0],
                },
            ),
            n,
        )

    return read


_ZEEK = "stratosphere_zeek"
DATASETS: Final[Mapping[str, _Spec]] = {
    "stratosphere-001-njrat": _Spec(
        (f"{_ZEEK}/001-zeek-scenario-malicious_labeled-conn.log",),
        _zeek_reader(("192.168.1.0/24", "fd2d:ab8c:225::/64", "fe80::/10"), _stratosphere_labels),
        STRATOSPHERE_CITATION.format(
            path="001-zeek-scenario-malicious/labeled-conn.log (first 1,000 log lines)",
            source="mcfp.felk.cvut.cz/publicDatasets/CTU-Malware-Capture-Botnet-230-1 (NjRAT)",
        ),
        CAPTURE_REAL_COLUMNS,
        sampled=False,
    ),
    "stratosphere-002-nmap": _Spec(
        (f"{_ZEEK}/002-zeek-scenario-port-scanning_conn.log",),
        _zeek_reader(("172.16.1.11/32",), _nmap_labels, json_lines=True),
        STRATOSPHERE_CITATION.format(
            path="002-zeek-scenario-port-scanning/conn.log",
            source="Stratosphere Laboratory, nmap scans by 172.16.1.11 (unlabelled upstream; the labels "
            "here are ours: every TCP/UDP connection of the scanner except its DNS queries is scan)",
        ),
        CAPTURE_REAL_COLUMNS,
        sampled=False,
    ),
    "stratosphere-003-android-rat": _Spec(
        (f"{_ZEEK}/003-zeek-scenario-malicious_conn.log",),
        _zeek_reader(("10.8.0.0/24",), _android_rat_labels),
        STRATOSPHERE_CITATION.format(
            path="003-zeek-scenario-malicious/conn.log",
            source="mcfp.felk.cvut.cz/publicDatasets/Android-Mischief-Dataset/AndroidMischiefDataset_v2/"
            "RAT01_AndroidTester (labels ours, from the README: the 1337/TCP connections are malicious)",
        ),
        CAPTURE_REAL_COLUMNS,
        sampled=False,
    ),
    "stratosphere-005-simda": _Spec(
        (f"{_ZEEK}/005-zeek-scenario-malicious_conn.log",),
        _zeek_reader(("192.168.1.0/24", "fd77:48a1:c0bb::/64", "fe80::/10"), _simda_labels),
        STRATOSPHERE_CITATION.format(
            path="005-zeek-scenario-malicious/conn.log (first 1,000 log lines)",
            source="mcfp.felk.cvut.cz/publicDatasets/CTU-Malware-Capture-Botnet-355-1 (Simda; labels ours, "
            "from the upstream dns.log and http.log: C&C check-ins and DGA lookups of 192.168.1.116)",
        ),
        CAPTURE_REAL_COLUMNS,
        sampled=False,
    ),
    "stratosphere-008-mixed": _Spec(
        (f"{_ZEEK}/008-zeek-mixed_data_conn.log.labeled",),
        _zeek_reader(("147.32.81.167/32",), _stratosphere_labels),
        STRATOSPHERE_CITATION.format(
            path="008-zeek-mixed/data/conn.log.labeled",
            source="first day of CTU-Normal-40 (CTU-50), labelled with NetflowLabeler (labels.config); "
            "master thesis of Pavel Janata, FEEL project",
        ),
        CAPTURE_REAL_COLUMNS,
        sampled=False,
    ),
    "cicids2017": _Spec(
        ("cicids2017_improved_sampled/*.csv",),
        _read_cic,
        CIC_CITATION,
        CAPTURE_REAL_COLUMNS,
        sampled=True,
    ),
    "kdd99-http": _Spec(
        ("adbench_kdd99/16_http.npz",),
        _kdd_reader("http", 80),
        KDD_CITATION.format(subset="http", file="16_http.npz"),
        KDD_REAL_COLUMNS,
        sampled=True,
    ),
    "kdd99-smtp": _Spec(
        ("adbench_kdd99/34_smtp.npz",),
        _kdd_reader("smtp", 25),
        KDD_CITATION.format(subset="smtp", file="34_smtp.npz"),
        KDD_REAL_COLUMNS,
        sampled=True,
    ),
}


def _spec(name: str) -> _Spec:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise UnknownDataset(f"unknown dataset {name!r}; known: {known}") from None


def _files(spec: _Spec, directory: Path) -> tuple[Path, ...] | None:
    """The spec's files in ``directory``, None when any is missing (a pattern must match one or more)."""
    found: list[Path] = []
    for pattern in spec.files:
        if any(char in pattern for char in "*?["):
            matches = sorted(directory.glob(pattern))
            if not matches:
                return None
            found.extend(matches)
        elif (directory / pattern).is_file():
            found.append(directory / pattern)
        else:
            return None
    return tuple(found)


def available(directory: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the datasets whose files are present in the datasets directory (:func:`dataset_dir`)."""
    root = dataset_dir(directory)
    return [name for name, spec in DATASETS.items() if _files(spec, root) is not None]


def load(
    name: str, *, limit: int | None = None, directory: str | os.PathLike[str] | None = None
) -> LabelledFlows:
    """One dataset's records in our vocabulary (module docstring: columns, mapping, ``limit``).

    Raises :class:`UnknownDataset` (a KeyError) for an unknown name and :class:`DatasetUnavailable` (a
    ValueError) when its files are missing, naming the directory searched and ``$FLEET_DATASETS_DIR``.
    """
    spec = _spec(name)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, not {limit!r}")
    root = dataset_dir(directory)
    paths = _files(spec, root)
    if paths is None:
        wanted = ", ".join(spec.files)
        state = "exists" if root.is_dir() else "does not exist"
        raise DatasetUnavailable(f"dataset {name!r} needs {wanted}: {_where(root)}; that directory {state}")
    started = time.perf_counter()
    flows, source_rows = spec.read(root, paths)
    if limit is not None and limit < len(flows):
        if spec.sampled:
            rng = np.random.default_rng(SAMPLE_SEED)
            rows = np.sort(rng.choice(len(flows), size=limit, replace=False))
            flows = flows.iloc[rows].reset_index(drop=True)
        else:
            flows = flows.iloc[:limit].reset_index(drop=True)
    log.info(
        "dataset %s: %d record(s) (%d positive) of %d in the source, %.2f s",
        name,
        len(flows),
        int(flows["label"].sum()),
        source_rows,
        time.perf_counter() - started,
    )
    return LabelledFlows(name, flows, spec.citation, spec.real_columns, source_rows)


# ---------------------------------------------------------------------------------------------------
# flow windows


def to_windows(flows: pd.DataFrame, *, window_seconds: int = DEFAULT_WINDOW_SECONDS) -> pd.DataFrame:
    """Aggregate records into flow windows, as the endpoint would report them.

    A window row is one (host_identifier, window_start, protocol, family, direction, local_address,
    remote_address, service port, process fields), where ``window_start = floor(ts / window_seconds) *
    window_seconds`` of each record's start and the **service port** is ``remote_port`` for outbound
    (and unknown-direction) records and ``local_port`` for inbound ones. Keying on the service port
    rather than always on ``remote_port`` is deliberate: an inbound connection's remote port is the
    peer's ephemeral port, so keying on it would leave one window per connection for every inbound
    scan or attack (008, CIC DDoS/port scan/SSH). The other port (the ephemeral one) is kept when it is
    the same for every record of the window, else 0 ("several"). Direction is part of the key so that
    inbound and outbound traffic never merge.

    Per window: ``bytes_sent``, ``bytes_received``, ``sends``, ``receives`` and ``connections`` (records
    starting in the window; the endpoint counts only connect/accept, so failed attempts count here too)
    are sums; ``first_seen`` is the earliest record start and ``last_seen`` the latest record end, cut
    to the window's last second (a long record's bytes all land in its start window: there is no
    interpolation); ``activity`` the most significant of the window in the endpoint's order
    (connect_failed, connect, accept, listen, data, close); ``label`` the maximum (one malicious record
    makes the window malicious); ``label_detail`` the most common detail among the window's malicious
    records (ties: alphabetical first), or ``"benign"``. Text columns outside the key
    (hostnames, community_id) are kept when the same for all records, else ``""``.

    Returns FLOW_COLUMNS + host_identifier, label, label_detail, sorted by host, window, key. These
    windows are for evaluation: a TCP window with bytes whose ephemeral port became 0 ("several") is
    refused by the ingest ``ports`` filter, which wants both ports of a TCP flow that carried bytes.
    """
    if (
        isinstance(window_seconds, bool)
        or not isinstance(window_seconds, int)
        or not 1 <= window_seconds <= 86400
    ):
        raise ValueError(f"window_seconds must be an integer in 1-86400, not {window_seconds!r}")
    needed = {*FLOW_COLUMNS, "host_identifier", "label", "label_detail", "ts"}
    missing = sorted(needed.difference(flows.columns))
    if missing:
        raise ValueError(f"flows lack the column(s) {missing}")
    ts = flows["ts"].to_numpy(dtype="float64")
    if not np.isfinite(ts).all():
        raise ValueError(f"{int((~np.isfinite(ts)).sum())} record(s) have a non-finite ts")
    start = (np.floor(ts / window_seconds) * window_seconds).astype("int64")
    inbound = (flows["direction"] == "inbound").to_numpy()
    work = flows.assign(
        window_start=start,
        _service_port=np.where(inbound, flows["local_port"], flows["remote_port"]),
        _other_port=np.where(inbound, flows["remote_port"], flows["local_port"]),
        _activity_rank=flows["activity"].map({name: rank for rank, name in enumerate(ACTIVITY_ORDER)}),
    )
    if work["_activity_rank"].isna().any():
        bad = sorted(set(flows["activity"]).difference(ACTIVITY_ORDER))
        raise ValueError(f"unknown activity value(s) {bad}")
    keys = [
        "host_identifier",
        "window_start",
        "protocol",
        "family",
        "direction",
        "local_address",
        "remote_address",
        "_service_port",
        *PROCESS_COLUMNS,
    ]
    grouped = work.groupby(keys, sort=True, dropna=False)
    sums = grouped[["bytes_sent", "bytes_received", "sends", "receives"]].sum()
    windows = sums.assign(
        connections=grouped["connections"].sum(),
        first_seen=grouped["first_seen"].min(),
        last_seen=grouped["last_seen"].max(),
        label=grouped["label"].max(),
        _other_min=grouped["_other_port"].min(),
        _other_max=grouped["_other_port"].max(),
        _activity_rank=grouped["_activity_rank"].min(),
    )
    for column in ("local_hostname", "remote_hostname", "community_id"):
        low, high = grouped[column].min(), grouped[column].max()
        windows[column] = low.where(low == high, "")
    windows = windows.reset_index()
    other = windows["_other_min"].where(windows["_other_min"] == windows["_other_max"], 0)
    inbound_windows = windows["direction"] == "inbound"
    windows["local_port"] = np.where(inbound_windows, windows["_service_port"], other).astype("int64")
    windows["remote_port"] = np.where(inbound_windows, other, windows["_service_port"]).astype("int64")
    windows["activity"] = _text(
        np.asarray(ACTIVITY_ORDER)[windows["_activity_rank"].to_numpy(dtype="int64")], windows.index
    )
    windows["window_seconds"] = window_seconds
    window_end = windows["window_start"] + window_seconds - 1
    windows["last_seen"] = np.minimum(windows["last_seen"], window_end).astype("int64")
    windows["first_seen"] = np.minimum(windows["first_seen"], windows["last_seen"]).astype("int64")

    positives = work.loc[work["label"] > 0, [*keys, "label_detail"]]
    counts = positives.groupby([*keys, "label_detail"], sort=False, dropna=False).size().rename("_n")
    top = (
        counts.reset_index()
        .sort_values(["_n", "label_detail"], ascending=[False, True], kind="stable")
        .drop_duplicates(keys)
    )
    windows = windows.merge(top[[*keys, "label_detail"]], on=keys, how="left", validate="one_to_one")
    windows["label_detail"] = _text(windows["label_detail"].fillna("benign"), windows.index)
    columns = [*FLOW_COLUMNS, *WINDOW_EXTRA_COLUMNS]
    result = windows[columns].copy()
    for column in (*INTEGER_COLUMNS, "label"):
        result[column] = result[column].astype("int64")
    for column in (*TEXT_VOCABULARY, "host_identifier", "label_detail"):
        result[column] = result[column].astype("str")
    return result.reset_index(drop=True)


def describe(flows: LabelledFlows) -> dict[str, Any]:
    """Counts for reports: records, positives, hosts and the label details with their counts."""
    frame = flows.flows
    return {
        "name": flows.name,
        "records": len(frame),
        "source_rows": flows.source_rows,
        "positives": int(frame["label"].sum()),
        "hosts": int(frame["host_identifier"].nunique()),
        "details": {str(k): int(v) for k, v in frame["label_detail"].value_counts().items()},
        "span_hours": float((frame["ts"].max() - frame["ts"].min()) / 3600.0) if len(frame) else math.nan,
    }
