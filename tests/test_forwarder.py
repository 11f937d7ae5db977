"""The forwarder against a real local HTTP(S) fleet stand-in: osquery's TLS API (enroll, gzip log),
acknowledgement before deletion, the same idempotency key on every retry of a batch (also across a
kill -9), node_invalid -> enroll once again, backoff with full jitter, the network gate and its wake-up."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from extension.forwarder import ENROLL_PATH, LOG_PATH, Forwarder, SendResult, full_jitter, idempotency_key
from extension.spool import Batch, Spool

ROOT = Path(__file__).resolve().parent.parent
SECRET = "enroll-s3cret"

pytestmark = pytest.mark.timeout(30)


@dataclass
class Fleet:
    """What the stand-in service knows and does. ``log_actions``/``enroll_actions`` are consumed one per
    request (then ``ok``): ok, error500, store_then_500, store_then_drop, store_then_slow, not_json,
    node_invalid, node_invalid_401, store_then_hang; for enroll: ok, refuse, no_key, error500."""

    log_actions: list[str] = field(default_factory=list)
    enroll_actions: list[str] = field(default_factory=list)
    node_keys: set[str] = field(default_factory=set)
    enrolls: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)  # every log request: headers + body
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)  # idempotency key -> body, once
    stored_order: list[str] = field(default_factory=list)
    slow_seconds: float = 1.0
    received: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def store(self, key: str, body: dict[str, Any]) -> None:
        with self.lock:
            if key not in self.stored:  # the service's dedupe by idempotency key
                self.stored[key] = body
                self.stored_order.append(key)

    def stored_items(self) -> list[Any]:
        with self.lock:
            return [item for key in self.stored_order for item in self.stored[key]["data"]]


def make_handler(fleet: Fleet) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        def answer(self, status: int, payload: object, raw: bytes | None = None) -> None:
            body = raw if raw is not None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                if self.path == ENROLL_PATH:
                    self.enroll(json.loads(raw))
                elif self.path == LOG_PATH:
                    self.log(raw)
                else:
                    self.answer(404, {"error": "no such path"})
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                pass

        def enroll(self, body: dict[str, Any]) -> None:
            with fleet.lock:
                fleet.enrolls.append(body)
                action = fleet.enroll_actions.pop(0) if fleet.enroll_actions else "ok"
            if action == "refuse" or body.get("enroll_secret") != SECRET:
                self.answer(401, {"node_invalid": True, "error": "bad secret"})
            elif action == "no_key":
                self.answer(200, {"node_invalid": False})
            elif action == "error500":
                self.answer(500, {"error": "boom"})
            else:
                key = f"nk-{len(fleet.enrolls)}"
                with fleet.lock:
                    fleet.node_keys.add(key)
                self.answer(200, {"node_key": key, "node_invalid": False})

        def log(self, raw: bytes) -> None:
            assert self.headers["Content-Encoding"] == "gzip"
            assert self.headers["Content-Type"] == "application/json"
            body = json.loads(gzip.decompress(raw))
            key = self.headers["X-Idempotency-Key"]
            with fleet.lock:
                fleet.requests.append({"key": key, "body": body})
                action = fleet.log_actions.pop(0) if fleet.log_actions else "ok"
                known = body["node_key"] in fleet.node_keys
            fleet.received.set()
            if action.startswith("max_lines:"):
                with fleet.lock:
                    fleet.log_actions.insert(0, action)  # the limit stays for later requests
            if action.startswith("max_lines:") and len(body["data"]) > int(action.split(":")[1]):
                self.answer(413, {"error": "request entity too large"})
            elif action == "node_invalid" or not known:
                self.answer(200, {"node_invalid": True})
            elif action == "node_invalid_401":
                self.answer(401, {"node_invalid": True})
            elif action == "error500":
                self.answer(500, {"error": "boom"})
            elif action == "not_json":
                self.answer(200, None, raw=b"<html>proxy says hi</html>")
            else:
                fleet.store(key, body)
                if action == "store_then_500":
                    self.answer(500, {"error": "database gone after the write"})
                elif action == "store_then_drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif action == "store_then_slow":
                    time.sleep(fleet.slow_seconds)
                    self.answer(200, {"node_invalid": False})
                elif action == "store_then_hang":
                    fleet.release.wait(20)
                    self.close_connection = True
                else:
                    self.answer(200, {"node_invalid": False})

    return Handler


class Server:
    def __init__(self, fleet: Fleet, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), make_handler(fleet))
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def fleet() -> Fleet:
    return Fleet()


@pytest.fixture
def server(fleet: Fleet) -> Iterator[Server]:
    srv = Server(fleet)
    yield srv
    fleet.release.set()
    srv.close()


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "spool.db", max_bytes=1 << 24)
    yield spool
    spool.close()


def result_line(n: int, pad: int = 0) -> str:
    return json.dumps({"name": "pack_netflow_flows", "action": "added", "counter": n, "pad": "x" * pad})


def make_forwarder(spool: Spool, port: int, **kwargs: Any) -> Forwarder:
    options: dict[str, Any] = {
        "base_url": f"http://127.0.0.1:{port}",
        "enroll_secret": SECRET,
        "host_identifier": "laptop-1",
        "ca_file": None,
        "timeout": 2.0,
        "backoff_base": 0.01,
        "backoff_cap": 0.08,
        "idle_interval": 0.05,
    }
    options.update(kwargs)
    return Forwarder(spool, **options)


def drain(forwarder: Forwarder, limit: int = 100) -> list[SendResult]:
    results = []
    for _ in range(limit):
        result = forwarder.send_once()
        results.append(result)
        if result.outcome != "sent":
            return results
    raise AssertionError("the spool did not drain")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_normal_send_gzip_json_exactly_as_spooled(spool: Spool, server: Server, fleet: Fleet) -> None:
    lines = [result_line(n) for n in range(3)]
    spool.append("result", lines)
    status = json.dumps({"severity": 0, "message": "started", "unixTime": 1700000000})
    spool.append("status", [status])
    forwarder = make_forwarder(spool, server.port)
    assert [r.outcome for r in drain(forwarder)] == ["sent", "sent", "idle"]
    assert len(fleet.enrolls) == 1
    enroll = fleet.enrolls[0]
    assert enroll["enroll_secret"] == SECRET and enroll["host_identifier"] == "laptop-1"
    assert isinstance(enroll["host_details"], dict)
    first, second = (r["body"] for r in fleet.requests)
    assert first["node_key"] == "nk-1" and first["log_type"] == "result"
    assert first["data"] == [json.loads(x) for x in lines]
    assert first["batch_id"] == fleet.requests[0]["key"] and len(first["batch_id"]) == 64
    assert second["log_type"] == "status" and second["data"] == [json.loads(status)]
    assert spool.stats().rows == 0 and spool.next_batch(max_bytes=1 << 20) is None
    stats = forwarder.stats()
    assert (stats.batches_sent, stats.lines_sent, stats.consecutive_failures) == (2, 4, 0)
    assert stats.last_success_ts is not None and stats.last_error is None and stats.enrollments == 1


def test_lines_that_are_not_json_objects_go_as_strings_and_are_counted(
    spool: Spool, server: Server, fleet: Fleet
) -> None:
    spool.append("result", [result_line(0), "not json {", "[1, 2]"])
    forwarder = make_forwarder(spool, server.port)
    assert [r.outcome for r in drain(forwarder)] == ["sent", "idle"]
    assert fleet.stored_items() == [json.loads(result_line(0)), "not json {", "[1, 2]"]
    assert forwarder.stats().invalid_lines == 2 and spool.stats().rows == 0


def test_idempotency_key_is_stable_for_a_batch_and_differs_for_reused_ids() -> None:
    batch = Batch("result", (1, 2), ('{"a": 1}', '{"a": 2}'), 16)
    assert idempotency_key("salt", batch) == idempotency_key(
        "salt", Batch("result", (1, 2), ('{"a": 1}', '{"a": 2}'), 16)
    )
    reused = Batch("result", (1, 2), ('{"a": 3}', '{"a": 4}'), 16)  # rowids reused after the spool emptied
    assert idempotency_key("salt", reused) != idempotency_key("salt", batch)
    assert idempotency_key("other", batch) != idempotency_key("salt", batch)
    assert idempotency_key("salt", Batch("status", batch.ids, batch.lines, batch.bytes)) != idempotency_key(
        "salt", batch
    )


class MaxRandom(random.Random):
    """Always draws the top of the interval, to read the backoff ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_server_down_keeps_everything_and_backs_off_then_delivers_in_order(
    spool: Spool, fleet: Fleet
) -> None:
    port = free_port()
    lines = [result_line(n, pad=100) for n in range(20)]
    spool.append("result", lines)
    before = spool.stats()
    forwarder = make_forwarder(
        spool,
        port,
        backoff_base=1.0,
        backoff_cap=8.0,
        rng=MaxRandom(),
        timeout=1.0,
        batch_bytes=len(lines[0]) * 6,
    )
    results = [forwarder.send_once() for _ in range(6)]
    assert all(r.outcome == "failed" for r in results)
    assert [r.ceiling for r in results] == [1, 2, 4, 8, 8, 8]
    assert [r.delay for r in results] == [1, 2, 4, 8, 8, 8]
    assert "cannot reach" in (forwarder.stats().last_error or "")
    assert forwarder.stats().consecutive_failures == 6
    assert spool.stats() == before  # nothing deleted

    seeded = random.Random(7)
    for failures in range(1, 12):
        delay, ceiling = full_jitter(seeded, failures, base=1.0, cap=300.0)
        assert ceiling == min(300.0, 2.0 ** (failures - 1)) and 0.0 <= delay <= ceiling

    srv = Server(fleet, port=port)
    try:
        outcomes = [r.outcome for r in drain(forwarder)]
        assert outcomes == ["sent"] * 4 + ["idle"]
        assert fleet.stored_items() == [json.loads(x) for x in lines]  # everything, in order
        assert spool.stats().rows == 0 and forwarder.stats().consecutive_failures == 0
    finally:
        srv.close()


