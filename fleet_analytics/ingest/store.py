"""The ingest writes: enrollment, node keys, and one log batch per transaction (COPY).

A log batch is stored in one transaction: its ``ingest_batches`` record first (which also makes it
idempotent: a second request with the same key from the same host writes nothing), then quarantine,
flows, other results and status lines by COPY, then the batch's counts. Nothing is acknowledged before
the commit. Flow windows the host already sent in an earlier batch are counted as duplicates and not
stored again (a unique index backs this up; a concurrent duplicate makes the batch retry once).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import operator
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import orjson
import psycopg2
import psycopg2.errors
import psycopg2.extensions

from fleet_analytics.db import Database, load_sql
from fleet_analytics.ingest.columnar import FlowCopy, fast_flows, split_flow_items
from fleet_analytics.ingest.filters import FLOW_COLUMNS, FilterContext, sanitise_batch
from fleet_analytics.ingest.protocol import (
    EnrollRequest,
    ItemProblem,
    LogRequest,
    ResultRow,
    StatusLine,
    explode_result,
    is_flows_query,
    parse_status,
)

log = logging.getLogger(__name__)

MAX_REASON: Final = 1000  # characters of a quarantine reason (they quote the bad value)
COPY_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def new_node_key() -> str:
    return secrets.token_urlsafe(32)


def secret_accepted(candidate: str, active_hashes: Sequence[bytes]) -> bool:
    """Constant time in the candidate: every active hash is compared, with hmac.compare_digest."""
    digest = sha256(candidate)
    accepted = False
    for stored in active_hashes:
        accepted |= hmac.compare_digest(digest, bytes(stored))
    return accepted


def json_text(value: Any) -> str:
    """JSON for a jsonb column: PostgreSQL refuses \\u0000 in jsonb, so NUL becomes U+FFFD. A value
    nested deeper than orjson writes (255 levels; requests may nest up to 1024) is written without
    recursion."""
    try:
        data = orjson.dumps(value)
    except TypeError:
        return deep_json_text(value)
    if b"\\u0000" in data:
        data = orjson.dumps(_without_nul(value))
    return data.decode("utf-8")


def deep_json_text(value: Any) -> str:
    """JSON text of a parsed JSON value of any depth, with an explicit stack (no recursion)."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Token):
            out.append(item.text)
        elif isinstance(item, dict):
            out.append("{")
            stack.append(_Token("}"))
            for index, (key, member) in enumerate(reversed(list(item.items()))):
                stack.append(member)
                stack.append(_Token(orjson.dumps(_without_nul(str(key))).decode() + ":"))
                if index < len(item) - 1:
                    stack.append(_Token(","))
        elif isinstance(item, list):
            out.append("[")
            stack.append(_Token("]"))
            for index, member in enumerate(reversed(item)):
                stack.append(member)
                if index < len(item) - 1:
                    stack.append(_Token(","))
        else:
            out.append(orjson.dumps(_without_nul(item)).decode("utf-8"))
    return "".join(out)


class _Token:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def copy_field(value: Any) -> str:
    """One field of COPY's text format."""
    if isinstance(value, str):
        return value.translate(COPY_ESCAPES)
    return str(value)


# -- enroll secrets and hosts -------------------------------------------------------------------------


def active_secret_hashes(cur: psycopg2.extensions.cursor) -> list[bytes]:
    cur.execute(load_sql("enroll_secrets_active"))
    return [bytes(row[0]) for row in cur.fetchall()]


def make_secret_active(cur: psycopg2.extensions.cursor, secret: str, *, revoke_others: bool = True) -> int:
    """Accept ``secret`` from now on (and, by default, no other); returns how many were revoked."""
    if not secret or len(secret) > 256 or "\x00" in secret:
        raise ValueError("an enroll secret is 1 to 256 characters without NUL")
    digest = sha256(secret)
    cur.execute(load_sql("enroll_secret_lock"))
    cur.execute(load_sql("enroll_secret_activate"), {"secret_sha256": digest})
    if not revoke_others:
        return 0
    cur.execute(load_sql("enroll_secret_revoke_others"), {"secret_sha256": digest})
    return len(cur.fetchall())


