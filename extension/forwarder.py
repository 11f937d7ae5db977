"""The forwarder: batches from the outbound spool to the fleet service over osquery's TLS remote API.

Protocol (what a stock osqueryd ``--logger_plugin=tls`` speaks, so the fleet service sees one shape):

``POST /api/v1/osquery/enroll``  ``{"enroll_secret", "host_identifier", "host_details"}``
                                 -> ``{"node_key": K, "node_invalid": false}``
``POST /api/v1/osquery/log``     gzip ``{"node_key", "log_type", "data": [...], "batch_id"}``
                                 -> ``{"node_invalid": false}``; ``{"node_invalid": true}`` (with any
                                 status) means the node key is no longer valid: enroll again, once, and
                                 send the same batch once more.

Delivery is at least once, made effectively exactly once by an idempotency key: every batch carries
``X-Idempotency-Key`` (and the same value as ``batch_id`` in the body) and the fleet service stores a key
once. A retry of the same batch carries the same key because:

* the key is derived, not drawn: sha256 over a per-spool random salt, the log type, the batch's spool ids
  and the digest of its lines. Spool ids are SQLite rowids and may be reused once the spool empties; the
  content digest keeps a reused id range with new lines from colliding with an old key.
* the batch's boundaries are pinned: the batch in flight is kept in memory and retried as is (never
  re-read, which could take in lines spooled since), and its ids are written to the state file before the
  first POST, so after a crash or kill -9 the restarted forwarder rebuilds exactly that batch. If the spool
  evicted some of its lines in the meantime (the size bound), the record no longer matches and a new batch
  (with a new key) is formed: the only case in which the service may see a line twice.

Rows leave the spool only after a 2xx answer whose body is a JSON object with ``node_invalid`` false.

A spooled line that is not a JSON object (a bug upstream: osqueryd writes JSON) must neither block the
spool nor vanish: it is sent as a JSON *string* item in ``data`` (the fleet service's validation
quarantines it with its reason) and counted in ``invalid_lines``.

Nothing is sent while ``is_allowed()`` is false (off the enterprise network; extension.netstate decides);
setting ``wake`` makes the loop look again at once. Failures back off exponentially with full jitter:
a delay drawn uniformly from ``[0, min(cap, base * 2**(failures - 1))]``.

State next to the spool (``<spool>.forwarder.json``, mode 0600): the salt, the node key (with the URL it
belongs to) and the batch in flight. Written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import logging
import os
import platform
import random
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal

from extension.spool import Batch, Spool

log = logging.getLogger(__name__)

ENROLL_PATH: Final = "/api/v1/osquery/enroll"
LOG_PATH: Final = "/api/v1/osquery/log"
IDEMPOTENCY_HEADER: Final = "X-Idempotency-Key"
MAX_ANSWER_BYTES: Final = 1 << 20  # the service answers a few bytes of JSON; never read more than this
STOP_POLL_SECONDS: Final = 0.25  # how often a pause looks at the stop event
USER_AGENT: Final = "osquery-netflow-forwarder/0.1"

Outcome = Literal["sent", "idle", "not_allowed", "failed"]


class ForwarderError(RuntimeError):
    """One exchange with the fleet service failed; the message says what and where."""


class NodeInvalidError(ForwarderError):
    """The service does not know our node key (any more)."""


class PayloadTooLargeError(ForwarderError):
    """HTTP 413: the service will not take a request this large."""


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    lines: int = 0  # lines acknowledged by this step
    delay: float = 0.0  # for "failed": seconds to wait before the next attempt (jittered)
    ceiling: float = 0.0  # for "failed": the upper bound the delay was drawn from
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ForwarderStats:
    batches_sent: int = 0
    lines_sent: int = 0
    bytes_sent: int = 0  # compressed request bodies acknowledged
    last_success_ts: float | None = None  # epoch s of the last acknowledged batch
    last_error: str | None = None  # the last failure, kept after later successes for diagnosis
    consecutive_failures: int = 0
    enrollments: int = 0
    invalid_lines: int = 0  # spooled lines that were not JSON objects, sent as strings


@dataclass(frozen=True, slots=True)
class _InFlight:
    batch: Batch
    key: str


def idempotency_key(salt: str, batch: Batch) -> str:
    """The batch's key: the same for the same lines at the same spool ids, different otherwise."""
    digest = hashlib.sha256()
    digest.update(f"{salt}\n{batch.log_type}\n{','.join(map(str, batch.ids))}\n".encode())
    for line in batch.lines:
        digest.update(hashlib.sha256(line.encode("utf-8")).digest())
    return digest.hexdigest()


