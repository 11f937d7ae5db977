"""Query constraints osqueryd passes to a table's ``generate``, parsed into typed values that the store
turns into indexed SQLite predicates (push-down). Pure: no I/O.

osqueryd sends ``{"constraints": [{"name": column, "list": [{"op": code, "expr": text}], "affinity":
type}], "colsUsed": [...]}``. The op codes are SQLite's: 2 ``=``, 4 ``>``, 8 ``<=``, 16 ``<``, 32 ``>=``,
65 LIKE, 66 GLOB, 67 REGEXP. Only comparisons on the table's own columns are pushed down; anything
else is left to osqueryd, which filters every row it gets again, so skipping a constraint can never
return a wrong row, only cost time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = {2: "=", 4: ">", 8: "<=", 16: "<", 32: ">="}
NUMERIC_TYPES = frozenset({"INTEGER", "BIGINT"})
MAX_CONSTRAINTS = 64  # more than any real query has; bounds the work a request can ask for


class ConstraintError(ValueError):
    """The context is not what osqueryd sends; the message says what was wrong."""


@dataclass(frozen=True, slots=True)
class Constraint:
    column: str
    op: str  # one of "=", ">", ">=", "<", "<="
    value: int | str


def _convert(column: str, kind: str, expr: Any) -> int | str | None:
    """The expression as the column's type; None when it cannot be compared as such (not pushed down)."""
    if not isinstance(expr, str | int) or isinstance(expr, bool):
        raise ConstraintError(f"constraint on {column}: expr must be a string, not {type(expr).__name__}")
    if kind in NUMERIC_TYPES:
        try:
            return int(str(expr).strip())
        except ValueError:
            return None  # e.g. pid = 'abc': SQLite's own comparison rules apply; let osqueryd filter
    return str(expr)


def parse_context(context: str | Mapping[str, Any], columns: Mapping[str, str]) -> list[Constraint]:
    """The pushable constraints of one generate request. ``columns`` maps the table's column names to
    their osquery type (TEXT, INTEGER, BIGINT)."""
    if isinstance(context, str):
        if not context.strip():
            return []
        try:
            data: Any = json.loads(context)
        except ValueError as exc:
            raise ConstraintError(f"the query context is not JSON: {exc}") from None
    else:
        data = context
    if not isinstance(data, Mapping):
        raise ConstraintError("the query context must be a JSON object")
    entries = data.get("constraints", [])
    if not isinstance(entries, list):
        raise ConstraintError("'constraints' in the query context must be a list")
    found: list[Constraint] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConstraintError("each constraint must be an object with a 'name'")
        column = entry["name"]
        terms = entry.get("list", [])
        if not isinstance(terms, list):
            raise ConstraintError(f"constraint on {column}: 'list' must be a list")
        for term in terms:
            if not isinstance(term, Mapping):
                raise ConstraintError(f"constraint on {column}: each term must be an object")
            raw_op = term.get("op")
            try:
                op_code = (
                    int(raw_op) if isinstance(raw_op, int | str) and not isinstance(raw_op, bool) else -1
                )
            except ValueError:
                op_code = -1
            if op_code < 0:
                raise ConstraintError(f"constraint on {column}: 'op' must be a number, not {raw_op!r}")
            op = OPERATORS.get(op_code)
            if op is None or column not in columns:
                continue  # LIKE, GLOB, unknown columns: osqueryd filters these itself
            value = _convert(column, columns[column], term.get("expr"))
            if value is None:
                continue
            found.append(Constraint(column, op, value))
            if len(found) > MAX_CONSTRAINTS:
                raise ConstraintError(f"more than {MAX_CONSTRAINTS} constraints in one query")
    return found