def _detail(details: dict[str, Any], table: str, column: str) -> str:
    section = details.get(table)
    value = section.get(column, "") if isinstance(section, dict) else ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return ""
    return str(value).replace("\x00", "")[:256]


def enroll_host(cur: psycopg2.extensions.cursor, request: EnrollRequest, node_key: str) -> int:
    details = request.host_details
    os_name = _detail(details, "os_version", "name")
    os_version = " ".join(part for part in (os_name, _detail(details, "os_version", "version")) if part)
    params = {
        "host_identifier": request.host_identifier,
        "node_key_sha256": sha256(node_key),
        "hostname": _detail(details, "system_info", "hostname"),
        "uuid": _detail(details, "system_info", "uuid"),
        "platform": request.platform_type or _detail(details, "os_version", "platform"),
        "os_version": os_version,
        "osquery_version": _detail(details, "osquery_info", "version"),
        "host_details": json_text(details),
    }
    cur.execute(load_sql("host_enroll"), params)
    row = cur.fetchone()
    assert row is not None
    return int(row[0])


def host_for_node_key(cur: psycopg2.extensions.cursor, node_key: str) -> int | None:
    cur.execute(load_sql("host_by_node_key"), {"node_key_sha256": sha256(node_key)})
    row = cur.fetchone()
    return None if row is None else int(row[0])


# -- flow partitions ----------------------------------------------------------------------------------


class PartitionCache:
    """The days whose flows partition is known to exist in this process; missing ones are created in a
    short transaction of their own before the batch's (DDL would otherwise hold a lock on flows)."""

    def __init__(self) -> None:
        self._days: set[int] = set()
        self._lock = threading.Lock()

    def ensure(self, db: Database, days: Iterable[int]) -> None:
        with self._lock:
            missing = sorted(set(days) - self._days)
        if not missing:
            return
        with db.transaction() as cur:
            for day in missing:
                cur.execute(load_sql("flow_partition_ensure"), {"day": epoch_day(day)})
        with self._lock:
            self._days.update(missing)

    def forget(self) -> None:
        with self._lock:
            self._days.clear()


def epoch_day(day_number: int) -> date:
    return datetime.fromtimestamp(day_number * 86400, tz=UTC).date()


def ensure_partitions(db: Database, *, now: float, ahead_days: int, back_days: int) -> list[str]:
    """Create the partitions from ``back_days`` ago to ``ahead_days`` ahead; returns their names."""
    today = int(now) // 86400
    names = []
    with db.transaction() as cur:
        for day in range(today - back_days, today + ahead_days + 1):
            cur.execute(load_sql("flow_partition_ensure"), {"day": epoch_day(day)})
            row = cur.fetchone()
            names.append(str(row[0]) if row else "")
    return names


def drop_partitions_before(db: Database, before_epoch: int) -> list[str]:
    with db.transaction() as cur:
        cur.execute(load_sql("flow_partitions_drop"), {"before_epoch": before_epoch})
        return [str(row[0]) for row in cur.fetchall()]


def delete_batches_before(db: Database, before: datetime) -> int:
    """Retention of batches and (by cascade) their results, status lines and quarantined items."""
    with db.transaction() as cur:
        cur.execute(load_sql("retention_batches"), {"before": before})
        return int(cur.rowcount)


# -- log batches --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Prepared:
    """A log request split and sanitised, before any write (pure)."""

    flows: FlowCopy = field(default_factory=lambda: FlowCopy([], [], []))
    results: list[ResultRow] = field(default_factory=list)
    statuses: list[StatusLine] = field(default_factory=list)
    quarantine: list[ItemProblem] = field(default_factory=list)


