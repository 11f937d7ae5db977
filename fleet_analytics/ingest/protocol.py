"""osquery's TLS remote API, the request side: bodies, shapes and the result-log formats. Pure.

Requests (docs/wiki/deployment/remote.md in osquery; the same our forwarder sends):

* enroll ``{"enroll_secret", "host_identifier", "host_details": {...}, "platform_type"}``
* config ``{"node_key"}``
* log    ``{"node_key", "log_type": "result" | "status", "data": [item, ...], "batch_id"?}``

Result items come in osquery's three result-log formats, all accepted:

* event (one row per line)   ``{"name", "columns": {...}, "action": "added" | "removed", "unixTime", ...}``
* batch (differential)       ``{"name", "diffResults": {"added": [...], "removed": [...]}, "unixTime", ...}``
* snapshot                   ``{"name", "snapshot": [...], "action": "snapshot", "unixTime", ...}``

Every problem raises :class:`RequestError` (an HTTP status and a reason) for the request as a whole,
or comes back as an :class:`ItemProblem` for one item, which the caller quarantines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import orjson
from isal import isal_zlib  # zlib's format and API; inflates about 3x faster (docs/benchmarks.md)

MAX_KEY_CHARS: Final = 256
MAX_NAME_CHARS: Final = 1024
MAX_IDENTIFIER_CHARS: Final = 255
LOG_TYPES: Final = frozenset({"result", "status"})
ROW_ACTIONS: Final = frozenset({"added", "removed", "snapshot"})
GZIP_ENCODINGS: Final = frozenset({"gzip", "x-gzip"})
# isal's stub declares `error` as an instance; at run time it is the exception class zlib.error mirrors.
INFLATE_ERROR: Final[type[Exception]] = isal_zlib.error  # type: ignore[assignment]


class RequestError(Exception):
    """The request is refused as a whole: ``status`` is the HTTP code, ``reason`` says why and how to fix."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def decode_body(
    body: bytes, *, content_type: str | None, content_encoding: str | None, max_decompressed: int
) -> dict[str, Any]:
    """The JSON object of a request body: checks the content type, undoes gzip within a size limit."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise RequestError(415, f"Content-Type must be application/json, not {content_type or 'missing'}")
    encoding = (content_encoding or "").strip().lower()
    if encoding in GZIP_ENCODINGS:
        body = gunzip(body, max_decompressed)
    elif encoding not in ("", "identity"):
        raise RequestError(415, f"Content-Encoding {content_encoding!r} is not supported: send gzip or none")
    if not body:
        raise RequestError(400, "the request body is empty: send a JSON object")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RequestError(400, f"the body must be a JSON object, not {json_type(document)}")
    return document


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress one or more gzip members; 413 past ``limit`` bytes, 400 when bad or truncated."""
    out: list[bytes] = []
    size = 0
    rest = data
    if not rest:
        raise RequestError(400, "the gzip body is empty")
    while rest:
        decompressor = isal_zlib.decompressobj(wbits=31)
        try:
            chunk = decompressor.decompress(rest, limit - size + 1)
        except INFLATE_ERROR as exc:
            raise RequestError(400, f"the body is not valid gzip: {exc}") from None
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body exceeds {limit} bytes once decompressed: send smaller batches")
        out.append(chunk)
        if not decompressor.eof:
            raise RequestError(400, "the gzip body is truncated: send the whole body")
        rest = decompressor.unused_data
        if rest and rest.strip(b"\x00") == b"":
            break  # zero padding after the last member
    return b"".join(out)


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def text_field(document: dict[str, Any], key: str, *, max_chars: int, required: bool = True) -> str:
    value = document.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        if value is None:
            raise RequestError(400, f"{key} is missing: send it as a string")
        raise RequestError(400, f"{key} must be a string, not {json_type(value)}")
    if required and not value:
        raise RequestError(400, f"{key} is empty")
    if len(value) > max_chars:
        raise RequestError(400, f"{key} is longer than {max_chars} characters")
    if "\x00" in value:
        raise RequestError(400, f"{key} contains a NUL character")
    return value


@dataclass(frozen=True, slots=True)
class EnrollRequest:
    enroll_secret: str
    host_identifier: str
    host_details: dict[str, Any]
    platform_type: str


def parse_enroll(document: dict[str, Any]) -> EnrollRequest:
    secret = text_field(document, "enroll_secret", max_chars=MAX_KEY_CHARS)
    identifier = text_field(document, "host_identifier", max_chars=MAX_IDENTIFIER_CHARS)
    details = document.get("host_details", {})
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise RequestError(400, f"host_details must be an object, not {json_type(details)}")
    platform = document.get("platform_type", "")
    if not isinstance(platform, (str, int)) or isinstance(platform, bool):
        raise RequestError(400, f"platform_type must be a string, not {json_type(platform)}")
    return EnrollRequest(secret, identifier, details, str(platform)[:64])


def parse_node_key(document: dict[str, Any]) -> str:
    return text_field(document, "node_key", max_chars=MAX_KEY_CHARS)


@dataclass(frozen=True, slots=True)
class LogRequest:
    node_key: str
    log_type: str
    data: list[Any]
    idempotency_key: str  # '' when none was sent


