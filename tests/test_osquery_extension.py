"""The osquery extension end to end: a test core (tests/osquery_core.py) plays osqueryd over the real
Thrift protocol on a Unix socket, and the extension runs as a subprocess exactly as osqueryd starts it
(``--socket --timeout --interval``). No BPF needed: the database is filled through the store."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from extension import osquery_plugins
from extension.events import Activity, Direction, SocketEvent
from extension.osquery_main import run_extension
from extension.osquery_plugins import NetAgentStatus, NetFlows, table_specs
from extension.settings import Settings
from extension.store import Store
from tests.osquery_core import OsqueryCore, Registration, call_extension
from tests.test_store import event as store_event

ROOT = Path(__file__).resolve().parent.parent
W = 60
T0 = 1_700_000_040  # a window start (multiple of 60)
TABLES = ["net_agent_status", "net_flows", "net_socket_events"]
EQ, GT, LE, LT, GE, LIKE = 2, 4, 8, 16, 32, 65


def event(**overrides: Any) -> SocketEvent:
    """The store tests' valid raw row, at this module's time."""
    return store_event(**{"time": T0 + 5, **overrides})


EVENTS = [
    event(bytes_sent=100, bytes_received=2000, sends=1, receives=2, first_seen=T0 + 4.25, last_seen=T0 + 5.5),
    event(
        time=T0 + 10,
        activity=Activity.CONNECT,
        pid=200,
        process_name="ssh",
        remote_port=22,
        direction=Direction.OUTBOUND,
        username="alice",
        uid=1000,
        process_path="/usr/bin/ssh",
        bytes_sent=3_000_000_000,  # beyond 32 bits: BIGINT
    ),
    event(
        time=T0 + 20, pid=300, process_name="dig", protocol="udp", remote_port=53, remote_address="1.1.1.1"
    ),
    event(time=T0 + W + 1, pid=100, remote_port=8080, bytes_sent=7),
    event(
        time=T0 + W + 2, pid=400, process_name="nginx", family=6, local_address="::1", remote_address="::1"
    ),
    event(time=T0 + 2 * W + 3, pid=100, remote_port=443, bytes_sent=1),  # open window: raw only
]


def make_database(data_dir: Path) -> Path:
    path = data_dir / "netflow.db"
    with Store(path, window_seconds=W) as store:
        store.insert_batch(EVENTS)
        assert store.aggregate(now=T0 + 2 * W + 5, grace_seconds=2) == 5
        store.set_info({"backend": "ebpf", "hook_set": "tracepoint", "started_at": T0, "window_seconds": W})
        store.add_counter("map_evictions", 3)
        store.add_counter("something_new", 2)
    return path


def short_socket_dir() -> Path:
    # a Unix socket path must fit in 108 bytes, and the extension's is "<core socket>.<uuid>":
    # pytest's tmp_path is often too long
    return Path(tempfile.mkdtemp(prefix="oqc-", dir="/tmp"))


@dataclass
class Running:
    core: OsqueryCore
    process: subprocess.Popen[str]
    registration: Registration
    database: Path

    def call(self, table: str, request: dict[str, str]) -> tuple[int, str, list[dict[str, str]]]:
        return call_extension(self.core.socket_path, self.registration.uuid, "table", table, request)

    def generate(self, table: str, *constraints: tuple[str, int, object]) -> list[dict[str, str]]:
        by_column: dict[str, list[dict[str, str]]] = {}
        for column, op, expr in constraints:
            by_column.setdefault(column, []).append({"op": str(op), "expr": str(expr)})
        context = {
            "constraints": [{"name": c, "list": terms, "affinity": "TEXT"} for c, terms in by_column.items()],
            "colsUsed": [],
        }
        code, message, rows = self.call(table, {"action": "generate", "context": json.dumps(context)})
        assert (code, message) == (0, "OK")
        return rows


def start_extension(
    core: OsqueryCore, data_dir: Path, *extra: str, interval: int = 1
) -> subprocess.Popen[str]:
    # the entry point osqueryd's autoloader runs (through the .ext wrapper), with its flags
    argv = [sys.executable, "-m", "extension", "osquery", "--socket", str(core.socket_path), "--timeout", "3"]
    argv += ["--interval", str(interval), *extra]
    env = {"PATH": "/usr/bin:/bin", "EXTENSION_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def stop_process(process: subprocess.Popen[str]) -> tuple[str, str]:
    if process.poll() is None:
        process.kill()
    out, err = process.communicate(timeout=10)
    return out, err


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = short_socket_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    data_dir = tmp_path_factory.mktemp("data")
    database = make_database(data_dir)
    sockets = short_socket_dir()
    core = OsqueryCore(sockets / "osquery.em").start()
    process = start_extension(core, data_dir)
    try:
        try:
            registration = core.wait_for_registration("osquery-netflow", timeout=20)
        except TimeoutError:
            _out, err = stop_process(process)
            pytest.fail(f"the extension did not register: exit {process.returncode}\n{err}")
        yield Running(core, process, registration, database)
    finally:
        stop_process(process)
        core.stop()
        shutil.rmtree(sockets, ignore_errors=True)


def stored(database: Path, table: str) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY id")]


def as_strings(rows: list[dict[str, Any]], table: str) -> list[dict[str, str]]:
    names = [name for name, _kind in table_specs()[table]]
    return [{name: "" if row[name] is None else str(row[name]) for name in names} for row in rows]


def key(rows: list[dict[str, str]]) -> list[str]:
    return sorted(json.dumps(row, sort_keys=True) for row in rows)


# --- specs ---------------------------------------------------------------------------------------


def test_table_specs_follow_the_schema(tmp_path: Path) -> None:
    specs = table_specs()
    assert sorted(specs) == TABLES
    with Store(tmp_path / "netflow.db", window_seconds=W) as store:
        store.close()
    with closing(sqlite3.connect(tmp_path / "netflow.db")) as conn:
        for table, source in (("net_socket_events", "socket_events"), ("net_flows", "flows")):
            schema = [row[1] for row in conn.execute(f"PRAGMA table_info({source})")]
            assert [name for name, _ in specs[table]] == [c for c in schema if c != "id"]
    types = dict(specs["net_flows"])
    assert types["bytes_sent"] == types["window_start"] == types["first_seen"] == "BIGINT"
    assert types["pid"] == types["remote_port"] == "INTEGER"
    assert types["process_name"] == "TEXT"
    assert dict(specs["net_socket_events"])["first_seen"] == "DOUBLE"
    status = dict(specs["net_agent_status"])
    assert status["map_evictions"] == status["aggregated_until"] == "BIGINT"
    assert status["backend"] == "TEXT"


# --- through the real protocol -------------------------------------------------------------------


def test_registers_the_three_tables_and_the_logger(running: Running) -> None:
    registration = running.registration
    assert registration.name == "osquery-netflow"
    assert registration.plugins("table") == TABLES
    assert set(registration.registry) == {"table", "logger"}
    routes = registration.registry["table"]["net_flows"]
    assert [(r["name"], r["type"]) for r in routes] == table_specs()["net_flows"]
    running.core.wait_for_pings(1, timeout=10)  # the extension's watchdog is alive


@pytest.mark.parametrize("table", TABLES)
def test_columns_are_typed(running: Running, table: str) -> None:
    code, message, rows = running.call(table, {"action": "columns"})
    assert (code, message) == (0, "OK")
    assert rows == [{"id": "column", "name": n, "type": t, "op": "0"} for n, t in table_specs()[table]]


FlowFilter = Callable[[dict[str, Any]], bool]


@pytest.mark.parametrize(
    ("constraints", "matches"),
    [
        ((), lambda r: True),
        ((("pid", EQ, 100),), lambda r: r["pid"] == 100),
        ((("remote_port", GT, 22), ("remote_port", LE, 443)), lambda r: 22 < r["remote_port"] <= 443),
        ((("remote_port", LT, 443),), lambda r: r["remote_port"] < 443),
        ((("window_start", GE, T0 + W),), lambda r: r["window_start"] >= T0 + W),
        ((("protocol", EQ, "udp"),), lambda r: r["protocol"] == "udp"),
        ((("process_name", EQ, "ssh"), ("bytes_sent", GT, 2**31)), lambda r: r["process_name"] == "ssh"),
        (
            (("pid", EQ, 100), ("window_start", LT, T0 + W)),
            lambda r: r["pid"] == 100 and r["window_start"] < T0 + W,
        ),
        ((("pid", EQ, 999),), lambda r: False),
        # LIKE is not pushed down: every row comes back and osqueryd filters it itself
        ((("process_name", LIKE, "c%"),), lambda r: True),
    ],
)
def test_generate_flows_pushes_constraints_down(
    running: Running, constraints: tuple[tuple[str, int, object], ...], matches: FlowFilter
) -> None:
    everything = stored(running.database, "flows")
    expected = as_strings([row for row in everything if matches(row)], "net_flows")
    rows = running.generate("net_flows", *constraints)
    assert key(rows) == key(expected)
    assert len(rows) == len(expected)
    for row in rows:
        assert all(isinstance(value, str) for value in row.values())
        assert "None" not in row.values()


def test_generate_flows_values(running: Running) -> None:
    (ssh,) = running.generate("net_flows", ("pid", EQ, 200))
    assert ssh["bytes_sent"] == "3000000000"
    assert ssh["username"] == "alice"
    assert ssh["direction"] == "outbound"
    assert ssh["connections"] == "1"
    assert ssh["window_seconds"] == str(W)
    assert ssh["remote_hostname"] == ""  # empty stays empty
    assert ssh["process_sha256"] == ""
    assert ssh["cmdline"] == ""


def test_generate_socket_events(running: Running) -> None:
    rows = running.generate("net_socket_events", ("time", GE, T0 + W), ("pid", EQ, 100))
    expected = [
        r for r in stored(running.database, "socket_events") if r["time"] >= T0 + W and r["pid"] == 100
    ]
    assert len(expected) == 2
    assert key(rows) == key(as_strings(expected, "net_socket_events"))
    (first,) = running.generate("net_socket_events", ("time", LT, T0 + 6))
    assert first["first_seen"] == str(T0 + 4.25)
    assert first["window_start"] == str(T0)
    assert first["process_path"] == ""


def test_agent_status_row(running: Running) -> None:
    (row,) = running.generate("net_agent_status")
    assert row["database"] == str(running.database)
    assert row["backend"] == "ebpf"
    assert row["hook_set"] == "tracepoint"
    assert row["kernel"] == ""  # never recorded: empty, not "None"
    assert row["window_seconds"] == str(W)
    assert row["socket_events_rows"] == str(len(EVENTS))
    assert row["flows_rows"] == "5"
    assert row["aggregated_until"] == str(T0 + 2 * W)
    assert row["map_evictions"] == "3"
    assert row["ringbuf_lost"] == "0"
    assert json.loads(row["counters"])["something_new"] == 2
    assert set(row) == {name for name, _ in table_specs()["net_agent_status"]}


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        ({"action": "frobnicate"}, "unknown action 'frobnicate'"),
        ({}, "no 'action'"),
        ({"action": "generate", "context": "{not json"}, "not JSON"),
        ({"action": "generate", "context": json.dumps({"constraints": "x"})}, "must be a list"),
    ],
)
def test_bad_requests_answer_an_error_status(running: Running, request_: dict[str, str], needle: str) -> None:
    code, message, rows = running.call("net_flows", request_)
    assert code == 1
    assert needle in message
    assert rows == []
    # and the extension keeps serving
    assert running.call("net_flows", {"action": "columns"})[0] == 0
    assert running.process.poll() is None


def test_unknown_table_answers_an_error_status(running: Running) -> None:
    code, message, _rows = running.call("no_such_table", {"action": "columns"})
    assert code == 1
    assert "does not contain" in message


# --- lifecycle -----------------------------------------------------------------------------------


def test_extension_exits_when_the_core_goes_away(socket_dir: Path, tmp_path: Path) -> None:
    make_database(tmp_path)
    core = OsqueryCore(socket_dir / "osquery.em").start()
    process = start_extension(core, tmp_path, interval=1)
    try:
        registration = core.wait_for_registration("osquery-netflow", timeout=20)
        assert (
            call_extension(core.socket_path, registration.uuid, "table", "net_flows", {"action": "columns"})[
                0
            ]
            == 0
        )
        core.wait_for_pings(1, timeout=10)
        core.stop()
        # the SDK's watchdog notices within one --interval and ends the process with os._exit(1)
        assert process.wait(timeout=15) == 1
    finally:
        _out, err = stop_process(process)
        core.stop()
    assert "Ping received" in err


def test_missing_database_is_an_error_status_until_the_agent_runs(socket_dir: Path, tmp_path: Path) -> None:
    core = OsqueryCore(socket_dir / "osquery.em").start()
    process = start_extension(core, tmp_path)
    try:
        registration = core.wait_for_registration("osquery-netflow", timeout=20)
        request = {"action": "generate", "context": "{}"}
        code, message, _ = call_extension(core.socket_path, registration.uuid, "table", "net_flows", request)
        assert code == 1
        assert "no agent database" in message
        make_database(tmp_path)  # the agent starts later: the next query reads it
        code, message, rows = call_extension(
            core.socket_path, registration.uuid, "table", "net_flows", request
        )
        assert (code, message, len(rows)) == (0, "OK", 5)
    finally:
        stop_process(process)
        core.stop()


def test_missing_socket_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=tmp_path)
    missing = tmp_path / "nothing.em"
    assert run_extension(["--socket", str(missing), "--timeout", "1", "--interval", "1"], settings) == 1
    err = capsys.readouterr().err
    assert f"{missing} does not exist" in err
    assert "--extensions_socket" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "--socket"),
        (["--socket", "/x", "--timeout", "soon"], "not a whole number"),
        (["--socket", "/x", "--interval", "0"], "out of range"),
        (["--socket", "/x", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_exit_2(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_extension(argv, Settings(data_dir=tmp_path)) == 2
    assert needle in capsys.readouterr().err


# --- plugins in process --------------------------------------------------------------------------


def test_plugin_values_are_strings_and_none_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "netflow.db"
    with Store(path, window_seconds=W) as store:
        store.insert_batch([event()])  # no aggregation yet: no watermark
    osquery_plugins.configure(path, window_seconds=W)
    response = NetAgentStatus().call({"action": "generate", "context": ""})
    assert response.status.code == 0
    (row,) = response.response
    assert row["aggregated_until"] == ""
    assert row["backend"] == ""
    assert row["socket_events_rows"] == "1"
    assert NetFlows().call({"action": "generate"}).response == []
    osquery_plugins.configure(tmp_path / "elsewhere.db", window_seconds=W)
    response = NetFlows().call({"action": "generate"})
    assert response.status.code == 1
    assert "no agent database" in response.status.message


def test_refused_registration_exits_1(running: Running, tmp_path: Path) -> None:
    # the test core, like osqueryd, refuses a second extension with the same name
    second = start_extension(running.core, tmp_path)
    try:
        assert second.wait(timeout=20) == 1
    finally:
        _out, err = stop_process(second)
    assert "did not accept the extension: Duplicate extension registered" in err
    assert running.process.poll() is None


# --- the logger plugin -------------------------------------------------------------------------


def call_logger(running: Running, request: dict[str, str]) -> tuple[int, str]:
    code, message, _rows = call_extension(
        running.core.socket_path, running.registration.uuid, "logger", "net_forwarder", request
    )
    return code, message


def test_logger_plugin_is_registered(running: Running) -> None:
    assert running.registration.plugins("logger") == ["net_forwarder"]


def test_logger_requests_as_osqueryd_sends_them(running: Running) -> None:
    from extension.spool import Spool  # noqa: PLC0415

    result = json.dumps({"name": "netflow_flows", "action": "added", "columns": {"pid": "7"}})
    assert call_logger(running, {"string": result, "category": "event"}) == (0, "OK")
    assert call_logger(running, {"snapshot": result}) == (0, "OK")
    status = json.dumps(
        [{"s": 1, "f": "x.cpp", "i": 10, "m": "hello", "c": "5.0.0", "u": 1700000000, "h": "h1"}]
    )
    assert call_logger(running, {"status": "true", "log": status}) == (0, "OK")
    assert call_logger(running, {"init": "osqueryd", "log": status}) == (0, "OK")
    # osqueryd reads the code of the features answer as a bitmask: 1 = wants status logs
    assert call_logger(running, {"action": "features"})[0] == 1
    assert call_logger(running, {"event": "{}"})[0] == 1
    assert call_logger(running, {"status": "true", "log": "not json"})[0] == 1
    assert call_logger(running, {"nothing": "x"})[0] == 1
    spool = Spool(running.database.parent / "spool.db", max_bytes=1 << 20)
    batch = spool.next_batch(max_bytes=1 << 20)
    assert batch is not None and batch.log_type == "result" and batch.lines == (result, result)
    spool.ack(batch)
    batch = spool.next_batch(max_bytes=1 << 20)
    assert batch is not None and batch.log_type == "status" and len(batch.lines) == 2
    line = json.loads(batch.lines[0])
    assert line["message"] == "hello" and line["severity"] == 1 and line["hostIdentifier"] == "h1"
    assert line["unixTime"] == 1700000000 and line["calendarTime"] == "Tue Nov 14 22:13:20 2023 UTC"
    spool.close()