def data_items(lines: tuple[str, ...]) -> tuple[list[Any], int]:
    """The ``data`` list for a batch: each line parsed; a line that is not a JSON object goes as its raw
    text (a JSON string) so the service can quarantine it. Returns (items, number of such lines)."""
    items: list[Any] = []
    invalid = 0
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if isinstance(item, dict):
            items.append(item)
        else:
            invalid += 1
            items.append(line)
    return items, invalid


def full_jitter(rng: random.Random, failures: int, *, base: float, cap: float) -> tuple[float, float]:
    """(delay, ceiling) after ``failures`` consecutive failures (>= 1)."""
    ceiling = min(cap, base * 2 ** min(max(failures - 1, 0), 62))
    return rng.uniform(0.0, ceiling), ceiling


def default_host_details(host_identifier: str) -> dict[str, Any]:
    uname = platform.uname()
    return {
        "os_version": {"name": uname.system, "version": uname.release, "platform": uname.system.lower()},
        "system_info": {"hostname": socket.gethostname(), "computer_name": host_identifier},
        "osquery_info": {"version": "", "extensions": "netflow-forwarder"},
    }


def _parse_answer(status: int, body: bytes, what: str) -> dict[str, Any]:
    """The service's JSON object answer; ForwarderError for anything else."""
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        snippet = body[:120].decode("utf-8", "replace")
        raise ForwarderError(f"{what}: HTTP {status} with an answer that is not JSON: {snippet!r}") from None
    if not isinstance(answer, dict):
        raise ForwarderError(f"{what}: HTTP {status} with an answer that is not a JSON object")
    node_invalid = answer.get("node_invalid", False)
    if not isinstance(node_invalid, bool):
        raise ForwarderError(f"{what}: HTTP {status}: node_invalid is {node_invalid!r}, not true or false")
    return answer


