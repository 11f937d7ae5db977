"""Sanitising filters for flow rows: a named, ordered set of pure functions.

A flow row (the ``columns`` of one netflow_flows result) goes through :data:`FILTERS` in order. The
first filter that refuses it names itself and the reason, and the row goes to quarantine; a row that
passes them all comes out typed and canonical (addresses in canonical text form) with its flow key.
:func:`sanitise_batch` adds the batch-level ``duplicates`` filter. Nothing here touches the database.

The filters, in order (docs/fleet.md has the same table):

=================  =====================================================================================
columns            every required column is present (optional ones default)
types              integer columns hold whole numbers (or their decimal text), text columns strings
strings            no text longer than its limit, no NUL; sha256 is 64 hex digits or empty
protocol           protocol tcp|udp, family 4|6, known direction and activity
addresses          both addresses parse, match the family; an unspecified peer has port 0
ports              ports 0-65535; a TCP flow that carried bytes has both ports
counters           counters are not negative; bytes not above the window's length at the absurd rate
window             window_seconds 1-86400 and window_start aligned to it; not in the future beyond the
                   skew, nor older than the maximum age; first_seen <= last_seen, neither in the future
duplicates         the same flow key (window, process, user, protocol, endpoints) once per batch
=================  =====================================================================================
"""

from __future__ import annotations

import hashlib
import operator
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

# text columns and their length limits (characters)
TEXT_LIMITS: Final[Mapping[str, int]] = {
    "process_name": 256,
    "process_path": 4096,
    "process_sha256": 64,
    "username": 256,
    "protocol": 8,
    "direction": 16,
    "local_address": 64,
    "remote_address": 64,
    "local_hostname": 253,
    "remote_hostname": 253,
    "activity": 32,
    "community_id": 64,
    "cmdline": 8192,
}
TEXT_COLUMNS: Final = tuple(TEXT_LIMITS)
OPTIONAL_DEFAULTS: Final[Mapping[str, int | str]] = {
    "sends": 0,
    "receives": 0,
    "community_id": "",
    "process_start_time": 0,
    "parent_pid": 0,
    "cmdline": "",
}
# the order of the flows table's vocabulary columns (COPY order after host_id, batch_id, flow_key)
FLOW_COLUMNS: Final = (
    "window_start",
    "window_seconds",
    "pid",
    "process_name",
    "process_path",
    "process_sha256",
    "uid",
    "username",
    "protocol",
    "family",
    "direction",
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "local_hostname",
    "remote_hostname",
    "bytes_sent",
    "bytes_received",
    "connections",
    "activity",
    "first_seen",
    "last_seen",
    "sends",
    "receives",
    "community_id",
    "process_start_time",
    "parent_pid",
    "cmdline",
)
# every column not text is an integer; every column without a default is required
INTEGER_COLUMNS: Final = tuple(column for column in FLOW_COLUMNS if column not in TEXT_LIMITS)
REQUIRED: Final = frozenset(FLOW_COLUMNS).difference(OPTIONAL_DEFAULTS)
KEY_COLUMNS: Final = (
    "window_start",
    "pid",
    "process_start_time",
    "uid",
    "protocol",
    "family",
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
)
PROTOCOLS: Final = frozenset({"tcp", "udp"})
FAMILIES: Final = frozenset({4, 6})
DIRECTIONS: Final = frozenset({"outbound", "inbound", "unknown"})
ACTIVITIES: Final = frozenset({"connect_failed", "connect", "accept", "listen", "data", "close"})
HEX: Final = frozenset("0123456789abcdef")
INT64_MAX: Final = 2**63 - 1
UINT32_LIMIT: Final = 2**32
COUNTERS: Final = ("bytes_sent", "bytes_received", "connections", "sends", "receives")

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FilterContext:
    now: int  # epoch seconds at ingest
    max_row_age_seconds: int = 7 * 86400
    max_clock_skew_seconds: int = 600
    max_bytes_per_second: float = 12.5e9


@dataclass(frozen=True, slots=True)
class Rejection:
    filter: str
    reason: str


@dataclass(frozen=True, slots=True)
class Filter:
    name: str
    description: str
    check: Callable[[Row, FilterContext], str | None]  # None: passes; may canonicalise the row in place


def check_columns(row: Row, _ctx: FilterContext) -> str | None:
    missing = REQUIRED.difference(row)
    if missing:
        return f"missing column(s) {', '.join(sorted(missing))}"
    for column, default in OPTIONAL_DEFAULTS.items():
        if column not in row:
            row[column] = default
    return None


def _as_int(value: Any) -> int | None:
    if type(value) is int:
        return value
    if type(value) is str:
        text = value.strip()
        if text.isascii() and (text.isdigit() or (text[:1] == "-" and text[1:].isdigit())):
            return int(text) if len(text) <= 20 else None
        return None
    if type(value) is float and value.is_integer():
        return int(value)
    return None