@pytest.mark.parametrize("action", ["store_then_500", "store_then_drop", "store_then_slow"])
def test_lost_acknowledgement_retry_carries_the_same_key_and_is_stored_once(
    spool: Spool, server: Server, fleet: Fleet, action: str
) -> None:
    fleet.slow_seconds = 0.8
    lines = [result_line(n) for n in range(5)]
    spool.append("result", lines)
    forwarder = make_forwarder(spool, server.port, timeout=0.3)
    fleet.log_actions = [action]
    failed = forwarder.send_once()
    assert failed.outcome == "failed" and failed.error
    if action == "store_then_slow":
        assert "did not answer within 0.3 s" in failed.error
    assert spool.stats().rows == 5  # stored by the server, but not acknowledged: kept
    spool.append("result", [result_line(99)])  # new lines must not join the batch being retried
    assert forwarder.send_once().outcome == "sent"
    keys = [r["key"] for r in fleet.requests[:2]]
    assert keys[0] == keys[1]
    assert fleet.requests[0]["body"] == fleet.requests[1]["body"]
    assert drain(forwarder)[-1].outcome == "idle"
    assert fleet.stored_items() == [json.loads(x) for x in [*lines, result_line(99)]]
    assert spool.stats().rows == 0


def test_node_invalid_enrolls_once_again_and_resends(spool: Spool, server: Server, fleet: Fleet) -> None:
    spool.append("result", [result_line(0)])
    forwarder = make_forwarder(spool, server.port)
    assert forwarder.send_once().outcome == "sent"
    fleet.node_keys.clear()  # the service forgot us
    spool.append("result", [result_line(1)])
    assert forwarder.send_once().outcome == "sent"
    assert len(fleet.enrolls) == 2 and forwarder.stats().enrollments == 2
    retry = fleet.requests[1:]
    assert [r["body"]["node_key"] for r in retry] == ["nk-1", "nk-2"]
    assert retry[0]["key"] == retry[1]["key"]
    assert fleet.stored_items() == [json.loads(result_line(0)), json.loads(result_line(1))]

    fleet.log_actions = ["node_invalid_401", "node_invalid_401"]  # rejected again after enrolling
    spool.append("result", [result_line(2)])
    result = forwarder.send_once()
    assert result.outcome == "failed" and "rejected again" in (result.error or "")
    assert len(fleet.enrolls) == 3 and spool.stats().rows == 1
    assert forwarder.send_once().outcome == "sent"  # a fresh enrollment next time
    assert len(fleet.enrolls) == 4 and spool.stats().rows == 0


