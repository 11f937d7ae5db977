"""The osquery pack shipped to fleet admins, and the .ext wrapper osqueryd's autoloader runs.

osquery's SQL is SQLite's, so each pack query is run with sqlite3 against views named like the
extension's tables over a real agent database: a query that names a missing column or table, or does
not parse, fails here."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from extension.events import Activity
from extension.osquery_plugins import table_specs
from extension.store import Store
from tests.osquery_core import OsqueryCore
from tests.test_store import W, event

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "sql" / "packs" / "netflow.conf"


def load_pack() -> dict[str, object]:
    pack = json.loads(PACK.read_text())
    assert isinstance(pack, dict)
    return pack


def test_pack_shape() -> None:
    pack = load_pack()
    queries = pack["queries"]
    assert isinstance(queries, dict)
    assert set(queries) == {"netflow_flows", "netflow_connection_events", "netflow_agent_status"}
    for name, query in queries.items():
        assert query["platform"] == "linux" and query["version"], name
        assert query["description"] and query["interval"] >= 60, name
    # differential flows: each new row once, no 'removed' rows as old windows age out
    assert queries["netflow_flows"]["removed"] is False
    assert queries["netflow_flows"]["interval"] == 60  # the default aggregation interval
    assert queries["netflow_agent_status"]["snapshot"] is True


def test_pack_queries_run_against_the_extensions_tables(tmp_path: Path) -> None:
    now = int(time.time())
    database = tmp_path / "netflow.db"
    with Store(database, window_seconds=W) as store:
        store.insert_batch(
            [
                event(time=now - 200, activity=Activity.CONNECT, pid=7),
                event(time=now - 200, pid=7, bytes_sent=500),
                event(time=now - 5000, pid=8, bytes_sent=9),  # older than every query's bound
                event(time=now - 5000, activity=Activity.CONNECT, pid=8),
            ]
        )
        store.aggregate(now=now, grace_seconds=0, include_open=True)
    conn = sqlite3.connect(database)
    conn.execute("CREATE TEMP VIEW net_flows AS SELECT * FROM flows")
    conn.execute("CREATE TEMP VIEW net_socket_events AS SELECT * FROM socket_events")
    status_columns = ", ".join(f"{name} TEXT" for name, _ in table_specs()["net_agent_status"])
    conn.execute(f"CREATE TEMP TABLE net_agent_status ({status_columns})")
    conn.execute("CREATE TEMP TABLE osquery_extensions (name TEXT, type TEXT)")
    conn.execute("INSERT INTO osquery_extensions VALUES ('osquery-netflow', 'extension')")
    pack = load_pack()
    for discovery in pack["discovery"]:  # type: ignore[attr-defined]
        assert conn.execute(discovery).fetchall() == [(1,)]
    queries = pack["queries"]
    assert isinstance(queries, dict)
    flows = conn.execute(queries["netflow_flows"]["query"]).fetchall()
    assert {row[3] for row in flows} == {7}  # pid column; the old window is outside the bound
    events = conn.execute(queries["netflow_connection_events"]["query"]).fetchall()
    assert [(row[1], row[2]) for row in events] == [("connect", 7)]
    conn.execute(queries["netflow_agent_status"]["query"]).fetchall()
    conn.close()


def test_pack_queries_name_only_columns_the_extension_serves() -> None:
    served = {column for columns in table_specs().values() for column, _ in columns}
    query = load_pack()["queries"]["netflow_connection_events"]["query"]  # type: ignore[index]
    selected = query.split("SELECT", 1)[1].split("FROM", 1)[0]
    assert {column.strip() for column in selected.split(",")} <= served


def test_ext_wrapper_registers_with_the_core(tmp_path: Path) -> None:
    """The wrapper osqueryd autoloads: run from its own directory with osqueryd's flags."""
    sockets = Path(tempfile.mkdtemp(prefix="oqe-", dir="/tmp"))
    core = OsqueryCore(sockets / "osquery.em").start()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OSQUERY_NETFLOW_HOME": str(ROOT),
        "EXTENSION_DATA_DIR": str(tmp_path),
    }
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("the wrapper runs the project's .venv, which this checkout does not have")
    wrapper = ROOT / "packaging" / "osquery-netflow.ext"
    process = subprocess.Popen(
        [str(wrapper), "--socket", str(core.socket_path), "--timeout", "3", "--interval", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        registration = core.wait_for_registration("osquery-netflow", timeout=30)
        assert registration.plugins("table") == ["net_agent_status", "net_flows", "net_socket_events"]
    finally:
        process.kill()
        process.communicate(timeout=10)
        core.stop()
        shutil.rmtree(sockets, ignore_errors=True)