_INTEGERS: Final = operator.itemgetter(*INTEGER_COLUMNS)
_TEXTS: Final = operator.itemgetter(*TEXT_COLUMNS)
_TEXT_LIMITS: Final = tuple(TEXT_LIMITS.values())


def check_types(row: Row, _ctx: FilterContext) -> str | None:
    values = _INTEGERS(row)
    try:
        digits = "".join(values)
    except TypeError:
        digits = ""
    # fast path, in C: every value decimal text as osquery logs it (no sign, not empty), in int64
    if digits.isdigit() and digits.isascii() and "" not in values:
        try:
            numbers = list(map(int, values))
        except ValueError:  # more digits than int() converts (4300): the slow path names the column
            numbers = [INT64_MAX + 1]
        if max(numbers) <= INT64_MAX:
            row.update(zip(INTEGER_COLUMNS, numbers, strict=True))
            return _check_texts(row)
    for column, value in zip(INTEGER_COLUMNS, values, strict=True):
        number = _as_int(value)
        if number is None or not -INT64_MAX <= number <= INT64_MAX:
            return f"{column} is {value!r}, not a whole number"
        row[column] = number
    return _check_texts(row)


def _check_texts(row: Row) -> str | None:
    try:
        "".join(_TEXTS(row))
    except TypeError:
        for column in TEXT_COLUMNS:
            if type(row[column]) is not str:
                return f"{column} is {row[column]!r}, not text"
    return None


def check_strings(row: Row, _ctx: FilterContext) -> str | None:
    texts = _TEXTS(row)
    if any(map(operator.gt, map(len, texts), _TEXT_LIMITS)) or "\x00" in "".join(texts):
        for column, limit in TEXT_LIMITS.items():
            value: str = row[column]
            if len(value) > limit:
                return f"{column} has {len(value)} characters, more than {limit}"
            if "\x00" in value:
                return f"{column} contains a NUL character"
    sha = row["process_sha256"]
    if sha:
        if len(sha) != 64 or not HEX.issuperset(sha):
            sha = sha.lower()
            if len(sha) != 64 or not HEX.issuperset(sha):
                return f"process_sha256 {row['process_sha256']!r} is not 64 hex digits"
        row["process_sha256"] = sha
    return None


def check_protocol(row: Row, _ctx: FilterContext) -> str | None:
    if row["protocol"] not in PROTOCOLS:
        return f"protocol {row['protocol']!r} is not tcp or udp"
    if row["family"] not in FAMILIES:
        return f"family {row['family']} is not 4 or 6"
    if row["direction"] not in DIRECTIONS:
        return f"direction {row['direction']!r} is not outbound, inbound or unknown"
    if row["activity"] not in ACTIVITIES:
        return f"activity {row['activity']!r} is not one of {', '.join(sorted(ACTIVITIES))}"
    return None


# canonical forms already seen: most rows repeat a few addresses (bounded; cleared when full)
_CANONICAL: dict[str, tuple[int, str, bool] | None] = {}
_CANONICAL_MAX: Final = 65536


def canonical_address(text: str) -> tuple[int, str, bool] | None:
    """(version, canonical text, unspecified) of an address, None when it is not one. inet_pton is
    strict (no shorthand IPv4 like "10.1", no zone ids) and inet_ntop gives RFC 5952 text."""
    known = _CANONICAL.get(text, False)
    if known is not False:
        return known  # type: ignore[return-value]
    family, version = (socket.AF_INET6, 6) if ":" in text else (socket.AF_INET, 4)
    try:
        packed = socket.inet_pton(family, text)
    except (OSError, ValueError):
        result = None
    else:
        result = (version, socket.inet_ntop(family, packed), not any(packed))
    if len(_CANONICAL) >= _CANONICAL_MAX:
        _CANONICAL.clear()
    _CANONICAL[text] = result
    return result


def check_addresses(row: Row, _ctx: FilterContext) -> str | None:
    family = row["family"]
    for column in ("local_address", "remote_address"):
        parsed = canonical_address(row[column])
        if parsed is None:
            return f"{column} {row[column]!r} is not an IP address"
        version, text, unspecified = parsed
        if version != family:
            return f"{column} {text} is IPv{version} but family is {family}"
        row[column] = text
        if column == "remote_address" and unspecified and row["remote_port"] != 0:
            return f"the peer {text} is unspecified but remote_port is {row['remote_port']}"
    return None


