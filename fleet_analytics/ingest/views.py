"""The osquery TLS remote API endpoints: enroll, config, log (``/api/v1/osquery/...``).

Answers follow osquery's documented shapes: enroll ``{"node_key", "node_invalid": false}``, config the
configuration plus ``"node_invalid": false``, log ``{"node_invalid": false}`` (plus what was stored,
which osquery ignores). An unknown node key is HTTP 401 ``{"node_invalid": true, "error"}``, which makes
osqueryd and our forwarder enroll again. Bad requests are JSON errors with a reason and a 4xx code;
PostgreSQL being unavailable is 503 with Retry-After. A log request is answered 200 only after its
transaction committed.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from fleet_analytics.db import load_sql
from fleet_analytics.ingest.filters import FilterContext
from fleet_analytics.ingest.protocol import (
    RequestError,
    decode_body,
    parse_enroll,
    parse_log,
    parse_node_key,
)
from fleet_analytics.ingest.store import (
    BatchOutcome,
    active_secret_hashes,
    enroll_host,
    host_for_node_key,
    new_node_key,
    now,
    prepare,
    secret_accepted,
    store_batch,
)
from fleet_analytics.packs import admin_packs, osquery_config
from fleet_analytics.services import Services

log = logging.getLogger(__name__)

bp = Blueprint("osquery", __name__, url_prefix="/api/v1/osquery")
IDEMPOTENCY_HEADER = "X-Idempotency-Key"


class NodeInvalid(RequestError):
    def __init__(self, reason: str) -> None:
        super().__init__(401, reason)


def services() -> Services:
    found: Services = current_app.extensions["fleet"]
    return found


def read_document() -> tuple[dict[str, Any], int]:
    """The request's JSON object and its size as received."""
    raw = request.get_data(cache=False)  # 413 beyond MAX_CONTENT_LENGTH, 400 when cut short
    document = decode_body(
        raw,
        content_type=request.headers.get("Content-Type"),
        content_encoding=request.headers.get("Content-Encoding"),
        max_decompressed=services().settings.max_decompressed_bytes,
    )
    return document, len(raw)


@bp.post("/enroll")
def enroll() -> Response:
    document, _size = read_document()
    enroll_request = parse_enroll(document)
    fleet = services()
    with fleet.db.transaction() as cur:
        hashes = active_secret_hashes(cur)
        if not hashes:
            raise NodeInvalid(
                "enrollment is closed: no enroll secret is set on the service "
                "(python -m fleet_analytics enroll-secret rotate, or FLEET_ENROLL_SECRET)"
            )
        if not secret_accepted(enroll_request.enroll_secret, hashes):
            log.warning("enroll refused for %r: wrong enroll secret", enroll_request.host_identifier[:80])
            raise NodeInvalid("the enroll secret is not accepted: check the node's enroll secret")
        node_key = new_node_key()
        host_id = enroll_host(cur, enroll_request, node_key)
    log.info("enrolled host %d (%s)", host_id, enroll_request.host_identifier[:80])
    return jsonify({"node_key": node_key, "node_invalid": False})


def batch_seen(host_id: int, key: str) -> bool:
    """A retry of a stored batch is answered without parsing it again."""
    with services().db.transaction() as cur:
        cur.execute(load_sql("batch_seen"), {"host_id": host_id, "idempotency_key": key})
        return cur.fetchone() is not None


def known_host(cur: Any, node_key: str) -> int:
    """The host of a node key; 401 node_invalid (enroll again) for an unknown one."""
    host_id = host_for_node_key(cur, node_key)
    if host_id is None:
        raise NodeInvalid("unknown node key: enroll again")
    return host_id


def authenticate(node_key: str) -> int:
    with services().db.transaction() as cur:
        return known_host(cur, node_key)


@bp.post("/config")
def config() -> Response:
    document, _size = read_document()
    node_key = parse_node_key(document)
    fleet = services()
    with fleet.db.transaction() as cur:
        host_id = known_host(cur, node_key)
        cur.execute(load_sql("host_touch_config"), {"host_id": host_id})
        configuration = osquery_config(fleet.shipped_packs, admin_packs(cur))
    configuration["node_invalid"] = False
    return jsonify(configuration)


@bp.post("/log")
def log_batch() -> Response:
    document, size = read_document()
    fleet = services()
    settings = fleet.settings
    log_request = parse_log(
        document,
        header_key=request.headers.get(IDEMPOTENCY_HEADER),
        max_items=settings.max_items_per_request,
    )
    host_id = authenticate(log_request.node_key)
    if log_request.idempotency_key and batch_seen(host_id, log_request.idempotency_key):
        return jsonify({"node_invalid": False, **BatchOutcome(batch_id=None).as_dict()})
    ctx = FilterContext(
        now=now(),
        max_row_age_seconds=settings.max_row_age_seconds,
        max_clock_skew_seconds=settings.max_clock_skew_seconds,
        max_bytes_per_second=settings.max_bytes_per_second,
    )
    prepared = prepare(log_request, flows_query=settings.flows_query, ctx=ctx)
    outcome = store_batch(
        fleet.db,
        fleet.partitions,
        host_id=host_id,
        request=log_request,
        prepared=prepared,
        body_bytes=size,
    )
    if outcome.quarantined:
        log.info("host %d: %d item(s) quarantined", host_id, outcome.quarantined)
    if outcome.batch_id is not None and outcome.flow_rows and fleet.settings.score_on_ingest and fleet.queue:
        fleet.queue.score_batch(outcome.batch_id)  # after the commit; never fails the request
    return jsonify({"node_invalid": False, **outcome.as_dict()})