@pytest.mark.parametrize(
    ("action", "message"),
    [("refuse", "check the enroll secret"), ("no_key", "no node_key"), ("error500", "HTTP 500")],
)
def test_enroll_failure_is_recorded_and_nothing_is_deleted(
    spool: Spool, server: Server, fleet: Fleet, action: str, message: str
) -> None:
    spool.append("result", [result_line(0)])
    forwarder = make_forwarder(spool, server.port)
    fleet.enroll_actions = [action]
    result = forwarder.send_once()
    assert result.outcome == "failed" and message in (result.error or "")
    assert message in (forwarder.stats().last_error or "")
    assert fleet.requests == [] and spool.stats().rows == 1
    assert forwarder.send_once().outcome == "sent"
    assert spool.stats().rows == 0


def test_an_answer_that_is_not_json_is_an_error_not_a_crash(
    spool: Spool, server: Server, fleet: Fleet
) -> None:
    spool.append("result", [result_line(0)])
    forwarder = make_forwarder(spool, server.port)
    fleet.log_actions = ["not_json"]
    result = forwarder.send_once()
    assert result.outcome == "failed" and "not JSON" in (result.error or "")
    assert spool.stats().rows == 1
    assert forwarder.send_once().outcome == "sent"


def test_not_allowed_sends_nothing_until_allowed_and_woken(
    spool: Spool, server: Server, fleet: Fleet
) -> None:
    allowed = threading.Event()
    wake = threading.Event()
    stop = threading.Event()
    spool.append("result", [result_line(0)])
    forwarder = make_forwarder(spool, server.port, is_allowed=allowed.is_set, wake=wake, idle_interval=60)
    assert forwarder.send_once().outcome == "not_allowed"
    thread = threading.Thread(target=forwarder.run, args=(stop,))
    thread.start()
    try:
        time.sleep(0.3)
        assert fleet.enrolls == [] and fleet.requests == [] and spool.stats().rows == 1
        allowed.set()
        started = time.monotonic()
        wake.set()
        assert wait_for(lambda: spool.stats().rows == 0, timeout=2.0)
        assert time.monotonic() - started < 2.0  # at once, not after idle_interval (60 s)
        assert len(fleet.stored) == 1
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_run_backs_off_while_the_service_fails_then_recovers(
    spool: Spool, server: Server, fleet: Fleet
) -> None:
    stop = threading.Event()
    spool.append("result", [result_line(n) for n in range(3)])
    fleet.log_actions = ["error500"] * 3
    forwarder = make_forwarder(spool, server.port)
    thread = threading.Thread(target=forwarder.run, args=(stop,))
    thread.start()
    try:
        assert wait_for(lambda: spool.stats().rows == 0)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert len(fleet.requests) == 4 and len({r["key"] for r in fleet.requests}) == 1
    assert "HTTP 500" in (forwarder.stats().last_error or "")


