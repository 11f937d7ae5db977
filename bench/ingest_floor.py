"""The floor of the log endpoint, for bench/ingest.py --floor: the same HTTP stack (gunicorn gthread,
Flask) receiving the same gzip bodies, decompressing and parsing them (orjson), and answering, with no
validation and no database. What is left of the service's CPU per row above this is ours to shrink."""

from __future__ import annotations

import zlib

import orjson
from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.post("/api/v1/osquery/log")
def log() -> Response:
    document = orjson.loads(zlib.decompress(request.get_data(cache=False), wbits=31))
    return jsonify({"node_invalid": False, "items": len(document["data"])})


@app.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})
