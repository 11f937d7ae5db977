"""The outbound spool: append-only, bounded in bytes with counted drops, batches by type and size,
deleted only on acknowledgement, durable across a kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from extension.spool import Spool

ROOT = Path(__file__).resolve().parent.parent


def line(n: int, pad: int = 0) -> str:
    return json.dumps({"name": "netflow_flows", "counter": n, "pad": "x" * pad})


def test_batches_go_oldest_first_by_type_and_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_bytes=1 << 20)
    spool.append("result", [line(n) for n in range(5)])
    spool.append("status", ['{"s": 1}'])
    spool.append("result", [line(5)])
    size = len(line(0))
    batch = spool.next_batch(max_bytes=size * 3)
    assert batch is not None and batch.log_type == "result"
    assert [json.loads(x)["counter"] for x in batch.lines] == [0, 1, 2]
    assert spool.next_batch(max_bytes=size * 3) == batch  # nothing leaves before the acknowledgement
    spool.ack(batch)
    batch = spool.next_batch(max_bytes=1 << 20)
    assert batch is not None and [json.loads(x)["counter"] for x in batch.lines] == [3, 4, 5]
    spool.ack(batch)
    batch = spool.next_batch(max_bytes=1 << 20)
    assert batch is not None and batch.log_type == "status" and batch.lines == ('{"s": 1}',)
    spool.ack(batch)
    assert spool.next_batch(max_bytes=1 << 20) is None
    stats = spool.stats()
    assert (stats.rows, stats.bytes, stats.oldest_created, stats.dropped_rows) == (0, 0, None, 0)


def test_a_line_larger_than_the_batch_bound_still_goes_alone(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_bytes=1 << 20)
    spool.append("result", [line(0, pad=5000), line(1)])
    batch = spool.next_batch(max_bytes=100)
    assert batch is not None and len(batch.lines) == 1 and batch.bytes > 100


def test_the_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    size = len(line(10, pad=100))  # counters 10..34: every line the same size
    spool = Spool(tmp_path / "spool.db", max_bytes=size * 10)
    for n in range(10, 35):
        spool.append("result", [line(n, pad=100)])
    stats = spool.stats()
    assert stats.rows == 10 and stats.bytes == size * 10
    assert (stats.dropped_rows, stats.dropped_bytes) == (15, size * 15)
    batch = spool.next_batch(max_bytes=1 << 20)
    assert batch is not None and [json.loads(x)["counter"] for x in batch.lines] == list(range(25, 35))
    # a line larger than the whole bound is never stored, and counted
    assert spool.append("result", [line(99, pad=size * 20)]) == 0
    assert spool.stats().dropped_rows == 16


def test_ack_of_rows_evicted_while_in_flight(tmp_path: Path) -> None:
    size = len(line(0, pad=100))
    spool = Spool(tmp_path / "spool.db", max_bytes=size * 4)
    spool.append("result", [line(n, pad=100) for n in range(4)])
    batch = spool.next_batch(max_bytes=1 << 20)
    assert batch is not None
    spool.append("result", [line(n, pad=100) for n in range(4, 6)])  # evicts 0 and 1
    spool.ack(batch)
    stats = spool.stats()
    assert stats.rows == 2 and stats.bytes == size * 2 and stats.dropped_rows == 2


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, max_bytes=4096)
    spool.append("result", [line(n, pad=1000) for n in range(6)])
    before = spool.stats()
    spool.close()
    again = Spool(path, max_bytes=4096)
    assert again.stats() == before and before.dropped_rows > 0


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 256"):
        Spool(tmp_path / "spool.db", max_bytes=10)
    spool = Spool(tmp_path / "spool.db", max_bytes=4096)
    with pytest.raises(ValueError, match="log type 'snapshot'"):
        spool.append("snapshot", ["{}"])


def test_kill_9_loses_no_appended_line(tmp_path: Path) -> None:
    """A writer killed at a random moment: every append that returned is there, once."""
    path = tmp_path / "spool.db"
    writer = (
        "import sys\n"
        "from pathlib import Path\n"
        "from extension.spool import Spool\n"
        f"spool = Spool(Path({str(path)!r}), max_bytes=1 << 30)\n"
        "for n in range(1_000_000):\n"
        "    spool.append('result', ['{\"n\": %d}' % n])\n"
        "    print(n, flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", writer], cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    assert process.stdout is not None
    confirmed = -1
    for text in process.stdout:
        confirmed = int(text)
        if confirmed >= 300:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    process.stdout.close()
    spool = Spool(path, max_bytes=1 << 30)
    batch = spool.next_batch(max_bytes=1 << 30, max_lines=1_000_000)
    assert batch is not None
    seen = [json.loads(x)["n"] for x in batch.lines]
    assert seen == list(range(len(seen)))  # in order, no gaps, no duplicates
    assert len(seen) >= confirmed + 1  # everything confirmed (and perhaps one more) is there
    assert spool.stats().rows == len(seen)


def test_marks_move_with_their_append(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_bytes=1 << 20)
    assert spool.mark("flows") is None
    spool.append("result", [line(1)], marks={"flows": 41})
    spool.append("result", [], marks={"flows": 42, "events": 7})
    assert (spool.mark("flows"), spool.mark("events")) == (42, 7)
    with pytest.raises(ValueError):
        spool.append("nope", [line(2)], marks={"flows": 99})
    assert spool.mark("flows") == 42  # nothing of a refused append happened