def test_batches_are_bounded_in_bytes(spool: Spool, server: Server, fleet: Fleet) -> None:
    lines = [result_line(n, pad=150) for n in range(30)]
    big = result_line(30, pad=5000)
    spool.append("result", [*lines[:10], big, *lines[10:]])
    bound = 1000
    forwarder = make_forwarder(spool, server.port, batch_bytes=bound)
    assert drain(forwarder)[-1].outcome == "idle"
    assert len(fleet.requests) > 5
    for request in fleet.requests:
        sizes = [len(json.dumps(item).encode()) for item in request["body"]["data"]]
        assert sum(sizes) <= bound or len(sizes) == 1
    assert [len(r["body"]["data"]) for r in fleet.requests].count(1) >= 1
    assert fleet.stored_items() == [json.loads(x) for x in [*lines[:10], big, *lines[10:]]]


def test_node_key_and_salt_persist_next_to_the_spool(spool: Spool, server: Server, fleet: Fleet) -> None:
    spool.append("result", [result_line(0)])
    forwarder = make_forwarder(spool, server.port)
    assert forwarder.send_once().outcome == "sent"
    state_path = spool.path.with_name(spool.path.name + ".forwarder.json")
    assert state_path.stat().st_mode & 0o777 == 0o600
    state = json.loads(state_path.read_text())
    assert state["node_key"] == "nk-1" and state["inflight"] is None
    again = make_forwarder(spool, server.port)
    spool.append("result", [result_line(1)])
    assert again.send_once().outcome == "sent"
    assert len(fleet.enrolls) == 1  # the persisted node key was reused
    other = make_forwarder(spool, server.port, base_url=f"http://localhost:{server.port}")
    spool.append("result", [result_line(2)])
    assert other.send_once().outcome == "sent"
    assert len(fleet.enrolls) == 2  # a node key belongs to one service URL


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


