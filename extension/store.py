"""The endpoint database: raw socket events, aggregated flows and the agent's persisted state.

This module is the only user of the endpoint SQLite database. Every statement it runs is a named file
in ``sql/endpoint/`` (``schema.sql`` documents every column).

Windows and the watermark
-------------------------
A raw row belongs to the window ``floor(time / window_seconds) * window_seconds``. Aggregation turns
whole windows into rows of ``flows`` and keeps a *watermark* in ``agent_state``: the ``window_start``
of the next window still to be aggregated. Inserting the flows and advancing the watermark happen in
one transaction, so each window is aggregated exactly once, also across restarts and crashes. A raw
row whose window is below the watermark (it arrived after its window was aggregated, e.g. a slow
drain, or after a restart within the window that a clean shutdown already aggregated) is written into
the watermark window instead and counted in the ``late_rows`` counter: never lost, never counted twice.

Changing ``window_seconds`` between runs
----------------------------------------
Rows already written keep their ``window_start``; only new rows use the new interval. Flow rows carry
the interval in force when they were aggregated. The watermark is an epoch second, not a window
number, so nothing is aggregated twice, but new rows whose new-size window starts below the watermark
are folded into the watermark window (and counted as late rows) until the first aggregation under the
new interval, which leaves the watermark aligned to it.

Threads
-------
One connection per :class:`Store`, guarded by a lock, so one Store may be shared by the collector's
timer and the osquery table plugins. Several Stores (or processes) may open the same file: writes
take SQLite's write lock up front (``BEGIN IMMEDIATE``), so reading the watermark and writing against
it cannot interleave with another writer.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from extension.constraints import OPERATORS, Constraint
from extension.events import Activity, Direction, SocketEvent

log = logging.getLogger(__name__)

SQL_DIR: Final = Path(__file__).resolve().parent.parent / "sql" / "endpoint"
SCHEMA_VERSION: Final = 1  # PRAGMA user_version set by sql/endpoint/schema.sql

WATERMARK_KEY: Final = "aggregate_watermark"
QUERYABLE_TABLES: Final = frozenset({"socket_events", "flows"})
COUNTER_PREFIX: Final = "counter:"
INFO_PREFIX: Final = "info:"
LATE_ROWS: Final = "late_rows"

# Bounds for an unset since/until: always bind numbers so the window_start index stays usable.
_MIN_TIME: Final = -(2**62)
_MAX_TIME: Final = 2**62

_EVENT_FIELDS: Final = tuple(field.name for field in dataclasses.fields(SocketEvent))
_ACTIVITIES: Final = frozenset(activity.value for activity in Activity)
_DIRECTIONS: Final = frozenset(direction.value for direction in Direction)
_PROTOCOLS: Final = frozenset({"tcp", "udp"})
_FAMILIES: Final = frozenset({4, 6})
_DATA_DIR_HINT: Final = "set EXTENSION_DATA_DIR (or data_dir in the config file) to a writable directory"


class StoreError(RuntimeError):
    """The endpoint database cannot be used; the message names the cause and the remedy."""


@functools.cache
def load_sql(name: str) -> str:
    """The text of ``sql/endpoint/<name>.sql``, read once."""
    path = SQL_DIR / f"{name}.sql"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StoreError(
            f"SQL file {path} cannot be read ({exc.strerror or exc}); the installation is incomplete: "
            "reinstall so that sql/endpoint/ sits next to the extension package"
        ) from exc


def window_start_of(time: float, window_seconds: int) -> int:
    """The aligned start (epoch s) of the window holding ``time``: ``floor(time / w) * w``.

    Floor division is exact for floats too, so 59.999 falls in window 0 and 60.0 in window 60.
    """
    return int(time // window_seconds) * window_seconds


def _validate(index: int, event: SocketEvent) -> dict[str, Any]:
    """The row's bound parameters; raises ValueError naming the row and the field for a bad value."""
    row = {name: getattr(event, name) for name in _EVENT_FIELDS}
    problems: list[str] = []
    if row["activity"] not in _ACTIVITIES:
        problems.append(f"activity {row['activity']!r} is not one of {sorted(_ACTIVITIES)}")
    if row["direction"] not in _DIRECTIONS:
        problems.append(f"direction {row['direction']!r} is not one of {sorted(_DIRECTIONS)}")
    if row["protocol"] not in _PROTOCOLS:
        problems.append(f"protocol {row['protocol']!r} is not tcp or udp")
    if row["family"] not in _FAMILIES:
        problems.append(f"family {row['family']!r} is not 4 or 6")
    time = row["time"]
    if isinstance(time, bool) or not isinstance(time, int | float) or not math.isfinite(time):
        problems.append(f"time {time!r} is not a finite number of epoch seconds")
    if problems:
        raise ValueError(f"socket event #{index} (pid {row['pid']!r}) rejected: {'; '.join(problems)}")
    # plain str for the enums, whatever the caller passed (an enum member or its value)
    row["activity"] = str(Activity(row["activity"]))
    row["direction"] = str(Direction(row["direction"]))
    return row


