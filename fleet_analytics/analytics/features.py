"""Feature vectors per flow window: pure, vectorised pandas over DataFrames, no database.

The unit scored is a **flow window**: one host, one window, one application (:func:`app_key`: the
executable's path with the user's home and version numbers generalised, so that an update or another
user's copy is the same application; its sha256 is what identifies the *binary*), one peer (protocol,
remote address), one service port and a direction. The service port is the remote port of an
outbound flow and the local port of an inbound one: a server's clients come from ever-new ephemeral
ports, which say nothing. The endpoint's rows
are finer (one per pid and local port); :func:`flow_windows` sums them.

Every feature is oriented so that larger means more unusual, except where noted; the detector sees
them all, and :mod:`fleet_analytics.analytics.explain` turns the largest surprises back into words.

A :class:`Profile` is what the fleet looked like in the training period: how many hosts contacted each
destination, each (application, destination) pair and each port, each application's usual volume,
each host's usual hours and volume. It is fitted with the detector and stored in the same artifact,
so scoring needs no history beyond the beaconing look-back (:func:`beacon_scores`).

Feature list (:data:`FEATURES`):
- ``log_bytes_sent``, ``log_bytes_received``: log1p of the payload bytes each way.
- ``log_send_ratio``: log1p(sent) - log1p(received); signed (uploads positive).
- ``log_connections``: log1p of the connections opened in the window.
- ``fanout_addresses``, ``fanout_ports``: log1p of the distinct remote addresses and ports of the same
  host and application in the window (scans and sweeps).
- ``process_connections``: log1p of that host and application's connections in the window.
- ``external``: 1 when the destination is outside the private, loopback, link-local and multicast
  ranges (:func:`is_internal_address`), else 0.
- ``destination_rarity``: log((H + 1) / (h + 1)) / log(H + 1), h hosts of H that contacted the
  address: 0 when every host did, 1 when none did. Divided by log(H + 1) so that "never seen" is 1
  whatever the number of hosts in the profile: training features come from profiles of earlier
  spans, which may hold fewer hosts (a weekend with only the servers up) than the final profile.
- ``pair_rarity``: the same for the (application, address) pair.
- ``port_rarity``: the same for (protocol, direction, service port).
- ``port_external_rarity``: the same for (protocol, direction, service port, external): DNS or SMB to
  the Internet is rare where DNS and SMB to internal servers are everyday.
- ``process_rarity``: the same for the executable binary (:func:`binary_key`: its sha256), so a
  binary new to the fleet has the largest value.
- ``joint_rarity``: the lesser of the destination's and the binary's rarity: high only when a
  rare executable talks to a rare destination (a new implant calling home), which no single rarity
  shows, since browsers meet rare destinations and rare tools talk to common ones all day.
- ``new_for_host``: 1 when a known host never contacted the address in the profile (0 for new hosts).
- ``hour_rarity``: how unusual this hour of day (UTC) is for the host; 0 at or above its average.
- ``app_sent_deviation``, ``app_received_deviation``: robust z-scores of the bytes against the
  application's fleet median (the fleet's for applications not in the profile); signed.
- ``host_sent_deviation``: robust z-score of the host's total sent in the window against its usual,
  times this flow window's share of that total (the flows that carry a host's excess show it, not
  every small flow beside them).
- ``beacon_score``: in [0, 1], how regular the pair's contacts are over the look-back (RITA's beacon
  analysis: Bowley skew and median absolute deviation of the intervals and of the sizes, and the
  number of contacts).
- ``pair_sent_total``: log1p of the bytes the host's application sent to the address over the
  look-back ending with this window (slow exfiltration adds up); causal, so training and scoring see
  the same span.
- ``pair_windows``: log1p of the flow windows of the pair over the same span.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

FEATURES: Final = (
    "log_bytes_sent",
    "log_bytes_received",
    "log_send_ratio",
    "log_connections",
    "fanout_addresses",
    "fanout_ports",
    "process_connections",
    "external",
    "destination_rarity",
    "pair_rarity",
    "port_rarity",
    "port_external_rarity",
    "process_rarity",
    "joint_rarity",
    "new_for_host",
    "hour_rarity",
    "app_sent_deviation",
    "app_received_deviation",
    "host_sent_deviation",
    "beacon_score",
    "pair_sent_total",
    "pair_windows",
)
# featurize's extra columns: figures the explanations quote, not seen by the detector
CONTEXT: Final = (
    "beacon_interval",
    "beacon_contacts",
    "fanout_address_count",
    "fanout_port_count",
    "process_connection_count",
)
# the columns a frame of flow rows must have (the vocabulary's, with `host` for the host's id)
ROW_COLUMNS: Final = (
    "host",
    "window_start",
    "window_seconds",
    "process_name",
    "process_path",
    "process_sha256",
    "username",
    "protocol",
    "direction",
    "local_port",
    "remote_address",
    "remote_port",
    "remote_hostname",
    "bytes_sent",
    "bytes_received",
    "connections",
    "first_seen",
    "last_seen",
)
UNIT_KEYS: Final = (
    "host",
    "window_start",
    "app",
    "process_path",
    "protocol",
    "remote_address",
    "service_port",
    "direction",
)
PAIR_KEYS: Final = ("host", "app", "remote_address")
DEFAULT_LOOKBACK: Final = 86400  # seconds of history the look-back features read
BEACON_MIN_INTERVALS: Final = 4  # fewer intervals than this: no beacon score (0)
BEACON_FULL_INTERVALS: Final = 20  # the count term reaches 1 at this many intervals
SCALE_FLOOR: Final = 0.5  # least robust scale (log units) for deviations: keeps tiny MADs from exploding


class FeatureError(ValueError):
    """The input frame cannot be featurised; the message names the missing or bad columns."""


_HOME: Final = re.compile(
    r"^(?:/home/[^/]+|/Users/[^/]+|/root|[A-Za-z]:\\Users\\[^\\]+)(?=[/\\])", re.IGNORECASE
)
_VERSION: Final = re.compile(r"\d+(?:\.\d+)+|(?<=[/\\])\d+(?=[/\\]|$)")  # 1.2.3, or a segment of digits


def generalise_path(path: str) -> str:
    """An executable path as an application identity: the user's home becomes ``~``, and version
    numbers (dotted, like ``4.41.105``, or a path segment of digits, like ``6015``) become ``*``, so
    ``/snap/firefox/6015/usr/lib/firefox/firefox`` and ``/home/ann/.dropbox-dist/dropbox-lnx.x86_64-
    195.4.4995/dropbox`` name the same application on every host and after every update. Other digits
    stay: ``/tmp/tool1`` and ``/tmp/tool2`` are different programs."""
    return _VERSION.sub("*", _HOME.sub("~", path))


def app_key(process_sha256: pd.Series, process_path: pd.Series) -> pd.Series:
    """The application a row belongs to: its executable's generalised path (:func:`generalise_path`),
    else its sha256, else ``"unknown"``. Binary versions of one application share it (the baselines,
    pair rarity and alerts follow the application across updates); :func:`binary_key` tells them apart."""
    paths = pd.Series(pd.unique(process_path))
    general = dict(zip(paths, paths.map(generalise_path), strict=True))
    key = process_path.map(general)
    key = key.where(key != "", process_sha256)
    return key.where(key != "", "unknown")


def binary_key(process_sha256: pd.Series, process_path: pd.Series) -> pd.Series:
    """The executable binary: its sha256, else its path, else ``"unknown"``."""
    key = process_sha256.where(process_sha256 != "", process_path)
    return key.where(key != "", "unknown")


HISTORY_COLUMNS: Final = (
    "host",
    "window_start",
    "process_path",
    "process_sha256",
    "remote_address",
    "first_seen",
    "bytes_sent",
    "bytes_received",
)


def history_windows(summed: pd.DataFrame) -> pd.DataFrame:
    """Look-back history for :func:`featurize` from rows already summed per flow window (the store's
    ``detect_rows_history`` does it where the rows are): the :data:`HISTORY_COLUMNS`, plus ``app``.
    Cheaper than reading every column of every row and :func:`flow_windows`, and the same figures."""
    missing = [column for column in HISTORY_COLUMNS if column not in summed.columns]
    if missing:
        raise FeatureError(
            f"history rows lack the columns {', '.join(missing)}: select every HISTORY_COLUMNS column"
        )
    return summed.assign(app=app_key(summed["process_sha256"], summed["process_path"]))


def check_rows(rows: pd.DataFrame) -> None:
    missing = [column for column in ROW_COLUMNS if column not in rows.columns]
    if missing:
        raise FeatureError(
            f"flow rows lack the columns {', '.join(missing)}: select every ROW_COLUMNS column"
        )


def flow_windows(rows: pd.DataFrame, *, carry: Sequence[str] = ()) -> pd.DataFrame:
    """Sum the endpoint's rows into flow windows (:data:`UNIT_KEYS`), one row each.

    ``carry`` names extra columns kept per window (their maximum: labels in evaluations).
    """
    check_rows(rows)
    frame = rows.assign(
        app=app_key(rows["process_sha256"], rows["process_path"]),
        service_port=rows["remote_port"].where(rows["direction"] != "inbound", rows["local_port"]),
    )
    aggregations: dict[str, tuple[str, str]] = {
        "window_seconds": ("window_seconds", "max"),
        "process_name": ("process_name", "first"),
        "process_sha256": ("process_sha256", "first"),
        "username": ("username", "first"),
        "remote_hostname": ("remote_hostname", "max"),
        "bytes_sent": ("bytes_sent", "sum"),
        "bytes_received": ("bytes_received", "sum"),
        "connections": ("connections", "sum"),
        "first_seen": ("first_seen", "min"),
        "last_seen": ("last_seen", "max"),
        "remote_port": ("remote_port", "max"),
        "rows": ("bytes_sent", "size"),
    }
    for column in carry:
        aggregations[column] = (column, "max")
    windows = frame.groupby(list(UNIT_KEYS), sort=False, observed=True).agg(**aggregations).reset_index()
    for column in (
        "bytes_sent",
        "bytes_received",
        "connections",
        "first_seen",
        "last_seen",
        "rows",
        "service_port",
    ):
        windows[column] = windows[column].astype("int64")
    return windows


INTERNAL_NETWORKS: Final = tuple(
    ipaddress.ip_network(network)
    for network in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "0.0.0.0/8",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
        "::1/128",
        "::/128",
    )
)


@functools.lru_cache(maxsize=1 << 16)
def is_internal_address(text: str) -> bool:
    """Private (RFC 1918, CGNAT, ULA), loopback, link-local, multicast or unspecified; IPv4-mapped
    IPv6 addresses are judged by their IPv4 address. Anything unparsable counts as internal."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in INTERNAL_NETWORKS if network.version == address.version)


