"""The durable outbound spool: osquery log lines waiting for the fleet service.

The logger plugin only appends here (it never touches the network); the forwarder takes batches of
the oldest lines and deletes them only after the fleet service acknowledged them. The spool is bounded
in bytes: past the bound the oldest lines go, and that loss is counted (``dropped_rows``,
``dropped_bytes``) and reported, never silent. SQLite in WAL mode, every change one transaction, so a
kill -9 loses nothing that was appended and never deletes what was not acknowledged.

Statements are the named files in ``sql/spool/``.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

SQL_DIR: Final = Path(__file__).resolve().parent.parent / "sql" / "spool"
LOG_TYPES: Final = frozenset({"result", "status"})
EVICT_CHUNK: Final = 1000


class SpoolError(RuntimeError):
    """The spool cannot be used; the message names the cause and the remedy."""


@functools.cache
def load_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Batch:
    log_type: str
    ids: tuple[int, ...]
    lines: tuple[str, ...]
    bytes: int


@dataclass(frozen=True, slots=True)
class SpoolStats:
    rows: int
    bytes: int
    oldest_created: float | None  # epoch s of the oldest line waiting, None when empty
    dropped_rows: int  # evicted by the size bound: never sent
    dropped_bytes: int
    rejected_rows: int = 0  # refused for good by the service (HTTP 413 on a single line): set aside


class Spool:
    def __init__(self, path: Path, *, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        if max_bytes < 256:
            raise ValueError(f"max_bytes must be at least 256, not {max_bytes!r}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")  # an acknowledged append survives power loss
            self._conn.executescript(load_sql("schema"))
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(
                f"cannot open the spool {self.path}: {exc}; set EXTENSION_DATA_DIR to a writable directory"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def append(self, log_type: str, lines: Sequence[str], *, marks: Mapping[str, int] | None = None) -> int:
        """Spool log lines of one type in one transaction, then enforce the size bound. Returns the
        number of lines kept (a line larger than the whole bound is dropped and counted). ``marks``
        are progress marks (see :meth:`mark`) set in the same transaction, so that a producer that
        records how far it got can never spool a line twice nor skip one."""
        if log_type not in LOG_TYPES:
            raise ValueError(f"log type {log_type!r} is not one of {sorted(LOG_TYPES)}")
        now = self.clock()
        rows: list[dict[str, object]] = []
        kept_bytes = 0
        dropped = 0
        dropped_bytes = 0
        for line in lines:
            size = len(line.encode("utf-8"))
            if size > self.max_bytes:
                dropped += 1
                dropped_bytes += size
                continue
            rows.append({"log_type": log_type, "data": line, "bytes": size, "created": now})
            kept_bytes += size
        with self._transaction() as conn:
            conn.executemany(load_sql("append"), rows)
            for key, value in (marks or {}).items():
                conn.execute(load_sql("mark_set"), {"key": f"mark:{key}", "value": value})
            conn.execute(load_sql("state_add"), {"key": "bytes", "delta": kept_bytes})
            if dropped:
                log.warning(
                    "dropped %d log lines larger than the spool bound (%d bytes)", dropped, self.max_bytes
                )
                self._count_drops(conn, dropped, dropped_bytes)
            self._evict(conn)
        return len(rows)

    def _count_drops(self, conn: sqlite3.Connection, rows: int, size: int) -> None:
        conn.execute(load_sql("state_add"), {"key": "dropped_rows", "delta": rows})
        conn.execute(load_sql("state_add"), {"key": "dropped_bytes", "delta": size})

    def _evict(self, conn: sqlite3.Connection) -> None:
        total = int(conn.execute(load_sql("state")).fetchone()["bytes"])
        excess = total - self.max_bytes
        if excess <= 0:
            return
        freed = evicted = 0
        last_id = None
        while freed < excess:
            chunk = conn.execute(load_sql("oldest"), {"limit": EVICT_CHUNK}).fetchall()
            chunk = [row for row in chunk if last_id is None or row["id"] > last_id]
            if not chunk:
                break
            for row in chunk:
                freed += int(row["bytes"])
                evicted += 1
                last_id = int(row["id"])
                if freed >= excess:
                    break
            conn.execute(load_sql("delete_through"), {"id": last_id})
        conn.execute(load_sql("state_add"), {"key": "bytes", "delta": -freed})
        self._count_drops(conn, evicted, freed)
        log.warning(
            "spool over its bound of %d bytes: dropped the %d oldest lines (%d bytes)",
            self.max_bytes,
            evicted,
            freed,
        )

    def mark(self, key: str) -> int | None:
        """A progress mark set by :meth:`append`; None when never set."""
        with self._lock:
            row = self._conn.execute(load_sql("mark_get"), {"key": f"mark:{key}"}).fetchone()
        return None if row is None else int(row["value"])

    def next_batch(self, *, max_bytes: int, max_lines: int = 10_000) -> Batch | None:
        """The oldest lines of the oldest line's log type, up to ``max_bytes`` (at least one line).
        Nothing is removed: call :meth:`ack` once the fleet service acknowledged the batch."""
        with self._lock:
            rows = self._conn.execute(load_sql("batch"), {"limit": max_lines}).fetchall()
        if not rows:
            return None
        ids: list[int] = []
        lines: list[str] = []
        size = 0
        for row in rows:
            if ids and size + int(row["bytes"]) > max_bytes:
                break
            ids.append(int(row["id"]))
            lines.append(str(row["data"]))
            size += int(row["bytes"])
        return Batch(str(rows[0]["log_type"]), tuple(ids), tuple(lines), size)

    def ack(self, batch: Batch) -> None:
        """The fleet service acknowledged ``batch``: delete its lines (one transaction)."""
        with self._transaction() as conn:
            freed = 0
            for row_id in batch.ids:
                deleted = conn.execute(load_sql("ack"), {"id": row_id}).fetchone()
                if deleted is not None:  # may be gone already: evicted while the batch was in flight
                    freed += int(deleted["bytes"])
            conn.execute(load_sql("state_add"), {"key": "bytes", "delta": -freed})

    def reject(self, batch: Batch, reason: str) -> None:
        """The service refuses these lines for good: set them aside in the ``rejected`` table (kept
        for inspection, counted in ``rejected_rows``) so that they no longer hold the spool."""
        with self._transaction() as conn:
            freed = 0
            for row_id in batch.ids:
                conn.execute(load_sql("reject"), {"id": row_id, "reason": reason, "rejected": self.clock()})
                deleted = conn.execute(load_sql("ack"), {"id": row_id}).fetchone()
                if deleted is not None:
                    freed += int(deleted["bytes"])
            conn.execute(load_sql("state_add"), {"key": "bytes", "delta": -freed})
            conn.execute(load_sql("state_add"), {"key": "rejected_rows", "delta": len(batch.ids)})
        log.error(
            "the fleet service refused %d %s lines for good (%s): set aside",
            len(batch.ids),
            batch.log_type,
            reason,
        )

    def stats(self) -> SpoolStats:
        with self._lock:
            row = self._conn.execute(load_sql("state")).fetchone()
        return SpoolStats(
            rows=int(row["rows"]),
            bytes=int(row["bytes"]),
            oldest_created=None if row["oldest_created"] is None else float(row["oldest_created"]),
            dropped_rows=int(row["dropped_rows"]),
            dropped_bytes=int(row["dropped_bytes"]),
            rejected_rows=int(row["rejected_rows"]),
        )
