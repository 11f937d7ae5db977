"""The sanitising filters over a whole batch at once, column by column, for the common case.

The filters in :mod:`fleet_analytics.ingest.filters` are the specification: one row at a time, the
first refusing filter names itself. Run row by row they cost tens of µs per row in the interpreter.
Most batches are clean (our own agent's rows), and for a clean batch the same decisions can be taken
per *column*, each by a few C-level calls over the whole column (``str.join`` + ``isdigit``,
``map(int)``, ``min``/``max``, set inclusion, ``map(operator.mod, ...)``), and the COPY lines built
by ``map("\\t".join, zip(*columns))``.

:func:`fast_flows` only ever accepts: it returns the batch ready for COPY when every row would pass
every filter and no flow key repeats, with exactly the lines and keys the row path would produce, and
None otherwise (then the row path runs and names what is wrong). It accepts only what is unambiguous:
integers as canonical decimal text (what osquery and our agent log), lower-case sha256, addresses
already given in any form (canonicalised as the row path does). tests/test_fleet_columnar.py checks
the equivalence by property.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import operator
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fleet_analytics.ingest.filters import (
    ACTIVITIES,
    DIRECTIONS,
    FLOW_COLUMNS,
    INT64_MAX,
    INTEGER_COLUMNS,
    KEY_COLUMNS,
    PROTOCOLS,
    TEXT_LIMITS,
    UINT32_LIMIT,
    FilterContext,
)
from fleet_analytics.ingest.protocol import MAX_NAME_CHARS, is_flows_query

INDEX: Final = {column: index for index, column in enumerate(FLOW_COLUMNS)}
_ALL: Final = operator.itemgetter(*FLOW_COLUMNS)
# columns only checked against an upper bound (the counters filter): converted only when a value has
# as many digits as the bound (int64 values are bounded by the types check itself)
_BOUNDED: Final = {
    "pid": UINT32_LIMIT,
    "uid": UINT32_LIMIT,
    "parent_pid": UINT32_LIMIT,
    "process_start_time": INT64_MAX,
    "connections": INT64_MAX + 1,
    "sends": INT64_MAX + 1,
    "receives": INT64_MAX + 1,
}
# text columns whose only bound is their length limit (the others are enums, addresses, sha256)
_FREE_TEXT: Final = (
    "process_name",
    "process_path",
    "username",
    "local_hostname",
    "remote_hostname",
    "community_id",
    "cmdline",
)
_NON_CANONICAL: Final = re.compile("\x1f0[0-9]")  # a leading zero (after the separator we add)
_COPY_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_KEY_HASH: Final = functools.partial(hashlib.blake2b, digest_size=16)
_HEXDIGEST: Final = operator.methodcaller("hexdigest")


@dataclass(slots=True)
class FlowCopy:
    """Sanitised flow rows ready for COPY, as aligned lists: the window of each row (partitions), its
    flow key, and its COPY fields after host_id and batch_id (flow_key first, then FLOW_COLUMNS)."""

    window_starts: list[int]
    keys: list[str]
    lines: list[str]

    def __len__(self) -> int:
        return len(self.keys)

    def without(self, keys: set[str]) -> FlowCopy:
        keep = [key not in keys for key in self.keys]
        return FlowCopy(
            [w for w, k in zip(self.window_starts, keep, strict=True) if k],
            [w for w, k in zip(self.keys, keep, strict=True) if k],
            [w for w, k in zip(self.lines, keep, strict=True) if k],
        )


def _canonical_digits(columns: Sequence[Sequence[Any]]) -> bool:
    """Every value of these columns is canonical decimal text: digits only (ASCII), not empty, no
    leading zero. One pass over all of them."""
    try:
        text = "\x1f" + "\x1f".join(itertools.chain.from_iterable(columns))
    except TypeError:  # a value that is not a string
        return False
    digits = text.replace("\x1f", "")
    if not (digits.isdigit() and digits.isascii()) or "\x1f\x1f" in text or text.endswith("\x1f"):
        return False  # a sign, a space, a dot, or an empty value
    return _NON_CANONICAL.search(text) is None


def _integers(column: Sequence[str], below: int | None = None) -> list[int] | None:
    """A column of canonical digits as ints, within int64 (and below ``below`` when given), else None.
    With ``below``, a column whose values all have fewer digits than the bound is not converted: an
    empty list stands for "checked"."""
    if below is not None and max(map(len, column)) < len(str(below)):
        return []
    try:
        numbers = list(map(int, column))
    except ValueError:  # more digits than int() converts
        return None
    if max(numbers) > INT64_MAX or (below is not None and max(numbers) >= below):
        return None
    return numbers


def _lower_hex(text: str) -> bool:
    """Only the digits 0-9 and a-f (bytes.fromhex would also take upper case and spaces)."""
    try:
        return len(bytes.fromhex(text)) * 2 == len(text) and text == text.lower()
    except ValueError:
        return False


_ZERO4: Final = bytes(4)
_ZERO6: Final = bytes(16)


def _addresses(column: Sequence[str], families: list[int]) -> tuple[list[str], list[bool]] | None:
    """The canonical texts and unspecified flags of an address column, each parsed with its row's
    family, in C (inet_pton/inet_ntop over the column); None when any fails to parse. Equivalent to
    canonical_address plus the version check of the addresses filter: glibc's inet_pton takes only
    dotted quads without leading zeros for IPv4 (so a valid IPv4 text is already canonical), and
    inet_ntop writes RFC 5952 text for IPv6."""
    is_four = list(map(operator.eq, families, itertools.repeat(4)))
    fours = list(itertools.compress(column, is_four))
    sixes = list(itertools.compress(column, map(operator.not_, is_four)))
    try:
        packed4 = list(map(socket.inet_pton, itertools.repeat(socket.AF_INET), fours))
        packed6 = list(map(socket.inet_pton, itertools.repeat(socket.AF_INET6), sixes))
    except (OSError, ValueError, TypeError):
        return None
    if not sixes:
        return list(column), list(map(operator.eq, packed4, itertools.repeat(_ZERO4)))
    texts6 = list(map(socket.inet_ntop, itertools.repeat(socket.AF_INET6), packed6))
    texts = list(column)
    unspecified = [False] * len(texts)
    positions6 = list(itertools.compress(range(len(texts)), map(operator.not_, is_four)))
    positions4 = list(itertools.compress(range(len(texts)), is_four))
    for position, text, value in zip(positions6, texts6, packed6, strict=True):
        texts[position] = text
        unspecified[position] = value == _ZERO6
    for position, value in zip(positions4, packed4, strict=True):
        unspecified[position] = value == _ZERO4
    return texts, unspecified


def _tcp_bytes_on_port_zero(protocol: str, sent: int, received: int, local: int, remote: int) -> bool:
    return protocol == "tcp" and bool(sent or received) and (local == 0 or remote == 0)


def fast_flows(rows: Sequence[Mapping[str, Any]], ctx: FilterContext) -> FlowCopy | None:
    """The batch ready for COPY when every row passes every filter and no flow key repeats; None
    otherwise (the row path decides then)."""
    if not rows:
        return FlowCopy([], [], [])
    try:
        table = list(map(_ALL, rows))  # every column present (optional ones too: else the row path)
    except (KeyError, TypeError):
        return None
    columns: list[Sequence[Any]] = list(zip(*table, strict=True))
    if not _canonical_digits([columns[INDEX[column]] for column in INTEGER_COLUMNS]):
        return None
    numbers: dict[str, list[int]] = {}
    for column in INTEGER_COLUMNS:
        converted = _integers(columns[INDEX[column]], _BOUNDED.get(column))
        if converted is None:
            return None
        numbers[column] = converted
    texts = [columns[INDEX[column]] for column in TEXT_LIMITS]
    try:
        every_text = "\x1f".join(itertools.chain.from_iterable(texts))  # one pass for all text columns
    except TypeError:  # a value that is not a string
        return None
    if "\x00" in every_text:
        return None
    for column in _FREE_TEXT:  # enums, addresses and sha256 are bounded by their own checks below
        if max(map(len, columns[INDEX[column]])) > TEXT_LIMITS[column]:
            return None
    if "\\" in every_text or "\t" in every_text or "\n" in every_text or "\r" in every_text:  # memchr
        for column in TEXT_LIMITS:
            values = columns[INDEX[column]]
            joined = "".join(values)
            if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
                columns[INDEX[column]] = [value.translate(_COPY_ESCAPES) for value in values]
    sha = columns[INDEX["process_sha256"]]
    if not set(map(len, sha)) <= {0, 64} or not _lower_hex("".join(sha)):
        return None
    if not (
        set(columns[INDEX["protocol"]]) <= PROTOCOLS
        and set(numbers["family"]) <= {4, 6}
        and set(columns[INDEX["direction"]]) <= DIRECTIONS
        and set(columns[INDEX["activity"]]) <= ACTIVITIES
    ):
        return None
    families = numbers["family"]
    for column in ("local_address", "remote_address"):
        parsed = _addresses(columns[INDEX[column]], families)
        if parsed is None:
            return None
        canonical, unspecified = parsed
        columns[INDEX[column]] = canonical
        if column == "remote_address" and any(
            map(operator.and_, unspecified, map(bool, numbers["remote_port"]))
        ):
            return None
    local_ports, remote_ports = numbers["local_port"], numbers["remote_port"]
    if max(local_ports) > 65535 or max(remote_ports) > 65535:
        return None
    if (min(local_ports) == 0 or min(remote_ports) == 0) and any(
        map(
            _tcp_bytes_on_port_zero,
            columns[INDEX["protocol"]],
            numbers["bytes_sent"],
            numbers["bytes_received"],
            local_ports,
            remote_ports,
        )
    ):
        return None
    seconds, starts = numbers["window_seconds"], numbers["window_start"]
    if min(seconds) < 1 or max(seconds) > 86400:
        return None
    most = min(seconds) * ctx.max_bytes_per_second
    if max(numbers["bytes_sent"]) > most or max(numbers["bytes_received"]) > most:
        return None
    latest = ctx.now + ctx.max_clock_skew_seconds
    if any(map(operator.mod, starts, seconds)) or max(starts) > latest:
        return None
    if min(map(operator.add, starts, seconds)) < ctx.now - ctx.max_row_age_seconds:
        return None
    firsts, lasts = numbers["first_seen"], numbers["last_seen"]
    if any(map(operator.gt, firsts, lasts)) or max(lasts) > latest:
        return None
    key_texts = map("\x1f".join, zip(*(columns[INDEX[column]] for column in KEY_COLUMNS), strict=True))
    digests = map(_KEY_HASH, map(str.encode, key_texts))  # all in C: no Python frame per row
    keys = list(map(_HEXDIGEST, digests))
    if len(set(keys)) != len(keys):
        return None  # duplicates: the row path names them
    lines = list(map("\t".join, zip(keys, *columns, strict=True)))
    return FlowCopy(starts, keys, lines)


_NAME_AND_COLUMNS: Final = operator.itemgetter("name", "columns")
MAX_UNIX_TIME: Final = 2**53


def _flows_name(name: str, flows_query: str) -> bool:
    """A valid query name (as explode_result requires) that names the flows query."""
    return (
        type(name) is str
        and 0 < len(name) <= MAX_NAME_CHARS
        and "\x00" not in name
        and is_flows_query(name, flows_query)
    )


def _unix_times_ok(values: list[Any]) -> bool:
    kinds = set(map(type, values))
    if kinds == {int}:
        return bool(min(values) >= 0 and max(values) < MAX_UNIX_TIME)
    if kinds == {str}:
        digits = "".join(values)
        return digits.isdigit() and digits.isascii() and "" not in values and max(map(len, values)) <= 15
    return False


def split_flow_items(
    data: Sequence[Any], flows_query: str, names: dict[Any, bool]
) -> tuple[list[tuple[str, dict[str, Any]]], list[Any]] | None:
    """The (name, columns) of the items that are added flow rows in osquery's event format, and the
    other items, both in order; None when that cannot be told without reading item by item (an item
    that is not an object, another format, a removed flow row, an odd unixTime or decorations)."""
    try:
        pairs = list(map(_NAME_AND_COLUMNS, data))
    except (KeyError, TypeError, IndexError):
        return None
    flow_items: list[Any] = []
    flows: list[tuple[str, dict[str, Any]]] = []
    others: list[Any] = []
    try:
        for item, pair in zip(data, pairs, strict=True):
            is_flows = names.get(pair[0])
            if is_flows is None:
                is_flows = names[pair[0]] = _flows_name(pair[0], flows_query)
            if is_flows:
                flows.append(pair)
                flow_items.append(item)
            else:
                others.append(item)
    except TypeError:  # an unhashable name
        return None
    if not flows:
        return flows, others
    get = dict.get
    count = len(flow_items)
    try:
        actions = set(
            map(get, flow_items, itertools.repeat("action", count), itertools.repeat("added", count))
        )
    except TypeError:  # an unhashable action
        return None
    if actions != {"added"}:
        return None
    if not _unix_times_ok(
        list(map(get, flow_items, itertools.repeat("unixTime", count), itertools.repeat(0, count)))
    ):
        return None
    decorations = set(map(type, map(get, flow_items, itertools.repeat("decorations", count))))
    if not decorations <= {dict, type(None)}:
        return None
    if set(map(type, map(operator.itemgetter(1), flows))) != {dict}:
        return None
    return flows, others