class Forwarder:
    def __init__(
        self,
        spool: Spool,
        *,
        base_url: str,
        enroll_secret: str,
        host_identifier: str,
        ca_file: Path | None = None,
        verify_tls: bool = True,
        batch_bytes: int = 1 << 20,
        timeout: float = 10,
        is_allowed: Callable[[], bool] = lambda: True,
        wake: threading.Event | None = None,
        state_path: Path | None = None,
        host_details: Mapping[str, Any] | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        idle_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url {base_url!r} must be an http:// or https:// URL with a host")
        if batch_bytes < 1 or timeout <= 0 or backoff_base <= 0 or backoff_cap < backoff_base:
            raise ValueError("batch_bytes, timeout and backoff_base must be positive, backoff_cap >= base")
        if url.scheme == "http":
            log.warning("forwarding to %s without TLS: use https:// outside tests", base_url)
        self.spool = spool
        self.base_url = base_url.rstrip("/")
        self._scheme = url.scheme
        self._host = url.hostname
        self._port = url.port
        self._prefix = url.path.rstrip("/")
        self.enroll_secret = enroll_secret
        self.host_identifier = host_identifier
        self.host_details = dict(host_details or default_host_details(host_identifier))
        self.batch_bytes = batch_bytes
        self.timeout = timeout
        self.is_allowed = is_allowed
        self.wake = wake if wake is not None else threading.Event()
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.idle_interval = idle_interval
        self.clock = clock
        self.monotonic = monotonic
        self.rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not secrets
        self._ssl = self._ssl_context(ca_file, verify_tls) if url.scheme == "https" else None
        self.state_path = state_path or spool.path.with_name(spool.path.name + ".forwarder.json")
        self._send_lock = threading.Lock()  # one exchange at a time (run loop and direct calls)
        self._stats_lock = threading.Lock()
        self._stats = ForwarderStats()
        self._salt, self._node_key, self._inflight = self._load_state()

    # -- state ---------------------------------------------------------------------------------------

    @staticmethod
    def _ssl_context(ca_file: Path | None, verify_tls: bool) -> ssl.SSLContext:
        if not verify_tls:
            log.warning("TLS verification is OFF: the fleet service's identity is not checked")
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        try:
            return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the CA bundle {ca_file}: {exc}") from None

    def _load_state(self) -> tuple[str, str | None, _InFlight | None]:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            state = {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable forwarder state %s: %s", self.state_path, exc)
            state = {}
        if not isinstance(state, dict):
            state = {}
        salt = state.get("salt")
        if not isinstance(salt, str) or not salt:
            salt = secrets.token_hex(16)
        node_key = state.get("node_key")
        if not isinstance(node_key, str) or not node_key or state.get("base_url") != self.base_url:
            node_key = None
        inflight = self._restore_inflight(state.get("inflight"), salt)
        self._salt, self._node_key, self._inflight = salt, node_key, inflight
        self._save_state()
        return salt, node_key, inflight

    def _restore_inflight(self, record: Any, salt: str) -> _InFlight | None:
        """The batch that was in flight when the last process stopped, rebuilt from the spool with the
        same boundaries; None when there was none or the spool no longer holds exactly those lines."""
        if not isinstance(record, dict):
            return None
        ids, size, log_type = record.get("ids"), record.get("bytes"), record.get("log_type")
        if not (isinstance(ids, list) and ids and isinstance(size, int) and isinstance(log_type, str)):
            return None
        batch = self.spool.next_batch(max_bytes=size, max_lines=len(ids))
        if batch is None or list(batch.ids) != ids or batch.log_type != log_type:
            log.info("the batch in flight before the restart is no longer in the spool as it was")
            return None
        log.info("resending the batch in flight before the restart (%d lines)", len(batch.ids))
        return _InFlight(batch, idempotency_key(salt, batch))

    def _save_state(self) -> None:
        inflight = None
        if self._inflight is not None:
            batch = self._inflight.batch
            inflight = {"log_type": batch.log_type, "ids": list(batch.ids), "bytes": batch.bytes}
        state = {
            "salt": self._salt,
            "base_url": self.base_url,
            "node_key": self._node_key,
            "inflight": inflight,
        }
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(state, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.state_path)
        except OSError as exc:  # the spool's ids still bound the batch; only a crash could duplicate
            log.warning("cannot write the forwarder state %s: %s", self.state_path, exc)

    # -- HTTP ------------------------------------------------------------------------------------------

    def _post(self, path: str, body: bytes, headers: Mapping[str, str], what: str) -> dict[str, Any]:
        """POST and return the JSON object answer; NodeInvalidError when it says node_invalid,
        ForwarderError for every other failure (connection, TLS, timeout, non-2xx, bad answer)."""
        connection: http.client.HTTPConnection
        if self._ssl is not None:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=self._ssl
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        all_headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **headers,
        }
        try:
            connection.request("POST", self._prefix + path, body=body, headers=all_headers)
            response = connection.getresponse()
            status = response.status
            answer_body = response.read(MAX_ANSWER_BYTES + 1)
        except ssl.SSLError as exc:
            raise ForwarderError(f"{what}: TLS failure with {self.base_url}: {exc}") from None
        except TimeoutError:
            raise ForwarderError(f"{what}: {self.base_url} did not answer within {self.timeout} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ForwarderError(f"{what}: cannot reach {self.base_url}: {exc!r}") from None
        finally:
            connection.close()
        if len(answer_body) > MAX_ANSWER_BYTES:
            raise ForwarderError(f"{what}: HTTP {status} with an answer over {MAX_ANSWER_BYTES} bytes")
        try:
            answer = _parse_answer(status, answer_body, what)
        except ForwarderError:
            if 200 <= status < 300:
                raise
            raise ForwarderError(f"{what}: HTTP {status} {response.reason}") from None
        if answer.get("node_invalid") is True:
            raise NodeInvalidError(f"{what}: the service says the node key is invalid (HTTP {status})")
        if not 200 <= status < 300:
            detail = answer.get("error") or answer.get("message") or response.reason
            if status == 413:
                raise PayloadTooLargeError(f"{what}: HTTP 413: {str(detail)[:200]}")
            raise ForwarderError(f"{what}: HTTP {status}: {str(detail)[:200]}")
        return answer

    def enroll(self) -> str:
        """Enroll with the secret; keep and persist the node key. ForwarderError when refused."""
        body = json.dumps(
            {
                "enroll_secret": self.enroll_secret,
                "host_identifier": self.host_identifier,
                "host_details": self.host_details,
            }
        ).encode("utf-8")
        try:
            answer = self._post(ENROLL_PATH, body, {}, "enroll")
        except NodeInvalidError:
            raise ForwarderError(
                "enroll: refused by the service (node_invalid): check the enroll secret"
            ) from None
        node_key = answer.get("node_key")
        if not isinstance(node_key, str) or not node_key:
            raise ForwarderError("enroll: the service's answer has no node_key")
        self._node_key = node_key
        self._save_state()
        with self._stats_lock:
            self._stats = replace(self._stats, enrollments=self._stats.enrollments + 1)
        log.info("enrolled with %s as %s", self.base_url, self.host_identifier)
        return node_key

    def _send_batch(self, inflight: _InFlight, node_key: str) -> int:
        """POST one batch; returns the compressed size. Raises like :meth:`_post`."""
        batch = inflight.batch
        items, _invalid = data_items(batch.lines)
        body = json.dumps(
            {"node_key": node_key, "log_type": batch.log_type, "data": items, "batch_id": inflight.key},
            separators=(",", ":"),
        ).encode("utf-8")
        compressed = gzip.compress(body, compresslevel=6)
        headers = {"Content-Encoding": "gzip", IDEMPOTENCY_HEADER: inflight.key}
        self._post(LOG_PATH, compressed, headers, f"log batch of {len(batch.ids)} {batch.log_type} lines")
        return len(compressed)

    # -- one step and the loop --------------------------------------------------------------------------

    def _take_batch(self) -> _InFlight | None:
        if self._inflight is not None:
            return self._inflight
        batch = self.spool.next_batch(max_bytes=self.batch_bytes)
        if batch is None:
            return None
        _items, invalid = data_items(batch.lines)
        if invalid:
            log.warning(
                "%d spooled %s lines are not JSON objects: sending them as strings", invalid, batch.log_type
            )
            with self._stats_lock:
                self._stats = replace(self._stats, invalid_lines=self._stats.invalid_lines + invalid)
        self._inflight = _InFlight(batch, idempotency_key(self._salt, batch))
        self._save_state()  # pin the boundaries before anything can reach the service
        return self._inflight

    def send_once(self) -> SendResult:
        """One step: nothing when not allowed or the spool is empty; else send one batch (enrolling
        first if needed) and delete it from the spool on acknowledgement. Never raises for the
        service's or the network's failures: they come back as ``failed`` with the delay to wait."""
        with self._send_lock:
            if not self.is_allowed():
                return SendResult("not_allowed")
            inflight = self._take_batch()
            if inflight is None:
                return SendResult("idle")
            try:
                size = self._deliver(inflight)
            except PayloadTooLargeError as exc:
                return self._too_large(inflight, str(exc))
            except ForwarderError as exc:
                return self._failed(str(exc))
            self.spool.ack(inflight.batch)
            self._inflight = None
            self._save_state()
            lines = len(inflight.batch.ids)
            with self._stats_lock:
                self._stats = replace(
                    self._stats,
                    batches_sent=self._stats.batches_sent + 1,
                    lines_sent=self._stats.lines_sent + lines,
                    bytes_sent=self._stats.bytes_sent + size,
                    last_success_ts=self.clock(),
                    consecutive_failures=0,
                )
            log.debug("sent %d %s lines (%d bytes gzip)", lines, inflight.batch.log_type, size)
            return SendResult("sent", lines=lines)

    def _deliver(self, inflight: _InFlight) -> int:
        node_key = self._node_key or self.enroll()
        try:
            return self._send_batch(inflight, node_key)
        except NodeInvalidError:
            log.info("node key rejected: enrolling again, then resending the batch once")
            self._node_key = None
            self._save_state()
        node_key = self.enroll()
        try:
            return self._send_batch(inflight, node_key)
        except NodeInvalidError:
            self._node_key = None
            self._save_state()
            raise ForwarderError("log: the node key was rejected again right after enrolling") from None

    def _too_large(self, inflight: _InFlight, error: str) -> SendResult:
        """HTTP 413: send half the batch next (and smaller batches from now on); a single line the
        service still refuses is set aside in the spool's rejected table, so it cannot hold the rest."""
        batch = inflight.batch
        if len(batch.ids) == 1:
            self.spool.reject(batch, error)
            self._inflight = None
        else:
            half = len(batch.ids) // 2
            smaller = Batch(
                batch.log_type,
                batch.ids[:half],
                batch.lines[:half],
                sum(len(line.encode("utf-8")) for line in batch.lines[:half]),
            )
            self._inflight = _InFlight(smaller, idempotency_key(self._salt, smaller))
            self.batch_bytes = max(1024, min(self.batch_bytes, smaller.bytes))
        self._save_state()
        with self._stats_lock:
            self._stats = replace(self._stats, last_error=error)
        log.warning("%s: sending smaller batches (at most %d bytes)", error, self.batch_bytes)
        return SendResult("failed", delay=0.0, ceiling=0.0, error=error)

    def _failed(self, error: str) -> SendResult:
        with self._stats_lock:
            failures = self._stats.consecutive_failures + 1
            self._stats = replace(self._stats, consecutive_failures=failures, last_error=error)
        delay, ceiling = full_jitter(self.rng, failures, base=self.backoff_base, cap=self.backoff_cap)
        log.warning("forwarding failed (%d in a row), next try in %.1f s: %s", failures, delay, error)
        return SendResult("failed", delay=delay, ceiling=ceiling, error=error)

    def stats(self) -> ForwarderStats:
        with self._stats_lock:
            return self._stats

    def _pause(self, seconds: float, stop: threading.Event) -> None:
        """Wait ``seconds``, returning early when woken (``wake``) or stopped."""
        deadline = self.monotonic() + seconds
        while not stop.is_set():
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                return
            if self.wake.wait(min(remaining, STOP_POLL_SECONDS)):
                self.wake.clear()
                return

    def run(self, stop: threading.Event) -> None:
        """Send until ``stop`` is set: drain while batches are acknowledged, back off on failures,
        look again every ``idle_interval`` or at once when ``wake`` is set."""
        log.info("forwarder started: %s", self.base_url)
        while not stop.is_set():
            try:
                result = self.send_once()
            except Exception:  # a spool or programming error: log it, keep the thread alive
                log.exception("forwarder step failed")
                result = self._failed("internal error (see the log)")
            if result.outcome == "sent":
                continue
            self._pause(result.delay if result.outcome == "failed" else self.idle_interval, stop)
        log.info("forwarder stopped")