def prepare(request: LogRequest, *, flows_query: str, ctx: FilterContext, columnar: bool = True) -> Prepared:
    """Split a log request into flow rows (sanitised), other results, status lines and quarantine.
    ``columnar`` takes the column-wise fast paths where they apply (fleet_analytics.ingest.columnar);
    without it everything goes item by item and row by row: the same result, slower."""
    prepared = Prepared()
    if request.log_type == "status":
        for item in request.data:
            line = parse_status(item)
            if isinstance(line, ItemProblem):
                prepared.quarantine.append(line)
            else:
                prepared.statuses.append(line)
        return prepared
    flows_names: dict[Any, bool] = {}
    split = split_flow_items(request.data, flows_query, flows_names) if columnar else None
    if split is not None:
        flow_rows, others = split
    else:
        flow_rows, others = [], request.data
    flows_names.clear()
    for item in others:
        rows = explode_result(item)
        if isinstance(rows, ItemProblem):
            prepared.quarantine.append(rows)
            continue
        for row in rows:
            is_flows = flows_names.get(row.name)
            if is_flows is None:
                is_flows = flows_names[row.name] = is_flows_query(row.name, flows_query)
            if is_flows and row.action != "removed":
                flow_rows.append((row.name, row.columns))
            else:
                prepared.results.append(row)
    columns = [row[1] for row in flow_rows]
    fast = fast_flows(columns, ctx) if columnar else None  # the whole batch clean: column by column
    if fast is not None:
        prepared.flows = fast
        return prepared
    sanitised = sanitise_batch(columns, ctx)  # the specification, row by row, naming what is wrong
    prepared.flows = FlowCopy(
        [row["window_start"] for row in sanitised.rows],
        [row["flow_key"] for row in sanitised.rows],
        [flow_line("", row) for row in sanitised.rows],
    )
    for index, rejection in sanitised.rejected:
        name, received = flow_rows[index]
        prepared.quarantine.append(ItemProblem(rejection.filter, rejection.reason, received, name))
    return prepared


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    batch_id: int | None  # None: a retry of a batch already stored
    flow_rows: int = 0
    flow_duplicates: int = 0
    result_rows: int = 0
    status_rows: int = 0
    quarantined: int = 0

    @property
    def already_stored(self) -> bool:
        return self.batch_id is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "stored": not self.already_stored,
            "flow_rows": self.flow_rows,
            "flow_duplicates": self.flow_duplicates,
            "result_rows": self.result_rows,
            "status_rows": self.status_rows,
            "quarantined": self.quarantined,
        }