def test_https_verifies_against_the_ca_file(
    spool: Spool, fleet: Fleet, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    srv = Server(fleet, tls=context)
    try:
        spool.append("result", [result_line(0)])
        url = f"https://127.0.0.1:{srv.port}"
        untrusted = make_forwarder(spool, srv.port, base_url=url)
        result = untrusted.send_once()
        assert result.outcome == "failed" and "TLS" in (result.error or "")
        assert "CERTIFICATE_VERIFY_FAILED" in (result.error or "")
        assert fleet.enrolls == [] and spool.stats().rows == 1
        trusted = make_forwarder(spool, srv.port, base_url=url, ca_file=cert)
        assert trusted.send_once().outcome == "sent"
        assert spool.stats().rows == 0 and len(fleet.stored) == 1
        spool.append("result", [result_line(1)])
        insecure = make_forwarder(spool, srv.port, base_url=url, verify_tls=False)
        assert insecure.send_once().outcome == "sent"  # verification off (explicitly) also connects
    finally:
        srv.close()


CHILD = """
import sys
from pathlib import Path
from extension.forwarder import Forwarder
from extension.spool import Spool
spool = Spool(Path(sys.argv[1]), max_bytes=1 << 24)
forwarder = Forwarder(spool, base_url=sys.argv[2], enroll_secret=sys.argv[3], host_identifier="laptop-1",
                      ca_file=None, timeout=30)
forwarder.send_once()
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_mid_batch_the_restart_resends_the_same_batch_with_the_same_key(
    tmp_path: Path, fleet: Fleet, server: Server
) -> None:
    path = tmp_path / "spool.db"
    lines = [result_line(n) for n in range(4)]
    spool = Spool(path, max_bytes=1 << 24)
    spool.append("result", lines)
    spool.close()
    fleet.log_actions = ["store_then_hang"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), f"http://127.0.0.1:{server.port}", SECRET],
        cwd=ROOT,
        env=env,
    )
    try:
        assert fleet.received.wait(15), "the child never sent its batch"
        child.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
    fleet.release.set()
    spool = Spool(path, max_bytes=1 << 24)
    try:
        assert spool.stats().rows == 4  # received by the service, never acknowledged: still here
        spool.append("result", [result_line(4)])  # would join the batch if it were re-read
        forwarder = make_forwarder(spool, server.port)
        assert [r.outcome for r in drain(forwarder)] == ["sent", "sent", "idle"]
        assert fleet.requests[0]["key"] == fleet.requests[1]["key"]
        assert fleet.requests[1]["body"]["data"] == [json.loads(x) for x in lines]
        assert len(fleet.enrolls) == 1  # the node key survived the kill
        assert fleet.stored_items() == [json.loads(x) for x in [*lines, result_line(4)]]
        assert spool.stats().rows == 0
    finally:
        spool.close()


def test_http_413_splits_the_batch_and_sets_aside_a_line_it_never_takes(
    spool: Spool, server: Server, fleet: Fleet
) -> None:
    """A service with a smaller request limit than ours: halve until it fits (new batches, new keys),
    keep sending smaller batches; a single line it still refuses is set aside, counted, and the rest
    flows on."""

    def until_idle(forwarder: Forwarder) -> list[str]:
        outcomes: list[str] = []
        for _ in range(50):
            result = forwarder.send_once()
            outcomes.append(result.outcome)
            if result.outcome == "idle":
                return outcomes
            assert result.outcome == "sent" or result.delay == 0.0  # a 413 retries at once
        raise AssertionError(f"the spool did not drain: {outcomes}")

    spool.append("result", [result_line(n) for n in range(8)])
    fleet.log_actions = ["max_lines:2"]
    forwarder = make_forwarder(spool, server.port)
    assert "failed" in until_idle(forwarder)
    assert [item["counter"] for item in fleet.stored_items()] == list(range(8))  # all, in order, once
    assert all(len(body["data"]) <= 2 for body in fleet.stored.values())
    assert spool.stats().rows == 0 and spool.stats().rejected_rows == 0
    # a service that takes nothing any more: the last line is set aside once the batch is down to it
    fleet.log_actions = ["max_lines:0"]
    spool.append("result", [result_line(100), result_line(101)])
    until_idle(forwarder)
    stats = spool.stats()
    assert stats.rows == 0 and stats.rejected_rows == 2
    assert "HTTP 413" in (forwarder.stats().last_error or "")
    assert [item["counter"] for item in fleet.stored_items()] == list(range(8))