def parse_log(document: dict[str, Any], *, header_key: str | None, max_items: int) -> LogRequest:
    node_key = parse_node_key(document)
    log_type = document.get("log_type")
    if log_type not in LOG_TYPES:
        raise RequestError(400, f"log_type must be result or status, not {log_type!r}")
    data = document.get("data")
    if not isinstance(data, list):
        raise RequestError(400, f"data must be an array of log items, not {json_type(data)}")
    if len(data) > max_items:
        raise RequestError(413, f"data has {len(data)} items, more than {max_items}: send smaller batches")
    batch_id = text_field(document, "batch_id", max_chars=MAX_KEY_CHARS, required=False)
    header = (header_key or "").strip()
    if len(header) > MAX_KEY_CHARS or "\x00" in header:
        raise RequestError(400, f"X-Idempotency-Key is longer than {MAX_KEY_CHARS} characters")
    if header and batch_id and header != batch_id:
        raise RequestError(400, "X-Idempotency-Key and batch_id differ: send the same key in both, or one")
    return LogRequest(node_key, str(log_type), data, header or batch_id)


class ResultRow(NamedTuple):  # a tuple: created once per row, cheaply
    name: str
    action: str  # added | removed | snapshot
    unix_time: int
    columns: dict[str, Any]
    decorations: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ItemProblem:
    filter: str
    reason: str
    item: Any
    query_name: str = ""


def _unix_time(item: dict[str, Any]) -> int | None:
    value = item.get("unixTime", 0)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 2**53 else None
    if isinstance(value, str) and value.isdigit() and value.isascii() and len(value) <= 15:
        return int(value)
    return None


def explode_result(item: Any) -> list[ResultRow] | ItemProblem:
    """The rows of one result-log item, in any of osquery's formats, or what is wrong with it."""
    if not isinstance(item, dict):
        return ItemProblem("item_shape", f"a result item must be a JSON object, not {json_type(item)}", item)
    name = item.get("name")
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS or "\x00" in name:
        return ItemProblem("item_shape", "the item has no valid query name (name)", item)
    unix_time = _unix_time(item)
    if unix_time is None:
        reason = f"unixTime {item.get('unixTime')!r} is not epoch seconds"
        return ItemProblem("item_shape", reason, item, name)
    decorations = item.get("decorations") or {}
    if not isinstance(decorations, dict):
        return ItemProblem("item_shape", "decorations must be an object", item, name)
    rows: list[tuple[str, Any]] = []
    if "columns" in item:
        action = item.get("action", "added")
        if action not in ("added", "removed"):
            return ItemProblem("item_shape", f"action {action!r} is not added or removed", item, name)
        rows.append((action, item["columns"]))
    elif "diffResults" in item:
        diff = item["diffResults"]
        if not isinstance(diff, dict):
            return ItemProblem("item_shape", "diffResults must be an object", item, name)
        for action in ("added", "removed"):
            part = diff.get(action, [])
            if not isinstance(part, list):
                return ItemProblem("item_shape", f"diffResults.{action} must be an array", item, name)
            rows.extend((action, columns) for columns in part)
    elif "snapshot" in item:
        snapshot = item["snapshot"]
        if not isinstance(snapshot, list):
            return ItemProblem("item_shape", "snapshot must be an array", item, name)
        rows.extend(("snapshot", columns) for columns in snapshot)
    else:
        return ItemProblem("item_shape", "the item has none of columns, diffResults or snapshot", item, name)
    for _action, columns in rows:
        if not isinstance(columns, dict):
            return ItemProblem("item_shape", f"a row must be an object, not {json_type(columns)}", item, name)
    return [ResultRow(name, action, unix_time, columns, decorations) for action, columns in rows]


@dataclass(frozen=True, slots=True)
class StatusLine:
    severity: int
    filename: str
    line: int
    message: str
    version: str
    unix_time: int
    decorations: dict[str, Any]


def _small_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -(2**31) <= value < 2**31 else None
    if isinstance(value, str) and value.lstrip("-").isdigit() and value.isascii() and len(value) <= 10:
        number = int(value)
        return number if -(2**31) <= number < 2**31 else None
    return None


def parse_status(item: Any, *, max_chars: int = 65536) -> StatusLine | ItemProblem:
    """One status-log line: ``{"severity", "filename", "line", "message", "version", "unixTime", ...}``."""
    if not isinstance(item, dict):
        reason = f"a status item must be a JSON object, not {json_type(item)}"
        return ItemProblem("status_shape", reason, item)
    severity = _small_int(item.get("severity", 0))
    line = _small_int(item.get("line", 0))
    unix_time = _unix_time(item)
    if severity is None or line is None or unix_time is None:
        return ItemProblem("status_shape", "severity, line and unixTime must be whole numbers", item)
    texts = []
    for key in ("filename", "message", "version"):
        value = item.get(key, "")
        if not isinstance(value, str) or len(value) > max_chars or "\x00" in value:
            reason = f"{key} must be a string of at most {max_chars} characters"
            return ItemProblem("status_shape", reason, item)
        texts.append(value)
    decorations = item.get("decorations") or {}
    if not isinstance(decorations, dict):
        return ItemProblem("status_shape", "decorations must be an object", item)
    return StatusLine(severity, texts[0], line, texts[1], texts[2], unix_time, decorations)


def is_flows_query(name: str, flows_query: str) -> bool:
    """``netflow_flows`` itself, or inside a pack: ``pack_<pack>_netflow_flows`` (osquery's default
    delimiter) or ``pack/<pack>/netflow_flows``."""
    if name == flows_query:
        return True
    for delimiter in ("_", "/"):
        if name.startswith("pack" + delimiter) and name.endswith(delimiter + flows_query):
            return len(name) > len("pack") + 2 * len(delimiter) + len(flows_query)
    return False
