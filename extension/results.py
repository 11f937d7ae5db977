"""Standalone mode: the pack's rows as osquery result-log lines, straight into the spool.

On a host without osqueryd (and in the demo), ``python -m extension run`` produces what osqueryd would
log for the pack ``sql/packs/netflow.conf``: each new flow row and each new connection event as an
``added`` line of the differential queries ``pack_netflow_netflow_flows`` and
``pack_netflow_netflow_connection_events``, in osquery's result-log JSON (name, hostIdentifier,
calendarTime, unixTime, epoch, counter, numerics, decorations, columns, action), so the fleet side
cannot tell the difference. How far it got is kept as marks in the spool, set in the same transaction
as the lines: a restart never emits a row twice nor skips one.

Every :data:`STATUS_EVERY` seconds it also spools the agent's status as the pack's
``pack_netflow_netflow_agent_status`` snapshot (the ``net_agent_status`` row).

On hosts where osqueryd runs the pack, set ``EXTENSION_EMIT_RESULTS=false``: osqueryd logs the same
rows through the ``net_forwarder`` logger.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Mapping
from typing import Final

from extension.constraints import Constraint
from extension.spool import Spool
from extension.store import Store

PACK: Final = "netflow"
FLOWS_QUERY: Final = f"pack_{PACK}_netflow_flows"
EVENTS_QUERY: Final = f"pack_{PACK}_netflow_connection_events"
STATUS_QUERY: Final = f"pack_{PACK}_netflow_agent_status"
STATUS_EVERY: Final = 300  # seconds: the pack's interval for its netflow_agent_status snapshot
# the columns of the pack's connection-events query, in its order
EVENT_COLUMNS: Final = (
    "time",
    "activity",
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
    "remote_hostname",
    "community_id",
)
LIFECYCLE: Final = frozenset({"connect", "accept", "connect_failed", "listen", "close"})
STEP: Final = 100_000  # rows read per emit at most, by id range


def as_text(value: object) -> str:
    return "" if value is None else str(value)


def _record(name: str, host_identifier: str, unix_time: int, counter: int) -> dict[str, object]:
    """The fields every line of osquery's result log has."""
    return {
        "name": name,
        "hostIdentifier": host_identifier,
        "calendarTime": time.strftime("%a %b %d %H:%M:%S %Y UTC", time.gmtime(unix_time)),
        "unixTime": unix_time,
        "epoch": 0,
        "counter": counter,
        "numerics": False,
        "decorations": {"host_uuid": "", "hostname": host_identifier},
    }


def snapshot_line(
    *, name: str, rows: list[Mapping[str, object]], host_identifier: str, unix_time: int
) -> str:
    """One line of osquery's result log for a snapshot query (every row of it, in one line)."""
    record = _record(name, host_identifier, unix_time, 0)
    record["snapshot"] = [{key: as_text(value) for key, value in row.items()} for row in rows]
    record["action"] = "snapshot"
    return json.dumps(record, separators=(",", ":"))


def result_line(
    *,
    name: str,
    columns: Mapping[str, object],
    host_identifier: str,
    unix_time: int,
    counter: int,
    action: str = "added",
) -> str:
    """One line of osquery's result log (the differential format, one row per line)."""
    record = _record(name, host_identifier, unix_time, counter)
    record["columns"] = {key: as_text(value) for key, value in columns.items()}
    record["action"] = action
    return json.dumps(record, separators=(",", ":"))


class ResultEmitter:
    def __init__(
        self,
        store: Store,
        spool: Spool,
        *,
        host_identifier: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.spool = spool
        self.host_identifier = host_identifier or socket.gethostname()
        self.clock = clock

    def _new_rows(self, table: str, mark: str) -> tuple[list[dict[str, object]], int]:
        last = self.spool.mark(mark) or 0
        rows = self.store.query_table(
            table, [Constraint("id", ">", last), Constraint("id", "<=", last + STEP)], limit=STEP
        )
        rows.sort(key=lambda row: int(str(row["id"])))
        return rows, int(str(rows[-1]["id"])) if rows else last

    def emit(self) -> int:
        """Spool the rows added since the last call; returns the number of lines spooled."""
        now = int(self.clock())
        flows, flows_mark = self._new_rows("flows", "flows_id")
        lines = [
            result_line(
                name=FLOWS_QUERY,
                columns={key: value for key, value in row.items() if key != "id"},
                host_identifier=self.host_identifier,
                unix_time=now,
                counter=index,
            )
            for index, row in enumerate(flows)
        ]
        events, events_mark = self._new_rows("socket_events", "socket_events_id")
        lines += [
            result_line(
                name=EVENTS_QUERY,
                columns={key: row[key] for key in EVENT_COLUMNS},
                host_identifier=self.host_identifier,
                unix_time=now,
                counter=index,
            )
            for index, row in enumerate(row for row in events if row["activity"] in LIFECYCLE)
        ]
        self.spool.append("result", lines, marks={"flows_id": flows_mark, "socket_events_id": events_mark})
        return len(lines)

    def emit_status(self, row: Mapping[str, object]) -> None:
        """Spool the agent's status as osqueryd logs the pack's ``netflow_agent_status`` snapshot, so the
        fleet sees this host's spool backlog, network state and losses without osqueryd too."""
        line = snapshot_line(
            name=STATUS_QUERY, rows=[row], host_identifier=self.host_identifier, unix_time=int(self.clock())
        )
        self.spool.append("result", [line])
