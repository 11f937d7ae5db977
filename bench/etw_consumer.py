"""Cost of the Windows consumer's Python work per ETW event, measured here on Linux.

    .venv/bin/python bench/etw_consumer.py --events 400000 --rounds 7

What the real-time consumer runs for each Microsoft-Windows-Kernel-Network event is Python: reading
the EVENT_RECORD (provider, id, user data: ``record_event``), decoding the payload and adding it to
the per-flow counters under the session's lock, and the source's listener (first sight of a pid,
lifecycle records). All of it runs here on EVENT_RECORDs built in memory with the Windows x64 layout;
only the ctypes thunk Windows calls into (one per event) and ProcessTrace itself are missing.

The mix: 2,000 flows (80 % IPv4), per event 45 % TCP send, 45 % TCP receive, 6 % UDP send/receive,
2 % connects, 2 % disconnects; a drain every 100,000 events (the collector drains every second).
Three paths, interleaved in each round, reported as events per second and as ratios to the baseline:

  baseline   the least any Python consumer does: read the record's user data and unpack pid and size
  decode     record_event + decode_event: what decoding every event in full would cost
  full       record_event + the session's decode-and-count + the source's listener (what runs)

The medians over the rounds, and the CPU share of one core the full path would take at 10k, 50k and
200k events per second.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import json
import random
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extension.sources.etw import EtwSource
from extension.sources.etw_events import PROVIDER_GUID, decode_event
from extension.sources.etw_session import ERROR_CANCELLED, ERROR_SUCCESS, SessionLimits, SessionStats
from extension.sources.etw_win32 import EVENT_RECORD, GUID, record_event


class IdleTraceApi:
    """A session that starts and never delivers (the benchmark calls the callback itself)."""

    def __init__(self) -> None:
        import threading  # noqa: PLC0415

        self.stopped = threading.Event()

    def start_trace(self, name: str, limits: SessionLimits) -> tuple[int, int]:
        return ERROR_SUCCESS, 1

    def stop_trace(self, name: str) -> int:
        self.stopped.set()
        return ERROR_SUCCESS

    def query_trace(self, name: str) -> tuple[int, SessionStats]:
        return ERROR_SUCCESS, SessionStats(0, 0, 0)

    def enable_provider(self, session: int, guid: str, level: int, keywords: int) -> int:
        return ERROR_SUCCESS

    def open_trace(self, name: str, callback: Any) -> tuple[int, int]:
        return ERROR_SUCCESS, 2

    def process_trace(self, trace: int) -> int:
        self.stopped.wait()
        return ERROR_CANCELLED

    def close_trace(self, trace: int) -> int:
        return ERROR_SUCCESS


def make_records(count: int, seed: int) -> list[tuple[Any, Any]]:
    """``count`` EVENT_RECORDs (with their user-data buffers, kept alive) of the mix above."""
    rng = random.Random(seed)
    flows = []
    for index in range(2000):
        v6 = rng.random() < 0.2
        remote = ipaddress.ip_address(
            f"2001:db8::{index:x}" if v6 else f"198.51.{index // 250}.{index % 250 + 1}"
        )
        local = ipaddress.ip_address("fd00::2" if v6 else "10.0.0.2")
        flows.append((v6, 1000 + index % 300, remote.packed, local.packed, 443, 20000 + index))
    provider = GUID.parse(PROVIDER_GUID)
    records = []
    for _ in range(count):
        flow = rng.choice(flows)
        v6, pid, remote_raw, local_raw, rport, lport = flow
        roll = rng.random()
        if roll < 0.45:
            event_id = 10  # TCP send
        elif roll < 0.90:
            event_id = 11  # TCP receive
        elif roll < 0.93:
            event_id = 42  # UDP send
        elif roll < 0.96:
            event_id = 43  # UDP receive
        elif roll < 0.98:
            event_id = 12  # connect
        else:
            event_id = 13  # disconnect
        if v6:
            event_id += 16
        size = rng.choice((0, 64, 1400, 16384, 65536)) if event_id % 16 in (10, 11, 26, 27) else 120
        payload = struct.pack("<II", pid, size) + remote_raw + local_raw + struct.pack(">HH", rport, lport)
        data = ctypes.create_string_buffer(payload, len(payload))
        record = EVENT_RECORD()
        record.EventHeader.ProviderId = provider
        record.EventHeader.EventDescriptor.Id = event_id
        record.EventHeader.ProcessId = 4
        record.UserData = ctypes.cast(data, ctypes.c_void_p)
        record.UserDataLength = len(payload)
        records.append((record, data))
    return records


def run_baseline(records: list[tuple[Any, Any]]) -> float:
    unpack = struct.Struct("<II").unpack_from
    started = time.perf_counter()
    for record, _ in records:
        unpack(ctypes.string_at(record.UserData, record.UserDataLength))
    return time.perf_counter() - started


def run_decode(records: list[tuple[Any, Any]]) -> float:
    started = time.perf_counter()
    for record, _ in records:
        _provider, event_id, data = record_event(record)
        decode_event(event_id, data)
    return time.perf_counter() - started


def run_full(records: list[tuple[Any, Any]], drain_every: int) -> float:
    source = EtwSource(IdleTraceApi(), on_record=lambda _record: None, dns=False)
    callback = source.session._on_event  # what the binding's callback calls for every event
    try:
        started = time.perf_counter()
        ns = time.monotonic_ns()
        for index, (record, _) in enumerate(records):
            provider, event_id, data = record_event(record)
            callback(provider, event_id, data, ns + index)
            if index % drain_every == drain_every - 1:
                source.drain()
                source.poll(0)
        source.drain()
        elapsed = time.perf_counter() - started
    finally:
        source.close()
    if source.decode_errors or source.events != len(records):
        raise SystemExit(f"the full path lost events: {source.events} of {len(records)}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    records = make_records(args.events, args.seed)
    times: dict[str, list[float]] = {"baseline": [], "decode": [], "full": []}
    for _ in range(args.rounds):
        times["baseline"].append(run_baseline(records))
        times["decode"].append(run_decode(records))
        times["full"].append(run_full(records, drain_every=100_000))
    medians = {name: statistics.median(values) for name, values in times.items()}
    per_event_us = {name: 1e6 * value / args.events for name, value in medians.items()}
    result = {
        "events": args.events,
        "rounds": args.rounds,
        "events_per_second": {name: round(args.events / value) for name, value in medians.items()},
        "us_per_event": {name: round(value, 3) for name, value in per_event_us.items()},
        "ratio_to_baseline": {
            name: round(medians[name] / medians["baseline"], 2) for name in ("decode", "full")
        },
        "core_share_of_full_at": {
            f"{rate}/s": round(rate * per_event_us["full"] / 1e6, 3) for rate in (10_000, 50_000, 200_000)
        },
        "python": sys.version.split()[0],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
