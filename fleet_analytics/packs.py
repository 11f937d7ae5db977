"""osquery packs served by ``/api/v1/osquery/config``: the shipped ones (``sql/packs/*.conf``) and those
added by admins (the ``packs`` table; an admin pack of the same name replaces a shipped one).

:func:`validate_pack` is the one check for both, pure: it names the first problem and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import psycopg2.extensions

from fleet_analytics.db import load_sql
from fleet_analytics.ingest.store import json_text

PACK_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
QUERY_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_INTERVAL: Final = 604800
PACK_KEYS: Final[Mapping[str, type | tuple[type, ...]]] = {
    "queries": dict,
    "platform": str,
    "version": str,
    "discovery": list,
    "shard": int,
    "description": str,
    "oncall": str,
}
QUERY_KEYS: Final[Mapping[str, type | tuple[type, ...]]] = {
    "query": str,
    "interval": int,
    "snapshot": bool,
    "removed": bool,
    "platform": str,
    "version": str,
    "shard": int,
    "denylist": bool,
    "blacklist": bool,
    "description": str,
    "value": str,
}


class PackError(ValueError):
    """A pack is not valid; the message names the key and what is accepted."""


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    words = {dict: "an object", list: "an array", str: "a string", int: "a whole number", bool: "true/false"}
    return " or ".join(words.get(k, k.__name__) for k in kinds)


def _check_type(where: str, value: Any, kind: type | tuple[type, ...]) -> None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise PackError(f"{where} must be {_type_name(kind)}, not {value!r}")
    if not isinstance(value, kinds):
        raise PackError(f"{where} must be {_type_name(kind)}, not {type(value).__name__}")


def _check_keys(where: str, mapping: dict[str, Any], known: Mapping[str, type | tuple[type, ...]]) -> None:
    for key, value in mapping.items():
        if key not in known:
            raise PackError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
        _check_type(f"{where}: {key}", value, known[key])


def validate_pack(name: str, pack: Any) -> dict[str, Any]:
    """The pack, checked: every key known and typed, at least one query, intervals in range."""
    if not PACK_NAME.match(name):
        raise PackError(f"pack name {name!r}: use 1-64 letters, digits, '_', '.', '-' (not first)")
    if not isinstance(pack, dict):
        raise PackError(f"pack {name}: must be a JSON object with a queries object")
    _check_keys(f"pack {name}", pack, PACK_KEYS)
    queries = pack.get("queries")
    if not queries:
        raise PackError(f"pack {name}: queries is missing or empty; add at least one query")
    assert isinstance(queries, dict)
    for query_name, query in queries.items():
        where = f"pack {name}: query {query_name}"
        if not QUERY_NAME.match(query_name):
            raise PackError(f"{where}: use 1-128 letters, digits, '_', '.', '-' in query names")
        if not isinstance(query, dict):
            raise PackError(f"{where}: must be an object with query and interval")
        _check_keys(where, query, QUERY_KEYS)
        if not str(query.get("query", "")).strip():
            raise PackError(f"{where}: query (the SQL) is missing or empty")
        interval = query.get("interval")
        if not isinstance(interval, int) or not 1 <= interval <= MAX_INTERVAL:
            raise PackError(f"{where}: interval must be 1-{MAX_INTERVAL} seconds, not {interval!r}")
        shard = query.get("shard", 100)
        if not 1 <= shard <= 100:
            raise PackError(f"{where}: shard must be 1-100")
    for index, item in enumerate(pack.get("discovery", [])):
        if not isinstance(item, str) or not item.strip():
            raise PackError(f"pack {name}: discovery[{index}] must be a non-empty SQL string")
    if not 1 <= pack.get("shard", 100) <= 100:
        raise PackError(f"pack {name}: shard must be 1-100")
    return pack


def load_pack_file(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PackError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PackError(f"{path}: not valid JSON: {exc}") from None
    return path.stem, validate_pack(path.stem, document)


def shipped_packs(directory: Path) -> dict[str, dict[str, Any]]:
    """The packs of ``directory/*.conf``; a bad file is an error at start, not a silent omission."""
    if not directory.is_dir():
        raise PackError(f"packs directory {directory} does not exist: set FLEET_PACKS_DIR")
    return dict(load_pack_file(path) for path in sorted(directory.glob("*.conf")))


def admin_packs(cur: psycopg2.extensions.cursor) -> dict[str, dict[str, Any]]:
    cur.execute(load_sql("packs_list"))
    return {str(name): pack for name, pack, _updated in cur.fetchall()}


def save_pack(cur: psycopg2.extensions.cursor, name: str, pack: Any) -> None:
    cur.execute(load_sql("pack_upsert"), {"name": name, "pack": json_text(validate_pack(name, pack))})


def delete_pack(cur: psycopg2.extensions.cursor, name: str) -> bool:
    cur.execute(load_sql("pack_delete"), {"name": name})
    return cur.fetchone() is not None


def osquery_config(
    shipped: Mapping[str, dict[str, Any]], admin: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """The configuration a node receives: every pack (admin packs win over shipped ones of the same name)."""
    packs = {**shipped, **admin}
    return {"packs": {name: packs[name] for name in sorted(packs)}}