def store_batch(
    db: Database,
    partitions: PartitionCache,
    *,
    host_id: int,
    request: LogRequest,
    prepared: Prepared,
    body_bytes: int,
) -> BatchOutcome:
    days = {start // 86400 for start in prepared.flows.window_starts}
    partitions.ensure(db, days)
    for attempt in (1, 2):
        try:
            return _store(db, host_id=host_id, request=request, prepared=prepared, body_bytes=body_bytes)
        except psycopg2.errors.UniqueViolation:
            if attempt == 2:
                raise
            log.info("host %d: a concurrent batch stored some of the same flow windows; retrying", host_id)
        except psycopg2.errors.CheckViolation:  # no partition (dropped under us): create and retry
            if attempt == 2:
                raise
            partitions.forget()
            partitions.ensure(db, days)
    raise AssertionError("unreachable")


COPY_CHUNK: Final = 1 << 20  # bytes handed to psycopg2 per read


def _copy(cur: psycopg2.extensions.cursor, statement: str, lines: list[str], prefix: str = "") -> None:
    """COPY FROM STDIN of text-format lines, each after ``prefix``: joined and encoded once (no string
    per line), sent in large chunks."""
    if lines:
        data = (prefix + ("\n" + prefix).join(lines) + "\n").encode("utf-8")
        cur.copy_expert(load_sql(statement), io.BytesIO(data), size=COPY_CHUNK)


def _store(
    db: Database, *, host_id: int, request: LogRequest, prepared: Prepared, body_bytes: int
) -> BatchOutcome:
    with db.transaction() as cur:
        cur.execute(
            load_sql("batch_insert"),
            {
                "host_id": host_id,
                "idempotency_key": request.idempotency_key or None,
                "log_type": request.log_type,
                "items": len(request.data),
                "body_bytes": body_bytes,
            },
        )
        row = cur.fetchone()
        if row is None:
            return BatchOutcome(batch_id=None)
        batch_id = int(row[0])
        head = f"{host_id}\t{batch_id}\t"
        flows = prepared.flows
        duplicates = 0
        if flows:
            # Optimistic: a plain COPY, which the unique index (host, window, flow key) guards; only when
            # it finds a window the host sent before are the stored ones looked up and left out.
            cur.execute(load_sql("flows_savepoint"))
            try:
                _copy(cur, "flows_copy", flows.lines, prefix=head)
            except psycopg2.errors.UniqueViolation:
                cur.execute(load_sql("flows_savepoint_rollback"))
                cur.execute(
                    load_sql("flows_existing_keys"),
                    {
                        "host_id": host_id,
                        "window_starts": sorted(set(flows.window_starts)),
                        "flow_keys": flows.keys,
                    },
                )
                existing = {key.replace("-", "") for (key,) in cur.fetchall()}
                kept = flows.without(existing)
                duplicates = len(flows) - len(kept)
                flows = kept
                _copy(cur, "flows_copy", flows.lines, prefix=head)
            cur.execute(load_sql("flows_savepoint_release"))
        log_type = request.log_type
        quarantined = [
            (log_type, p.query_name, p.filter, p.reason[:MAX_REASON], json_text(p.item))
            for p in prepared.quarantine
        ]
        results = [
            (r.name, r.action, r.unix_time, json_text(r.columns), json_text(r.decorations))
            for r in prepared.results
        ]
        statuses = [
            (line.severity, line.filename, line.line, line.message, line.version, line.unix_time,
             json_text(line.decorations))
            for line in prepared.statuses
        ]  # fmt: skip
        for statement, rows in (
            ("quarantine_copy", quarantined),
            ("results_copy", results),
            ("status_logs_copy", statuses),
        ):
            _copy(cur, statement, ["\t".join(map(copy_field, row)) for row in rows], prefix=head)
        outcome = BatchOutcome(
            batch_id=batch_id,
            flow_rows=len(flows),
            flow_duplicates=duplicates,
            result_rows=len(prepared.results),
            status_rows=len(prepared.statuses),
            quarantined=len(prepared.quarantine),
        )
        cur.execute(
            load_sql("batch_counts"),
            {
                "batch_id": batch_id,
                "flow_rows": outcome.flow_rows,
                "flow_duplicates": outcome.flow_duplicates,
                "result_rows": outcome.result_rows,
                "status_rows": outcome.status_rows,
                "quarantined": outcome.quarantined,
                "flow_window_min": min(flows.window_starts) if flows else None,
                "flow_window_max": max(flows.window_starts) if flows else None,
            },
        )
        cur.execute(load_sql("host_touch_log"), {"host_id": host_id})
        return outcome


FLOW_FIELDS: Final = len(FLOW_COLUMNS) + 1  # with flow_key


_COPY_VALUES: Final = operator.itemgetter("flow_key", *FLOW_COLUMNS)


def flow_line(head: str, row: dict[str, Any]) -> str:
    """One flows COPY line: host_id, batch_id, flow_key, then FLOW_COLUMNS. Fast path: join the
    values and escape field by field only when the line holds a character COPY treats specially."""
    values = _COPY_VALUES(row)
    line = "\t".join(map(str, values))
    if line.count("\t") != FLOW_FIELDS - 1 or "\\" in line or "\n" in line or "\r" in line:
        line = "\t".join(map(copy_field, values))
    return head + line


def now() -> int:
    return int(time.time())
