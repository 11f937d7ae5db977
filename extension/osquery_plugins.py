"""osquery table plugins: thin adapters from osqueryd's table requests to the endpoint store.

Tables (``table_specs()`` lists every column with its osquery type):

``net_socket_events``  the raw rows of ``socket_events`` (every column but the internal ``id``)
``net_flows``          the aggregated rows of ``flows`` (every column but the internal ``id``)
``net_agent_status``   one row: the agent's database, capture backend and hook set, row counts, the
                       aggregation watermark and every loss counter (0 until first counted)

Column meanings are those of ``sql/endpoint/schema.sql``. Types: ``INTEGER`` for small integers (pid,
ports, uid, family), ``BIGINT`` for byte and call counts and epoch times, ``DOUBLE`` for the sub-second
``first_seen``/``last_seen`` of raw rows, ``TEXT`` otherwise.

Requests (osquery/core/tables.cpp): ``{"action": "columns"}`` and ``{"action": "generate", "context":
JSON}``. Comparisons (=, <, <=, >, >=) on INTEGER, BIGINT and TEXT columns are pushed down into an
indexed SQLite query (extension.constraints); osqueryd filters every returned row again, so a
constraint not pushed down (LIKE, GLOB, DOUBLE columns) only costs time. Every value is returned as a
string and an empty or absent value as ``""`` (the SDK would turn ``None`` into ``"None"``).

Errors never escape into the SDK: a malformed context, an unusable database (e.g. the agent has not
run yet) or an unknown action is answered with status code 1 and a message saying what is wrong,
which osqueryd logs. (The SDK's own ``TablePlugin.call`` raises TypeError for an unknown action, and
any exception becomes an opaque Thrift "Internal error".)

The SDK makes every plugin a process-wide singleton that it instantiates without arguments, so the
database to read is given once per process with :func:`configure` (``register_plugins`` does it).
Each plugin opens its own read-only :class:`~extension.store.Store` on first use and keeps it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

from osquery import TableColumn, TablePlugin
from osquery.extensions.ttypes import ExtensionResponse, ExtensionStatus

from extension.collector import LOSS_COUNTERS
from extension.constraints import Constraint, ConstraintError, parse_context
from extension.store import Store, StoreError

log = logging.getLogger(__name__)

TEXT: Final = "TEXT"
INTEGER: Final = "INTEGER"
BIGINT: Final = "BIGINT"
DOUBLE: Final = "DOUBLE"
PUSHDOWN_TYPES: Final = frozenset({TEXT, INTEGER, BIGINT})

ROW_LIMIT: Final = 100_000  # rows per generate; more are cut (and logged): narrow the query by time

SOCKET_EVENT_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("window_start", BIGINT),
    ("time", BIGINT),
    ("activity", TEXT),
    ("pid", INTEGER),
    ("process_name", TEXT),
    ("protocol", TEXT),
    ("family", INTEGER),
    ("local_address", TEXT),
    ("local_port", INTEGER),
    ("remote_address", TEXT),
    ("remote_port", INTEGER),
    ("uid", INTEGER),
    ("username", TEXT),
    ("process_path", TEXT),
    ("process_sha256", TEXT),
    ("process_start_time", BIGINT),
    ("parent_pid", INTEGER),
    ("cmdline", TEXT),
    ("direction", TEXT),
    ("local_hostname", TEXT),
    ("remote_hostname", TEXT),
    ("bytes_sent", BIGINT),
    ("bytes_received", BIGINT),
    ("sends", BIGINT),
    ("receives", BIGINT),
    ("first_seen", DOUBLE),
    ("last_seen", DOUBLE),
    ("community_id", TEXT),
)

FLOW_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("window_start", BIGINT),
    ("window_seconds", INTEGER),
    ("pid", INTEGER),
    ("process_name", TEXT),
    ("process_path", TEXT),
    ("process_sha256", TEXT),
    ("uid", INTEGER),
    ("username", TEXT),
    ("protocol", TEXT),
    ("family", INTEGER),
    ("direction", TEXT),
    ("local_address", TEXT),
    ("local_port", INTEGER),
    ("remote_address", TEXT),
    ("remote_port", INTEGER),
    ("local_hostname", TEXT),
    ("remote_hostname", TEXT),
    ("bytes_sent", BIGINT),
    ("bytes_received", BIGINT),
    ("connections", BIGINT),
    ("activity", TEXT),
    ("first_seen", BIGINT),
    ("last_seen", BIGINT),
    ("sends", BIGINT),
    ("receives", BIGINT),
    ("community_id", TEXT),
    ("process_start_time", BIGINT),
    ("parent_pid", INTEGER),
    ("cmdline", TEXT),
)

# info keys written by the collector (Store.set_info) -> (column, type)
_INFO_COLUMNS: Final[tuple[tuple[str, str, str], ...]] = (
    ("backend", "backend", TEXT),
    ("hook_set", "hook_set", TEXT),
    ("hooks", "hooks", TEXT),
    ("started_at", "started_at", BIGINT),
    ("pid", "agent_pid", INTEGER),
    ("kernel", "kernel", TEXT),
    ("version", "agent_version", TEXT),
    ("window_seconds", "window_seconds", INTEGER),
    ("spool_rows", "spool_rows", BIGINT),  # log lines waiting to be forwarded
    ("spool_bytes", "spool_bytes", BIGINT),
    ("spool_oldest_unsent", "spool_oldest_unsent", BIGINT),  # epoch s of the oldest waiting line
    ("spool_dropped_rows", "spool_dropped_rows", BIGINT),  # lines dropped by the spool's bound
    ("spool_rejected_rows", "spool_rejected_rows", BIGINT),  # refused for good by the service (413)
    ("enterprise_network", "enterprise_network", TEXT),  # on | off ('' when not forwarding)
    ("enterprise_reason", "enterprise_reason", TEXT),
    ("forwarded_lines", "forwarded_lines", BIGINT),
    ("last_forward_success", "last_forward_success", BIGINT),  # epoch s
    ("last_forward_error", "last_forward_error", TEXT),
)

STATUS_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("database", TEXT),
    *((column, kind) for _key, column, kind in _INFO_COLUMNS),
    ("socket_events_rows", BIGINT),
    ("flows_rows", BIGINT),
    ("aggregated_until", BIGINT),  # the watermark; '' before the first aggregation
    *((name, BIGINT) for name in LOSS_COUNTERS),
    ("counters", TEXT),  # every persisted counter as a JSON object, also ones not listed above
)

_TABLES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "net_socket_events": SOCKET_EVENT_COLUMNS,
    "net_flows": FLOW_COLUMNS,
    "net_agent_status": STATUS_COLUMNS,
}


def table_specs() -> dict[str, list[tuple[str, str]]]:
    """Every table this extension serves: table -> [(column, osquery type)], in column order."""
    return {table: list(columns) for table, columns in _TABLES.items()}


def as_text(value: object) -> str:
    """A value as osqueryd wants it: a string, ``""`` for None."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _status(code: int, message: str, rows: list[dict[str, str]] | None = None) -> Any:
    return ExtensionResponse(status=ExtensionStatus(code=code, message=message), response=rows or [])