def is_external(addresses: pd.Series) -> pd.Series:
    """1.0 for an external destination (see :func:`is_internal_address`), else 0.0; one check per
    distinct address."""
    codes, uniques = pd.factorize(addresses, sort=False)
    internal = np.fromiter(
        (is_internal_address(str(text)) for text in uniques), dtype=bool, count=len(uniques)
    )
    return pd.Series(np.where(internal[codes], 0.0, 1.0), index=addresses.index, dtype="float64")


def _rarity(hosts: int, seen: np.ndarray) -> np.ndarray:
    return np.asarray(
        np.log((hosts + 1.0) / (np.asarray(seen, dtype=np.float64) + 1.0)) / np.log(hosts + 1.0)
    )


class KeyCounts:
    """A table of counts by key (a Series with an Index or a MultiIndex), for fast lookups: each key
    column is coded against the table's own level (a hash lookup of the batch's values), the codes
    are packed into one integer, and that is searched among the table's packed keys. Several times
    faster than building a MultiIndex of the batch's keys, and built once per profile."""

    def __init__(self, table: pd.Series) -> None:
        index = table.index
        if isinstance(index, pd.MultiIndex):
            self.levels = [pd.Index(level) for level in index.levels]
            codes = [np.asarray(level_codes, dtype=np.int64) for level_codes in index.codes]
        else:
            single, uniques = pd.factorize(index)
            self.levels, codes = [pd.Index(uniques)], [np.asarray(single, dtype=np.int64)]
        self.sizes = [len(level) + 1 for level in self.levels]
        self.packable = float(np.prod([float(size) for size in self.sizes])) < 2.0**62
        self.table = table
        if self.packable:
            packed = self._pack(codes)
            order = np.argsort(packed, kind="stable")
            self.keys = packed[order]
            self.values = table.to_numpy(dtype=np.float64)[order]

    def _pack(self, codes: list[np.ndarray]) -> np.ndarray:
        packed = np.zeros(len(codes[0]), dtype=np.int64)
        for level_codes, size in zip(codes, self.sizes, strict=True):
            packed = packed * size + level_codes
        return packed

    def __call__(self, keys: Sequence[pd.Series]) -> np.ndarray:
        """The count for each row's key (0 where the table lacks it); one Series per key column."""
        if len(keys) != len(self.levels):
            raise FeatureError(f"a lookup needs {len(self.levels)} key columns, got {len(keys)}")
        if not self.packable:
            return np.asarray(_count_lookup(self.table, list(keys)).to_numpy(), dtype=np.float64)
        codes = [level.get_indexer(pd.Index(column)) for level, column in zip(self.levels, keys, strict=True)]
        missing = np.zeros(len(keys[0]), dtype=bool)
        for level_codes in codes:
            missing |= level_codes < 0
        packed = self._pack([np.maximum(level_codes, 0) for level_codes in codes])
        if not len(self.keys):
            return np.zeros(len(packed))
        position = np.minimum(np.searchsorted(self.keys, packed), len(self.keys) - 1)
        found = ~missing & (self.keys[position] == packed)
        return np.where(found, self.values[position], 0.0)