class Store:
    """The endpoint database at ``path``; see the module docstring for windows and the watermark."""

    def __init__(self, path: Path, *, window_seconds: int, read_only: bool = False) -> None:
        """Open (and create, or migrate) the database. ``read_only`` opens an existing database for
        reading only: no write access needed, nothing created; writes then fail with StoreError."""
        if isinstance(window_seconds, bool) or not isinstance(window_seconds, int) or window_seconds < 1:
            raise ValueError(f"window_seconds must be a whole number of seconds >= 1, not {window_seconds!r}")
        self.path = Path(path)
        self.window_seconds = window_seconds
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._column_cache: dict[str, frozenset[str]] = {}
        if read_only:
            self._open_read_only()
            return
        self._check_writable()
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.executescript(load_sql("connection"))
            found = self._check(conn)
            if found["user_version"] > SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.path} has schema version {found['user_version']}, newer than this "
                    f"agent's {SCHEMA_VERSION}; upgrade the agent, or move the file aside to start afresh"
                )
            conn.executescript(load_sql("schema"))
            found = self._check(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise self._open_error(exc) from exc
        except BaseException:
            conn.close()
            raise
        if found["user_version"] != SCHEMA_VERSION:
            conn.close()
            raise StoreError(
                f"sql/endpoint/schema.sql sets schema version {found['user_version']} but the agent "
                f"expects {SCHEMA_VERSION}; the installation is inconsistent: reinstall"
            )
        if str(found["journal_mode"]).lower() != "wal":
            log.warning(
                "database %s runs in journal mode %s, not WAL (the file system may not support it): "
                "readers will block the collector; put EXTENSION_DATA_DIR on a local disk",
                self.path,
                found["journal_mode"],
            )
        self._conn = conn
        log.debug("opened %s (schema version %d, window %d s)", self.path, SCHEMA_VERSION, window_seconds)

    def _open_read_only(self) -> None:
        if not self.path.is_file():
            raise StoreError(
                f"no agent database at {self.path}; start the agent (python -m extension run) "
                "or point EXTENSION_DATA_DIR at its data directory"
            )
        conn: sqlite3.Connection | None = None
        version = -1
        # A WAL database needs its -shm file; a reader that may not create it (no write access to the
        # directory, agent stopped) can still read the file as immutable: nobody writes it then.
        for options in ("mode=ro", "mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(
                    f"file:{self.path}?{options}", uri=True, isolation_level=None, check_same_thread=False
                )
                conn.row_factory = sqlite3.Row
                version = self._check(conn)["user_version"]
                break
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                    conn = None
                if options.endswith("immutable=1"):
                    raise self._open_error(exc) from exc
        assert conn is not None
        if version != SCHEMA_VERSION:
            conn.close()
            raise StoreError(
                f"database {self.path} has schema version {version}, this agent reads {SCHEMA_VERSION}; "
                "use the agent version that wrote it"
            )
        self._conn = conn

    # --- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database; further calls raise StoreError. Closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- writes --------------------------------------------------------------------------------

    def insert_batch(self, events: Sequence[SocketEvent]) -> int:
        """Write a drained batch in one transaction; returns the number of rows written.

        Every row is checked first (activity, direction, protocol, family, time): one bad row raises
        ValueError and nothing of the batch is written. A row whose window was already aggregated goes
        into the watermark window and is counted in ``late_rows``.
        """
        rows = [_validate(index, event) for index, event in enumerate(events)]
        if not rows:
            return 0
        with self._transaction() as conn:
            watermark = self._watermark(conn)
            late = 0
            for row in rows:
                window = window_start_of(row["time"], self.window_seconds)
                if watermark is not None and window < watermark:
                    window = watermark
                    late += 1
                row["window_start"] = window
            conn.executemany(load_sql("insert_socket_event"), rows)
            if late:
                conn.execute(load_sql("counter_add"), {"key": COUNTER_PREFIX + LATE_ROWS, "delta": late})
                log.debug("%d late rows folded into window %s", late, watermark)
        return len(rows)

    def aggregate(self, *, now: float, grace_seconds: float, include_open: bool = False) -> int:
        """Aggregate every complete window not yet aggregated; returns the number of flow rows written.

        A window is complete when it ended at or before ``now - grace_seconds``. The flows and the new
        watermark are written in one transaction. With ``include_open`` (clean shutdown) the window
        holding ``now`` is aggregated too and the watermark moves past it. Without a watermark (first
        run) aggregation starts at the earliest window present.
        """
        if grace_seconds < 0:
            raise ValueError(f"grace_seconds must not be negative, not {grace_seconds!r}")
        to_window = window_start_of(now - grace_seconds, self.window_seconds)
        if include_open:
            to_window = max(to_window, window_start_of(now, self.window_seconds) + self.window_seconds)
        with self._transaction() as conn:
            from_window = self._watermark(conn)
            if from_window is None:
                earliest = conn.execute(load_sql("aggregate_min_window")).fetchone()["window_start"]
                if earliest is None:
                    return 0  # nothing stored yet
                from_window = int(earliest)
            if include_open:
                # rows folded into the watermark window after a restart within an aggregated window
                to_window = max(to_window, from_window + self.window_seconds)
            if to_window <= from_window:
                return 0
            cursor = conn.execute(
                load_sql("flows_aggregate"),
                {
                    "from_window": from_window,
                    "to_window": to_window,
                    "window_seconds": self.window_seconds,
                },
            )
            inserted = cursor.rowcount
            self._set_state(conn, WATERMARK_KEY, to_window)
        log.debug("aggregated windows [%d, %d): %d flow rows", from_window, to_window, inserted)
        return inserted

    def prune(
        self, *, now: float, raw_retention_seconds: int, flow_retention_seconds: int
    ) -> tuple[int, int]:
        """Delete old data in one transaction; returns (raw rows deleted, flow rows deleted).

        Raw rows go when their time is more than ``raw_retention_seconds`` before ``now`` *and* their
        window is already aggregated; flow rows when their window started more than
        ``flow_retention_seconds`` before ``now``.
        """
        if raw_retention_seconds < 0 or flow_retention_seconds < 0:
            raise ValueError("retention must not be negative")
        with self._transaction() as conn:
            raw = conn.execute(
                load_sql("prune_socket_events"),
                {"cutoff": now - raw_retention_seconds, "watermark": self._watermark(conn)},
            ).rowcount
            flows = conn.execute(load_sql("prune_flows"), {"cutoff": now - flow_retention_seconds}).rowcount
        if raw or flows:
            log.debug("pruned %d raw rows and %d flow rows", raw, flows)
        return raw, flows

    def add_counter(self, name: str, delta: int) -> None:
        """Add ``delta`` to the persisted counter ``name`` (created at ``delta``)."""
        if not name:
            raise ValueError("counter name must not be empty")
        with self._transaction() as conn:
            conn.execute(load_sql("counter_add"), {"key": COUNTER_PREFIX + name, "delta": int(delta)})

    # --- reads ---------------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Every persisted counter by name."""
        with self._reading() as conn:
            rows = conn.execute(load_sql("state_by_prefix"), {"prefix": COUNTER_PREFIX}).fetchall()
        return {str(row["name"]): int(row["value"]) for row in rows}

    def set_info(self, values: Mapping[str, object]) -> None:
        """Record what the running agent reports about itself (capture backend, hook set, start
        time, versions), for ``status`` and the status table; one transaction."""
        with self._transaction() as conn:
            for key, value in values.items():
                self._set_state(conn, INFO_PREFIX + key, str(value))

    def info(self) -> dict[str, str]:
        """Everything recorded with :meth:`set_info`, by name."""
        with self._reading() as conn:
            rows = conn.execute(load_sql("state_by_prefix"), {"prefix": INFO_PREFIX}).fetchall()
        return {str(row["name"]): str(row["value"]) for row in rows}

    def watermark(self) -> int | None:
        """The window_start of the next window still to be aggregated; None before the first aggregation."""
        with self._reading() as conn:
            return self._watermark(conn)

    def flows(self, *, since: int | None = None, until: int | None = None) -> list[dict[str, object]]:
        """Flow rows whose window starts in [since, until), by window_start then id."""
        params = {
            "since": _MIN_TIME if since is None else since,
            "until": _MAX_TIME if until is None else until,
        }
        with self._reading() as conn:
            rows = conn.execute(load_sql("flows_select"), params).fetchall()
        return [dict(row) for row in rows]

    def query_table(
        self, table: str, constraints: Sequence[Constraint], *, limit: int = 100_000
    ) -> list[dict[str, object]]:
        """Rows of ``socket_events`` or ``flows`` matching every constraint (osquery push-down),
        oldest first, at most ``limit``. Columns come from the table's own schema and operators from
        extension.constraints, so the composed WHERE clause holds no text from the request; every
        value is bound."""
        if table not in QUERYABLE_TABLES:
            raise ValueError(f"no such table {table!r}; one of {sorted(QUERYABLE_TABLES)}")
        if not 1 <= limit <= 10_000_000:
            raise ValueError(f"limit must be between 1 and 10000000, not {limit!r}")
        with self._reading() as conn:
            known = self._columns(conn, table)
            predicates = []
            params: dict[str, object] = {"limit": limit}
            for index, constraint in enumerate(constraints):
                if constraint.column not in known or constraint.op not in OPERATORS.values():
                    raise ValueError(f"cannot filter {table} on {constraint.column} {constraint.op}")
                predicates.append(f"{constraint.column} {constraint.op} :p{index}")
                params[f"p{index}"] = constraint.value
            sql = load_sql(f"table_{table}").replace("/*where*/", " AND ".join(predicates) or "1")
            rows = conn.execute(sql, params).fetchall()
        return [dict(row) for row in rows]

    def _columns(self, conn: sqlite3.Connection, table: str) -> frozenset[str]:
        cached = self._column_cache.get(table)
        if cached is None:
            cached = frozenset(
                str(row["name"]) for row in conn.execute(load_sql("table_columns"), {"table": table})
            )
            self._column_cache[table] = cached
        return cached

    def summary_by_process(self, *, since: float, limit: int = 20) -> list[dict[str, object]]:
        """Per process since ``since`` (raw rows, so the open window counts): busiest first.

        Keys: pid, process_start_time, process_name, process_path, flows, bytes_sent, bytes_received,
        connections, remote_endpoints (see sql/endpoint/flows_summary_by_process.sql).
        """
        with self._reading() as conn:
            rows = conn.execute(
                load_sql("flows_summary_by_process"), {"since": since, "limit": limit}
            ).fetchall()
        return [dict(row) for row in rows]

    def row_counts(self) -> dict[str, int]:
        """Rows in socket_events and in flows."""
        with self._reading() as conn:
            row = conn.execute(load_sql("row_counts")).fetchone()
        return {"socket_events": int(row["socket_events"]), "flows": int(row["flows"])}

    # --- internals -----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"database {self.path} is closed; open a new Store")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from the start; rolled back on any error."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._use_error(exc) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._use_error(exc) from exc
                raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise self._use_error(exc) from exc

    @staticmethod
    def _watermark(conn: sqlite3.Connection) -> int | None:
        row = conn.execute(load_sql("state_get"), {"key": WATERMARK_KEY}).fetchone()
        return None if row is None or row["value"] is None else int(row["value"])

    @staticmethod
    def _set_state(conn: sqlite3.Connection, key: str, value: object) -> None:
        conn.execute(load_sql("state_set"), {"key": key, "value": value})

    @staticmethod
    def _check(conn: sqlite3.Connection) -> Mapping[str, Any]:
        row: sqlite3.Row = conn.execute(load_sql("connection_check")).fetchone()
        return {"journal_mode": row["journal_mode"], "user_version": int(row["user_version"])}

    def _check_writable(self) -> None:
        """Create the directory and check that the database can be written, with an errno-style reason."""
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            reason = f"{directory} exists and is not a directory ({os.strerror(errno.ENOTDIR)})"
            raise StoreError(f"database {self.path} is not writable: {reason}; {_DATA_DIR_HINT}") from None
        except OSError as exc:
            reason = f"cannot create {directory} ({exc.strerror or exc})"
            raise StoreError(f"database {self.path} is not writable: {reason}; {_DATA_DIR_HINT}") from exc
        if self.path.is_dir():
            reason = f"{self.path} is a directory ({os.strerror(errno.EISDIR)})"
        elif not os.access(directory, os.W_OK | os.X_OK):
            reason = f"{directory} ({os.strerror(errno.EACCES)})"
        elif self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            reason = f"{self.path} ({os.strerror(errno.EACCES)})"
        else:
            return
        raise StoreError(f"database {self.path} is not writable: {reason}; {_DATA_DIR_HINT}")

    def _open_error(self, exc: sqlite3.Error) -> StoreError:
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            return StoreError(
                f"database {self.path} is corrupt or not an SQLite database ({exc}); move it aside "
                "(the agent creates a new one) or restore it from a backup"
            )
        return StoreError(f"database {self.path} cannot be opened for writing ({exc}); {_DATA_DIR_HINT}")

    def _use_error(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(
            f"database {self.path}: {exc}; check free disk space and that the file is writable "
            f"({_DATA_DIR_HINT}); a corrupt file can be moved aside (the agent creates a new one)"
        )
