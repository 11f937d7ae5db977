"""Constraint push-down: osqueryd's query context parsed into typed constraints, and the indexed
SQLite queries the store runs for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extension.constraints import Constraint, ConstraintError, parse_context
from extension.store import Store
from tests.test_store import W, event

COLUMNS = {"pid": "INTEGER", "time": "BIGINT", "remote_address": "TEXT", "window_start": "BIGINT"}


def context(*constraints: tuple[str, list[tuple[int, object]]]) -> str:
    return json.dumps(
        {
            "constraints": [
                {
                    "name": name,
                    "list": [{"op": op, "expr": expr} for op, expr in terms],
                    "affinity": "INTEGER",
                }
                for name, terms in constraints
            ],
            "colsUsed": ["pid"],
        }
    )


def test_comparisons_are_typed_and_others_left_to_osquery() -> None:
    parsed = parse_context(
        context(
            ("pid", [(2, "42")]),
            ("time", [(4, "1700000000"), (16, "1700000600")]),
            ("window_start", [(32, 60), (8, "120")]),
            ("remote_address", [(2, "203.0.113.9"), (65, "203.%")]),  # LIKE: osqueryd filters it
            ("no_such_column", [(2, "1")]),
            ("pid", [(2, "not a number")]),  # cannot match an INTEGER column as a number: left to osqueryd
        ),
        COLUMNS,
    )
    assert parsed == [
        Constraint("pid", "=", 42),
        Constraint("time", ">", 1700000000),
        Constraint("time", "<", 1700000600),
        Constraint("window_start", ">=", 60),
        Constraint("window_start", "<=", 120),
        Constraint("remote_address", "=", "203.0.113.9"),
    ]


def test_empty_contexts() -> None:
    assert parse_context("", COLUMNS) == []
    assert parse_context("{}", COLUMNS) == []
    assert parse_context({"constraints": []}, COLUMNS) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"constraints": {}}', "must be a list"),
        ('{"constraints": [{"list": []}]}', "with a 'name'"),
        ('{"constraints": [{"name": "pid", "list": 5}]}', "'list' must be a list"),
        ('{"constraints": [{"name": "pid", "list": [{"op": "x", "expr": "1"}]}]}', "'op' must be a number"),
        ('{"constraints": [{"name": "pid", "list": [{"op": 2, "expr": [1]}]}]}', "expr must be a string"),
    ],
)
def test_malformed_contexts_name_the_problem(raw: str, message: str) -> None:
    with pytest.raises(ConstraintError, match=message):
        parse_context(raw, COLUMNS)


def test_too_many_constraints() -> None:
    with pytest.raises(ConstraintError, match="more than 64"):
        parse_context(context(("pid", [(2, str(n)) for n in range(70)])), COLUMNS)


@pytest.fixture
def filled(tmp_path: Path) -> Store:
    store = Store(tmp_path / "netflow.db", window_seconds=W)
    store.insert_batch(
        [
            event(time=t, pid=pid, remote_port=port, bytes_sent=10)
            for t in (100, 130, 170, 250)
            for pid, port in ((7, 443), (8, 53))
        ]
    )
    store.aggregate(now=1000, grace_seconds=0)
    return store


def test_query_table_pushes_constraints_down(filled: Store) -> None:
    rows = filled.query_table("socket_events", [Constraint("pid", "=", 7), Constraint("time", ">", 130)])
    assert sorted((r["pid"], r["time"]) for r in rows) == [(7, 170), (7, 250)]
    flows = filled.query_table(
        "flows", [Constraint("window_start", ">=", 120), Constraint("remote_port", "=", 53)]
    )
    assert sorted((f["window_start"], f["pid"], f["bytes_sent"]) for f in flows) == [
        (120, 8, 20),
        (240, 8, 10),
    ]
    assert len(filled.query_table("flows", [])) == 6
    assert len(filled.query_table("socket_events", [], limit=3)) == 3


def test_query_table_uses_the_indexes(filled: Store) -> None:
    """The composed query is planned on an index for the usual pack constraints, not a full scan."""
    conn = filled._connection()
    for table, column in (("socket_events", "time"), ("socket_events", "pid"), ("flows", "window_start")):
        from extension.store import load_sql  # noqa: PLC0415

        sql = load_sql(f"table_{table}").replace("/*where*/", f"{column} >= :p0")
        plan = " ".join(
            str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, {"p0": 1, "limit": 10})
        )
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (table, column, plan)


def test_query_table_refuses_what_it_cannot_whitelist(filled: Store) -> None:
    with pytest.raises(ValueError, match="cannot filter socket_events on pid; DROP TABLE flows"):
        filled.query_table("socket_events", [Constraint("pid; DROP TABLE flows", "=", 1)])
    with pytest.raises(ValueError, match="cannot filter"):
        filled.query_table("flows", [Constraint("pid", "LIKE", 1)])
    with pytest.raises(ValueError, match="no such table"):
        filled.query_table("agent_state", [])
    assert len(filled.query_table("flows", [])) == 6