def _count_lookup(table: pd.Series, keys: list[pd.Series]) -> pd.Series:
    """table's value for each row's key (0 where absent); table has a (Multi)Index of the same arity."""
    if len(keys) == 1:
        index: pd.Index = pd.Index(keys[0])
    else:
        index = pd.MultiIndex.from_arrays(keys)
    positions = table.index.get_indexer(index)
    values = np.where(positions >= 0, table.to_numpy()[positions], 0)
    return pd.Series(values, index=keys[0].index, dtype="float64")


def _robust(values: pd.Series) -> tuple[float, float]:
    median = float(values.median()) if len(values) else 0.0
    mad = float((values - median).abs().median()) if len(values) else 0.0
    return median, max(1.4826 * mad, SCALE_FLOOR)


@dataclass(frozen=True)
class Profile:
    """The fleet in the training period (see the module docstring)."""

    hosts: int
    destination_hosts: pd.Series  # remote_address -> hosts
    pair_hosts: pd.Series  # (app, remote_address) -> hosts
    port_hosts: pd.Series  # (protocol, direction, service_port) -> hosts
    port_external_hosts: pd.Series  # (protocol, direction, service_port, external) -> hosts
    app_hosts: pd.Series  # app -> hosts
    binary_hosts: pd.Series  # binary (binary_key) -> hosts
    host_destinations: pd.Series  # (host, remote_address) -> windows (presence is what counts)
    app_volume: pd.DataFrame  # app -> sent_median, sent_scale, received_median, received_scale
    fleet_volume: tuple[float, float, float, float]  # the same over every window
    host_hours: pd.Series  # (host, hour) -> share of the host's windows x 24 (1 = average)
    host_volume: pd.DataFrame  # host -> sent_median, sent_scale (of the host's per-window total)
    known_hosts: frozenset[object]
    window_start_min: int
    window_start_max: int
    windows: int

    def counts(self, table: str, keys: Sequence[pd.Series]) -> np.ndarray:
        """The count in one of the profile's tables (a field name) for each row's key, 0 where absent;
        the lookup structure is built on first use and kept (not pickled)."""
        lookups: dict[str, KeyCounts] = self.__dict__.setdefault("_lookups", {})
        if table not in lookups:
            lookups[table] = KeyCounts(getattr(self, table))
        return lookups[table](keys)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.pop("_lookups", None)
        return state

    def app_median_bytes(self, app: str, column: str) -> float:
        """The application's (or the fleet's) median bytes per window, ``column`` sent or received."""
        if app in self.app_volume.index:
            median = float(self.app_volume.at[app, f"{column}_median"])
        else:
            median = self.fleet_volume[0 if column == "sent" else 2]
        return float(np.expm1(median))