# --- configuration (one database per process) ----------------------------------------------------


class _Config:
    database: Path | None = None
    window_seconds: int = 60


def configure(database: Path, *, window_seconds: int) -> None:
    """Point every plugin at ``database``; stores already open are closed (and reopened on use)."""
    _Config.database = Path(database)
    _Config.window_seconds = window_seconds
    for plugin_class in PLUGINS:
        instance = plugin_class._instance
        if isinstance(instance, NetTable):
            instance.close()


def register_plugins(manager: Any, database: Path, *, window_seconds: int) -> list[str]:
    """Configure the plugins and add them to an osquery ``ExtensionManager``; returns the table names."""
    configure(database, window_seconds=window_seconds)
    for plugin_class in PLUGINS:
        manager.add_plugin(plugin_class)
    return [plugin_class.TABLE for plugin_class in PLUGINS]


# --- the plugins ---------------------------------------------------------------------------------


class NetTable(TablePlugin):  # type: ignore[misc]  # the SDK is untyped
    """A table over the store. Subclasses set TABLE and implement ``rows``."""

    TABLE: ClassVar[str] = ""

    _store: Store | None = None
    _lock: ClassVar[threading.Lock] = threading.Lock()  # guards opening and closing the stores

    def name(self) -> str:
        return self.TABLE

    def column_types(self) -> dict[str, str]:
        return dict(_TABLES[self.TABLE])

    def columns(self) -> list[Any]:
        return [TableColumn(name=name, type=kind) for name, kind in _TABLES[self.TABLE]]

    # the SDK's call() raises TypeError on an unknown action and lets every exception escape
    def call(self, context: Mapping[str, str]) -> Any:
        action = context.get("action")
        try:
            if action == "columns":
                return _status(0, "OK", self.routes())
            if action == "generate":
                rows = self.generate(context.get("context", ""))
                return _status(0, "OK", rows)
        except (ConstraintError, StoreError) as exc:
            log.warning("%s: %s", self.TABLE, exc)
            return _status(1, f"{self.TABLE}: {exc}")
        except Exception as exc:
            log.exception("%s: request %r failed", self.TABLE, dict(context))
            return _status(1, f"{self.TABLE}: internal error ({type(exc).__name__}: {exc})")
        if action is None:
            return _status(
                1, f"{self.TABLE}: the request has no 'action'; osqueryd sends columns or generate"
            )
        return _status(
            1, f"{self.TABLE}: unknown action {action!r}; table plugins answer 'columns' and 'generate'"
        )

    def generate(self, context: str | Mapping[str, Any]) -> list[dict[str, str]]:
        """The rows for one query, every value a string (``""`` for empty)."""
        pushable = {name: kind for name, kind in _TABLES[self.TABLE] if kind in PUSHDOWN_TYPES}
        constraints = parse_context(context if context else "", pushable)
        names = [name for name, _kind in _TABLES[self.TABLE]]
        return [{name: as_text(row.get(name)) for name in names} for row in self.rows(constraints)]

    def rows(self, constraints: Sequence[Constraint]) -> list[dict[str, object]]:
        raise NotImplementedError

    def store(self) -> Store:
        """The read-only store, opened on first use (the agent may start after the extension)."""
        with self._lock:
            if self._store is None:
                if _Config.database is None:
                    raise StoreError("the extension has no database configured (call configure first)")
                self._store = Store(_Config.database, window_seconds=_Config.window_seconds, read_only=True)
            return self._store

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()