def check_ports(row: Row, _ctx: FilterContext) -> str | None:
    for column in ("local_port", "remote_port"):
        if not 0 <= row[column] <= 65535:
            return f"{column} {row[column]} is outside 0-65535"
    carried = row["bytes_sent"] or row["bytes_received"]
    if row["protocol"] == "tcp" and carried and (row["local_port"] == 0 or row["remote_port"] == 0):
        return "a TCP flow that carried bytes has port 0"
    return None


def check_counters(row: Row, ctx: FilterContext) -> str | None:
    for column in COUNTERS:
        if row[column] < 0:
            return f"{column} is negative ({row[column]})"
    for column in ("pid", "uid", "parent_pid", "process_start_time"):
        if not 0 <= row[column] < (UINT32_LIMIT if column != "process_start_time" else INT64_MAX):
            return f"{column} {row[column]} is outside its range"
    limit = max(row["window_seconds"], 1) * ctx.max_bytes_per_second
    for column in ("bytes_sent", "bytes_received"):
        if row[column] > limit:
            return (
                f"{column} {row[column]} is absurd for a {row['window_seconds']} s window "
                f"(more than {ctx.max_bytes_per_second:g} bytes/s)"
            )
    return None


def check_window(row: Row, ctx: FilterContext) -> str | None:
    seconds = row["window_seconds"]
    start = row["window_start"]
    if not 1 <= seconds <= 86400:
        return f"window_seconds {seconds} is outside 1-86400"
    if start % seconds:
        return f"window_start {start} is not aligned to window_seconds {seconds}"
    latest = ctx.now + ctx.max_clock_skew_seconds
    if start > latest:
        return f"window_start {start} is {start - ctx.now} s in the future"
    if start + seconds < ctx.now - ctx.max_row_age_seconds:
        return f"window_start {start} is older than the maximum age ({ctx.max_row_age_seconds} s)"
    first, last = row["first_seen"], row["last_seen"]
    if first < 0 or last < 0 or first > last:
        return f"first_seen {first} and last_seen {last} are not in order"
    if last > latest:
        return f"last_seen {last} is {last - ctx.now} s in the future"
    return None


FILTERS: Final[tuple[Filter, ...]] = (
    Filter("columns", "every required column is present", check_columns),
    Filter("types", "whole numbers in integer columns, strings in text columns", check_types),
    Filter("strings", "no oversized text, no NUL, sha256 is 64 hex digits or empty", check_strings),
    Filter("protocol", "known protocol, family, direction and activity", check_protocol),
    Filter("addresses", "valid addresses of the row's family; unspecified peer has port 0", check_addresses),
    Filter("ports", "ports 0-65535; a TCP flow with bytes has both ports", check_ports),
    Filter("counters", "counters not negative, ids in range, bytes not absurd", check_counters),
    Filter("window", "aligned window, not in the future nor older than the maximum age", check_window),
)
DUPLICATES: Final = Filter("duplicates", "one row per flow key in a batch", lambda _row, _ctx: None)
FILTER_NAMES: Final = (*(f.name for f in FILTERS), DUPLICATES.name)


_CHECKS: Final = tuple((flt.name, flt.check) for flt in FILTERS)


def sanitise_row(columns: Mapping[str, Any], ctx: FilterContext) -> Row | Rejection:
    """The typed, canonical row, or the first filter that refuses it and why."""
    row: Row = dict(columns)
    for name, check in _CHECKS:
        reason = check(row, ctx)
        if reason is not None:
            return Rejection(name, reason)
    return row


def flow_key(row: Row) -> str:
    """A 128-bit digest (uuid hex) of the row's flow key: one stored row per host and key."""
    text = (
        f"{row['window_start']}\x1f{row['pid']}\x1f{row['process_start_time']}\x1f{row['uid']}\x1f"
        f"{row['protocol']}\x1f{row['family']}\x1f{row['local_address']}\x1f{row['local_port']}\x1f"
        f"{row['remote_address']}\x1f{row['remote_port']}"
    )
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Sanitised:
    rows: list[Row]  # each with "flow_key"
    rejected: list[tuple[int, Rejection]]  # (index in the input, why)


def sanitise_batch(batch: Iterable[Mapping[str, Any]], ctx: FilterContext) -> Sanitised:
    """Every row through the filters, then the duplicates filter (first occurrence wins)."""
    rows: list[Row] = []
    rejected: list[tuple[int, Rejection]] = []
    seen: dict[str, int] = {}
    for index, columns in enumerate(batch):
        result = sanitise_row(columns, ctx)
        if isinstance(result, Rejection):
            rejected.append((index, result))
            continue
        key = flow_key(result)
        first = seen.get(key)
        if first is not None:
            reason = f"same flow key as row {first} of this batch"
            rejected.append((index, Rejection(DUPLICATES.name, reason)))
            continue
        seen[key] = index
        result["flow_key"] = key
        rows.append(result)
    return Sanitised(rows, rejected)