def _distinct_hosts(windows: pd.DataFrame, keys: list[str]) -> pd.Series:
    return windows.groupby(keys, sort=False, observed=True)["host"].nunique()


def fit_profile(windows: pd.DataFrame) -> Profile:
    """The profile of a training period's flow windows (from :func:`flow_windows`)."""
    if windows.empty:
        raise FeatureError("no flow windows to learn a profile from: train on a period with traffic")
    log_sent = np.log1p(windows["bytes_sent"].astype("float64"))
    log_received = np.log1p(windows["bytes_received"].astype("float64"))
    volumes = pd.DataFrame({"app": windows["app"], "sent": log_sent, "received": log_received})
    by_app = volumes.groupby("app", sort=False)
    sent_median = by_app["sent"].median()
    received_median = by_app["received"].median()
    app_volume = pd.DataFrame(
        {
            "sent_median": sent_median,
            "sent_scale": (volumes["sent"] - volumes["app"].map(sent_median))
            .abs()
            .groupby(volumes["app"])
            .median()
            .mul(1.4826)
            .clip(lower=SCALE_FLOOR),
            "received_median": received_median,
            "received_scale": (volumes["received"] - volumes["app"].map(received_median))
            .abs()
            .groupby(volumes["app"])
            .median()
            .mul(1.4826)
            .clip(lower=SCALE_FLOOR),
        }
    )
    fleet_sent = _robust(log_sent)
    fleet_received = _robust(log_received)
    hour = (windows["window_start"] // 3600) % 24
    per_host_hour = windows.groupby([windows["host"], hour.rename("hour")], sort=False).size()
    host_totals = per_host_hour.groupby(level=0).transform("sum")
    host_hours = per_host_hour / host_totals * 24.0
    host_window_sent = np.log1p(
        windows.groupby(["host", "window_start"], sort=False)["bytes_sent"].sum().astype("float64")
    )
    host_sent_median = host_window_sent.groupby(level=0).median()
    host_sent_scale = (
        (host_window_sent - host_window_sent.index.get_level_values(0).map(host_sent_median).to_numpy())
        .abs()
        .groupby(level=0)
        .median()
        .mul(1.4826)
        .clip(lower=SCALE_FLOOR)
    )
    return Profile(
        hosts=int(windows["host"].nunique()),
        destination_hosts=_distinct_hosts(windows, ["remote_address"]),
        pair_hosts=_distinct_hosts(windows, ["app", "remote_address"]),
        port_hosts=_distinct_hosts(windows, ["protocol", "direction", "service_port"]),
        port_external_hosts=_distinct_hosts(
            windows.assign(external=is_external(windows["remote_address"])),
            ["protocol", "direction", "service_port", "external"],
        ),
        app_hosts=_distinct_hosts(windows, ["app"]),
        binary_hosts=windows.groupby(
            binary_key(windows["process_sha256"], windows["process_path"]), sort=False
        )["host"].nunique(),
        host_destinations=windows.groupby(["host", "remote_address"], sort=False).size(),
        app_volume=app_volume,
        fleet_volume=(fleet_sent[0], fleet_sent[1], fleet_received[0], fleet_received[1]),
        host_hours=host_hours,
        host_volume=pd.DataFrame({"sent_median": host_sent_median, "sent_scale": host_sent_scale}),
        known_hosts=frozenset(windows["host"].unique().tolist()),
        window_start_min=int(windows["window_start"].min()),
        window_start_max=int(windows["window_start"].max()),
        windows=len(windows),
    )


def _bowley(q1: pd.Series, q2: pd.Series, q3: pd.Series) -> pd.Series:
    spread = q3 - q1
    skew = (q1 + q3 - 2.0 * q2) / spread.where(spread > 0, np.nan)
    return skew.fillna(0.0).abs().clip(upper=1.0)


def group_codes(columns: Sequence[pd.Series | np.ndarray]) -> tuple[np.ndarray, int]:
    """A dense code per distinct combination of the columns' values (in order of first appearance),
    and how many there are."""
    combined = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        codes, uniques = pd.factorize(column, sort=False)
        combined, _ = pd.factorize(combined * (len(uniques) + 1) + codes, sort=False)
    count = int(combined.max()) + 1 if len(combined) else 0
    return combined.astype(np.int64), count


def _distinct_per_group(groups: np.ndarray, count: int, values: pd.Series) -> np.ndarray:
    """For each row, how many distinct ``values`` its group (a :func:`group_codes` code) holds."""
    codes, uniques = pd.factorize(values, sort=False)
    pairs = np.unique(groups * (len(uniques) + 1) + codes)
    distinct: np.ndarray = np.bincount(pairs // (len(uniques) + 1), minlength=count)
    return np.asarray(distinct[groups], dtype=np.float64)


def pair_codes(contacts: pd.DataFrame) -> tuple[np.ndarray, int]:
    """A dense code per (host, app, remote_address) pair of each row, and how many pairs there are."""
    return group_codes([contacts[key] for key in PAIR_KEYS])


_NO_HISTORY: Final = pd.DataFrame({key: pd.Series(dtype=object) for key in PAIR_KEYS})
_CODE_SHIFT: Final = 40  # a sort key is code << 40 | value: values below 2**40, codes below 2**23


def _group_order(
    codes: np.ndarray, values: np.ndarray, groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-negative integer ``values`` sorted within contiguous groups (as float64), each group's start
    and size. One sort of packed integer keys where they fit (several times faster than lexsort)."""
    sizes = np.bincount(codes, minlength=groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    integers = values.astype(np.int64)
    fits = len(integers) == 0 or (int(integers.min()) >= 0 and int(integers.max()) < 1 << _CODE_SHIFT)
    if groups < 1 << (63 - _CODE_SHIFT) and fits:
        keys = (codes.astype(np.int64) << _CODE_SHIFT) | integers
        keys.sort()
        ordered = keys & ((1 << _CODE_SHIFT) - 1)
    else:
        ordered = integers[np.lexsort((integers, codes))]
    return ordered.astype(np.float64), starts, sizes


def _group_quantile(ordered: np.ndarray, starts: np.ndarray, sizes: np.ndarray, q: float) -> np.ndarray:
    """Per group, the q-quantile with linear interpolation (pandas' and numpy's default); NaN when the
    group is empty."""
    out = np.full(len(sizes), np.nan)
    some = sizes > 0
    position = (sizes[some] - 1) * q
    low = np.floor(position).astype(np.int64)
    high = np.ceil(position).astype(np.int64)
    base = starts[some]
    below = ordered[base + low]
    out[some] = below + (ordered[base + high] - below) * (position - low)
    return out


def _median_and_mad(codes: np.ndarray, values: np.ndarray, groups: int) -> tuple[np.ndarray, ...]:
    """Per group of non-negative integer ``values``: first quartile, median, third quartile and median
    absolute deviation. A median of integers is a multiple of 1/2, so twice the deviations are
    integers again, and sort as such."""
    ordered, starts, sizes = _group_order(codes, values, groups)
    q1, q2, q3 = (_group_quantile(ordered, starts, sizes, q) for q in (0.25, 0.5, 0.75))
    doubled = np.abs(2.0 * values - np.nan_to_num(2.0 * q2)[codes])
    deviations, _, _ = _group_order(codes, doubled, groups)
    return q1, q2, q3, _group_quantile(deviations, starts, sizes, 0.5) / 2.0


def _bowley_array(q1: np.ndarray, q2: np.ndarray, q3: np.ndarray) -> np.ndarray:
    spread = q3 - q1
    with np.errstate(invalid="ignore", divide="ignore"):
        skew = np.where(spread > 0, (q1 + q3 - 2.0 * q2) / np.where(spread > 0, spread, 1.0), 0.0)
    return np.asarray(np.clip(np.abs(np.nan_to_num(skew)), 0.0, 1.0), dtype=np.float64)


def beacon_arrays(
    codes: np.ndarray, first_seen: np.ndarray, size: np.ndarray, groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair code: beacon score, median interval (0 without intervals) and contacts; see
    :func:`beacon_scores`."""
    seen = first_seen.astype(np.int64)
    if groups < 1 << (63 - _CODE_SHIFT) and (
        not len(seen) or (seen.min() >= 0 and seen.max() < 1 << _CODE_SHIFT)
    ):
        order = np.argsort((codes.astype(np.int64) << _CODE_SHIFT) | seen, kind="stable")
    else:
        order = np.lexsort((first_seen, codes))
    ordered_codes = codes[order]
    times = first_seen[order].astype(np.float64)
    same = ordered_codes[1:] == ordered_codes[:-1]
    interval_codes = ordered_codes[1:][same]
    intervals = np.diff(times)[same]
    count = np.bincount(interval_codes, minlength=groups).astype(np.float64)
    iq1, iq2, iq3, interval_mad = _median_and_mad(interval_codes, intervals, groups)
    sq1, sq2, sq3, size_mad = _median_and_mad(codes, size.astype(np.float64), groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        # dispersion gates each half: a random process can have symmetric intervals (low skew) and
        # still be no beacon, so the skew and count terms only count as far as the intervals are tight
        timing = (
            (1.0 - np.minimum(2.0 * interval_mad / np.maximum(iq2, 1.0), 1.0))
            * ((1.0 - _bowley_array(iq1, iq2, iq3)) + np.minimum(count / BEACON_FULL_INTERVALS, 1.0))
            / 2.0
        )
        sizing = (
            (1.0 - np.minimum(size_mad / np.maximum(sq2, 1.0), 1.0))
            * ((1.0 - _bowley_array(sq1, sq2, sq3)) + (1.0 - np.minimum(sq2 / 65535.0, 1.0)))
            / 2.0
        )
    score = np.where(count >= BEACON_MIN_INTERVALS, np.nan_to_num((timing + sizing) / 2.0), 0.0)
    return score, np.nan_to_num(iq2), count + 1.0


def beacon_scores(contacts: pd.DataFrame) -> pd.DataFrame:
    """Beacon scores per (host, app, remote_address) pair from its flow windows over the look-back.

    ``contacts`` has the pair keys, ``first_seen`` (epoch s), ``bytes`` (both ways) and ``sent`` per
    window; ``sent_total`` in the result is the pair's bytes sent over them all.
    Returns one row per pair (index: the pair keys) with ``beacon_score`` in [0, 1], the median
    ``beacon_interval`` (s) and ``beacon_contacts``. After RITA: the score is the mean of a timing
    score and a size score. Timing: the tightness of the intervals (1 - 2 x their MAD / median,
    floored at 0) times the mean of their symmetry (1 - |Bowley skew|) and their number (up to
    :data:`BEACON_FULL_INTERVALS`). Size: the tightness of the sizes (1 - MAD / median) times the mean
    of their symmetry and their smallness (1 - median / 64 KiB). RITA adds these terms; multiplying
    by tightness keeps a random process with symmetric intervals from scoring half. Pairs with fewer
    than :data:`BEACON_MIN_INTERVALS` intervals score 0.
    """
    codes, groups = pair_codes(contacts)
    score, interval, contacts_count = beacon_arrays(
        codes, contacts["first_seen"].to_numpy(), contacts["bytes"].to_numpy(), groups
    )
    first = np.unique(codes, return_index=True)[1]
    index = pd.MultiIndex.from_frame(contacts[list(PAIR_KEYS)].iloc[first].reset_index(drop=True))
    return pd.DataFrame(
        {
            "beacon_score": score,
            "beacon_interval": interval,
            "beacon_contacts": contacts_count.astype("int64"),
            "sent_total": np.bincount(
                codes, weights=contacts["sent"].to_numpy(dtype="float64"), minlength=groups
            ),
        },
        index=index,
    )


def pair_rolling(
    codes: np.ndarray, starts: np.ndarray, sent: np.ndarray, lookback_seconds: int, wanted: slice
) -> tuple[np.ndarray, np.ndarray]:
    """For the contact rows ``wanted``: the pair's bytes sent and contact rows over
    ``(window_start - lookback, window_start]``, counting only rows at or before it (causal, so
    training and scoring agree). ``codes``: every row's pair code (:func:`pair_codes`), ``starts`` its
    window start, ``sent`` its bytes sent."""
    span = np.int64(1) << 34  # window starts are epoch seconds, far below 2**34
    keys = codes.astype(np.int64) * span + starts.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    cumulative = np.concatenate([[0.0], np.cumsum(sent.astype(np.float64)[order])])
    asked = keys[wanted]
    last = np.searchsorted(ordered, asked, side="right")  # rows up to and including this window start
    first = np.searchsorted(ordered, asked - lookback_seconds, side="right")
    return cumulative[last] - cumulative[first], (last - first).astype(np.float64)


def history_pair_codes(windows: pd.DataFrame, history: pd.DataFrame) -> tuple[np.ndarray, int, np.ndarray]:
    """The windows' :func:`pair_codes`, their number, and each history row's code of the same pair
    (-1 where the row's pair is not among the windows'). The history's keys are only looked up in the
    windows' (small) sets of values, never factorised on their own."""
    batch = np.zeros(len(windows), dtype=np.int64)
    past = np.zeros(len(history), dtype=np.int64)
    valid = np.ones(len(history), dtype=bool)
    for key in PAIR_KEYS:
        level_codes, uniques = pd.factorize(windows[key], sort=False)
        found = pd.Index(uniques).get_indexer(pd.Index(history[key]))
        valid &= found >= 0
        width = len(uniques) + 1
        combined, combined_uniques = pd.factorize(batch * width + level_codes, sort=False)
        # the history's combined value, coded as the windows' are: searched among their uniques
        values = np.asarray(combined_uniques, dtype=np.int64)
        order = np.argsort(values)
        wanted = past * width + np.maximum(found, 0)
        position = np.minimum(np.searchsorted(values[order], wanted), max(len(values) - 1, 0))
        if len(values):
            valid &= values[order][position] == wanted
            past = np.where(valid, order[position], 0)
        batch = combined.astype(np.int64)
    groups = int(batch.max()) + 1 if len(batch) else 0
    return batch, groups, np.where(valid, past, -1)


def contacts_of(windows: pd.DataFrame) -> pd.DataFrame:
    """The (pair, first_seen, bytes) frame :func:`beacon_scores` reads, from flow windows."""
    return pd.DataFrame(
        {
            "window_start": windows["window_start"],
            "host": windows["host"],
            "app": windows["app"],
            "remote_address": windows["remote_address"],
            "first_seen": windows["first_seen"],
            "bytes": windows["bytes_sent"] + windows["bytes_received"],
            "sent": windows["bytes_sent"],
        }
    )


def featurize(
    windows: pd.DataFrame,
    profile: Profile,
    *,
    history: pd.DataFrame | None = None,
    lookback_seconds: int = DEFAULT_LOOKBACK,
) -> pd.DataFrame:
    """The feature matrix (columns :data:`FEATURES`, then the :data:`CONTEXT` columns explanations
    quote; float64, the index of ``windows``).

    ``windows`` are flow windows (:func:`flow_windows`); ``history`` holds earlier flow windows of the
    same pairs, at least ``lookback_seconds`` of them, for the look-back features (``None``: the
    windows alone): from :func:`flow_windows`, or :func:`history_windows` (only the columns these
    features read). Only history within the look-back of the earliest window, of the windows' own
    (host, application, address) pairs and no later than the last window, is used; it must not
    repeat the windows themselves.
    """
    if windows.empty:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in (*FEATURES, *CONTEXT)})
    hosts = profile.hosts
    sent = windows["bytes_sent"].astype("float64")
    received = windows["bytes_received"].astype("float64")
    log_sent = np.log1p(sent)
    log_received = np.log1p(received)
    # per host, application and window (numpy over dense group codes: pandas' grouped transforms cost
    # more in overhead than in work on a scoring batch)
    host_window, host_windows = group_codes([windows["host"], windows["window_start"]])
    per_process, processes = group_codes([host_window, windows["app"]])
    fanout_addresses = _distinct_per_group(per_process, processes, windows["remote_address"])
    fanout_ports = _distinct_per_group(per_process, processes, windows["service_port"])
    process_connections = np.bincount(
        per_process, weights=windows["connections"].to_numpy(dtype=np.float64), minlength=processes
    )[per_process]

    known = windows["host"].isin(profile.known_hosts).to_numpy()
    seen_by_host = profile.counts("host_destinations", [windows["host"], windows["remote_address"]])
    new_for_host = np.where(known & (seen_by_host == 0), 1.0, 0.0)
    hour = (windows["window_start"] // 3600) % 24
    hour_share = profile.counts("host_hours", [windows["host"], hour])
    hour_rarity = np.where(known, np.log(1.01 / (hour_share + 0.01)).clip(min=0.0), 0.0)

    app_index = profile.app_volume.index.get_indexer(pd.Index(windows["app"]))
    in_profile = app_index >= 0
    sent_median_fleet, sent_scale_fleet, received_median_fleet, received_scale_fleet = profile.fleet_volume

    def per_app(column: str, fallback: float) -> np.ndarray:
        values = profile.app_volume[column].to_numpy()
        return np.where(in_profile, values[np.where(in_profile, app_index, 0)], fallback)

    app_sent_deviation = (log_sent.to_numpy() - per_app("sent_median", sent_median_fleet)) / per_app(
        "sent_scale", sent_scale_fleet
    )
    app_received_deviation = (
        log_received.to_numpy() - per_app("received_median", received_median_fleet)
    ) / per_app("received_scale", received_scale_fleet)

    host_total_sent = pd.Series(
        np.bincount(host_window, weights=sent.to_numpy(), minlength=host_windows)[host_window],
        index=windows.index,
    )
    host_window_sent = np.log1p(host_total_sent)
    # the window's share of what its host sent in that minute: the host's excess is put on the flows
    # that carry it, not on every small flow that happened to run beside a big upload
    sent_share = np.divide(
        sent.to_numpy(),
        host_total_sent.to_numpy(),
        out=np.zeros(len(windows)),
        where=host_total_sent.to_numpy() > 0,
    )
    host_index = profile.host_volume.index.get_indexer(pd.Index(windows["host"]))
    host_known = host_index >= 0
    safe_host = np.where(host_known, host_index, 0)
    host_median = profile.host_volume["sent_median"].to_numpy()[safe_host]
    host_scale = profile.host_volume["sent_scale"].to_numpy()[safe_host]
    host_sent_deviation = np.where(
        host_known, (host_window_sent.to_numpy() - host_median) / host_scale * sent_share, 0.0
    )

    external = is_external(windows["remote_address"])
    destination_rarity = _rarity(hosts, profile.counts("destination_hosts", [windows["remote_address"]]))
    binaries = binary_key(windows["process_sha256"], windows["process_path"])
    process_rarity = _rarity(hosts, profile.counts("binary_hosts", [binaries]))
    # the look-back: the windows' pairs, their earlier contacts within the look-back, then these windows
    window_codes, groups, past_codes = history_pair_codes(
        windows, history if history is not None else _NO_HISTORY
    )
    starts = windows["window_start"].to_numpy(dtype=np.int64)
    first_seen = windows["first_seen"].to_numpy(dtype=np.int64)
    both = (windows["bytes_sent"] + windows["bytes_received"]).to_numpy(dtype=np.float64)
    sent_bytes = windows["bytes_sent"].to_numpy(dtype=np.float64)
    if history is not None and len(history):
        past_starts = history["window_start"].to_numpy(dtype=np.int64)
        keep = (
            (past_codes >= 0)
            & (past_starts > int(starts.min()) - lookback_seconds)
            & (past_starts <= starts.max())
        )
        window_codes_all = np.concatenate([past_codes[keep], window_codes])
        starts_all = np.concatenate([past_starts[keep], starts])
        first_seen = np.concatenate([history["first_seen"].to_numpy(dtype=np.int64)[keep], first_seen])
        past_sent = history["bytes_sent"].to_numpy(dtype=np.float64)[keep]
        both = np.concatenate([past_sent + history["bytes_received"].to_numpy(dtype=np.float64)[keep], both])
        sent_bytes = np.concatenate([past_sent, sent_bytes])
    else:
        window_codes_all, starts_all = window_codes, starts
    current = slice(len(window_codes_all) - len(windows), len(window_codes_all))
    pair_sent, pair_count = pair_rolling(window_codes_all, starts_all, sent_bytes, lookback_seconds, current)
    beacon_score, beacon_interval, beacon_contacts = beacon_arrays(window_codes_all, first_seen, both, groups)

    features = pd.DataFrame(
        {
            "log_bytes_sent": log_sent,
            "log_bytes_received": log_received,
            "log_send_ratio": log_sent - log_received,
            "log_connections": np.log1p(windows["connections"].astype("float64")),
            "fanout_addresses": np.log1p(fanout_addresses),
            "fanout_ports": np.log1p(fanout_ports),
            "process_connections": np.log1p(process_connections),
            "external": external,
            "destination_rarity": destination_rarity,
            "pair_rarity": _rarity(
                hosts, profile.counts("pair_hosts", [windows["app"], windows["remote_address"]])
            ),
            "port_rarity": _rarity(
                hosts,
                profile.counts(
                    "port_hosts", [windows["protocol"], windows["direction"], windows["service_port"]]
                ),
            ),
            "port_external_rarity": _rarity(
                hosts,
                profile.counts(
                    "port_external_hosts",
                    [windows["protocol"], windows["direction"], windows["service_port"], external],
                ),
            ),
            "process_rarity": process_rarity,
            "joint_rarity": np.minimum(process_rarity, destination_rarity),
            "new_for_host": new_for_host,
            "hour_rarity": hour_rarity,
            "app_sent_deviation": app_sent_deviation,
            "app_received_deviation": app_received_deviation,
            "host_sent_deviation": host_sent_deviation,
            "beacon_score": beacon_score[window_codes],
            "pair_sent_total": np.log1p(pair_sent),
            "pair_windows": np.log1p(pair_count),
            # context for explanations, not features
            "beacon_interval": beacon_interval[window_codes],
            "beacon_contacts": beacon_contacts[window_codes],
            "fanout_address_count": fanout_addresses,
            "fanout_port_count": fanout_ports,
            "process_connection_count": process_connections,
        },
        index=windows.index,
    )
    return features.astype("float64")