def _query(
    store: Store, table: str, constraints: Sequence[Constraint], limit: int
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = store.query_table(table, constraints, limit=limit)
    if len(rows) >= limit:
        log.warning(
            "%s: the query matched %d rows or more; cut at %d: narrow it by time", table, limit, limit
        )
    return rows


class NetSocketEvents(NetTable):
    TABLE = "net_socket_events"

    def rows(self, constraints: Sequence[Constraint]) -> list[dict[str, object]]:
        return _query(self.store(), "socket_events", constraints, ROW_LIMIT)


class NetFlows(NetTable):
    TABLE = "net_flows"

    def rows(self, constraints: Sequence[Constraint]) -> list[dict[str, object]]:
        return _query(self.store(), "flows", constraints, ROW_LIMIT)


class NetAgentStatus(NetTable):
    TABLE = "net_agent_status"

    def rows(self, constraints: Sequence[Constraint]) -> list[dict[str, object]]:
        return [agent_status_row(self.store())]


def agent_status_row(store: Store) -> dict[str, object]:
    """The one row of ``net_agent_status`` (columns :data:`STATUS_COLUMNS`) for ``store``."""
    info = store.info()
    counters = store.counters()
    counts = store.row_counts()
    row: dict[str, object] = {"database": str(store.path)}
    for key, column, _kind in _INFO_COLUMNS:
        row[column] = info.get(key, "")
    row["socket_events_rows"] = counts["socket_events"]
    row["flows_rows"] = counts["flows"]
    row["aggregated_until"] = store.watermark()
    row.update({name: 0 for name in LOSS_COUNTERS} | counters)
    row["counters"] = json.dumps({name: 0 for name in LOSS_COUNTERS} | counters, sort_keys=True)
    return row


PLUGINS: Final[tuple[type[NetTable], ...]] = (NetSocketEvents, NetFlows, NetAgentStatus)
