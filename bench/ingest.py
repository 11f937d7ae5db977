"""Ingest throughput: flow rows per second through the HTTP API, against raw COPY of the same rows into
the same table, in the same run.

    .venv/bin/python bench/ingest.py --rows 200000 --batch 1000 --rounds 3

Every round, on fresh databases copied from one migrated template (the embedded PostgreSQL, or the
server of FLEET_BENCH_DATABASE_URL):
  api   `python -m fleet_analytics serve --workers W` (gunicorn, as deployed) on its own database;
        --hosts enrolled nodes; --clients client threads POST prebuilt gzip bodies of --batch result
        lines each (osquery's event format, one flow row per line, as our forwarder and osqueryd send
        them), each with its own idempotency key, keep-alive connections. Timed from the first POST to
        the last acknowledgement; afterwards the flows table must hold every row.
  copy  the same rows, already sanitised and formatted as COPY text (so only PostgreSQL's work is
        timed), loaded batch by batch, one transaction per batch, by W threads with their own
        connections, into flows of a second database with the same partitions and indexes.
  floor (--floor) the same requests to bench/ingest_floor.py under the same gunicorn settings: HTTP,
        gzip and JSON parsing only, no validation, no database: the least the API can cost.
Reported per round and as medians: rows/s of each and the ratio api/copy; CPU seconds per row by role
(web service, PostgreSQL, this client) over the timed part. The rows are realistic in
size and variety: ~1 KB per row, 60 s windows over the last hour, many processes and destinations,
every row a distinct flow window.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from extension.results import FLOWS_QUERY, result_line  # noqa: E402
from fleet_analytics.db import migrate  # noqa: E402
from fleet_analytics.embedded import EmbeddedPostgres  # noqa: E402
from fleet_analytics.ingest.filters import FilterContext, sanitise_batch  # noqa: E402
from fleet_analytics.ingest.store import epoch_day, flow_line  # noqa: E402

SECRET = "bench-secret"
APPS = [
    ("firefox", "/usr/lib/firefox/firefox", "/usr/lib/firefox/firefox -contentproc -childID 4 -isForBrowser"),
    ("curl", "/usr/bin/curl", "curl -fsSL https://downloads.example.org/pkg.tar.gz"),
    ("apt-get", "/usr/bin/apt-get", "/usr/bin/apt-get -qq update"),
    ("ssh", "/usr/bin/ssh", "ssh -o ServerAliveInterval=30 deploy@build-07.corp.example"),
    ("systemd-resolve", "/usr/lib/systemd/systemd-resolved", "/lib/systemd/systemd-resolved"),
    ("slack", "/usr/lib/slack/slack", "/usr/lib/slack/slack --type=renderer --enable-crash-reporter"),
    ("rclone", "/usr/bin/rclone", "rclone sync /home/alice/Documents remote:backup --transfers 8"),
    ("python3", "/usr/bin/python3.11", "python3 -m pip install --upgrade requests"),
]
SUBDOMAINS = ["www", "img", "static", "edge"]
DOMAINS = ["example.net", "cdn.example.com", "api.example.org", "updates.example.io", "corp.example"]


def make_rows(count: int, hosts: int, seed: int = 7) -> list[list[dict[str, str]]]:
    """Rows per host; every row a distinct flow window."""
    rng = random.Random(seed)
    now = int(time.time())
    base = now // 60 * 60 - 3600
    per_host: list[list[dict[str, str]]] = [[] for _ in range(hosts)]
    for index in range(count):
        host = index % hosts
        name, path, cmdline = rng.choice(APPS)
        window = base + 60 * rng.randrange(0, 59)
        family = 6 if rng.random() < 0.2 else 4
        if family == 4:
            local = f"10.{host // 250}.{host % 250}.{rng.randrange(2, 250)}"
            octets = (
                rng.choice([203, 198, 151]),
                rng.randrange(256),
                rng.randrange(256),
                rng.randrange(1, 255),
            )
            remote = ".".join(map(str, octets))
        else:
            local, remote = (
                f"2001:db8:{host:x}::{rng.randrange(1, 9999):x}",
                f"2606:4700::{rng.randrange(1, 65535):x}",
            )
        first = window + rng.randrange(0, 50)
        row = {
            "window_start": window,
            "window_seconds": 60,
            "pid": 1000 + index,  # distinct key per row
            "process_name": name,
            "process_path": path,
            # one executable per application and version (a fleet runs a few versions of each)
            "process_sha256": hashlib.sha256(f"{path}:{host % 3}".encode()).hexdigest(),
            "uid": rng.choice([0, 1000, 1001]),
            "username": rng.choice(["root", "alice", "bob"]),
            "protocol": "tcp" if rng.random() < 0.85 else "udp",
            "family": family,
            "direction": rng.choice(["outbound", "outbound", "outbound", "inbound"]),
            "local_address": local,
            "local_port": rng.randrange(32768, 61000),
            "remote_address": remote,
            "remote_port": rng.choice([443, 443, 443, 80, 22, 53, 8443]),
            "local_hostname": f"host-{host:04d}.corp.example",
            "remote_hostname": f"{rng.choice(SUBDOMAINS)}{rng.randrange(99)}.{rng.choice(DOMAINS)}",
            "bytes_sent": rng.randrange(40, 200_000),
            "bytes_received": rng.randrange(40, 20_000_000),
            "connections": rng.randrange(0, 4),
            "activity": rng.choice(["data", "data", "connect", "close"]),
            "first_seen": first,
            "last_seen": first + rng.randrange(0, 10),
            "sends": rng.randrange(1, 500),
            "receives": rng.randrange(1, 5000),
            "community_id": "1:" + f"{rng.getrandbits(160):040x}"[:27] + "=",
            "process_start_time": base - rng.randrange(0, 86400),
            "parent_pid": rng.randrange(1, 5000),
            "cmdline": cmdline,
        }
        per_host[host].append({key: str(value) for key, value in row.items()})
    return per_host


Batches = list[tuple[int, list[dict[str, str]]]]  # (host index, rows)


def batches_for(per_host: list[list[dict[str, str]]], batch: int) -> list[tuple[int, list[dict[str, str]]]]:
    out = []
    for host, rows in enumerate(per_host):
        for start in range(0, len(rows), batch):
            out.append((host, rows[start : start + batch]))
    random.Random(3).shuffle(out)
    return out


def cpu_by_role() -> dict[str, float]:
    """CPU seconds used so far by the processes of each role: postgres, the web service, this client."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"postgres": 0.0, "web": 0.0, "client": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if "postgres" in cmdline:
            out["postgres"] += seconds
        elif "fleet_analytics" in cmdline:
            out["web"] += seconds
        elif int(entry.name) == os.getpid():
            out["client"] += seconds
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def db_url(server: str, name: str) -> str:
    base, _, query = server.partition("?")
    return base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


def create_db(server: str, template: str | None) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    admin.close()
    return name


def drop_db(server: str, name: str) -> None:
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def ensure_days(url: str, batches: list[tuple[int, list[dict[str, str]]]]) -> None:
    days = {int(row["window_start"]) // 86400 for _host, rows in batches for row in rows}
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for day in days:
            cur.execute("SELECT fleet_ensure_flow_partition(%s::date)", (epoch_day(day),))
    conn.close()


def run_api(server: str, template: str, batches: Batches, args: Any) -> dict[str, Any]:
    name = create_db(server, template)
    url = db_url(server, name)
    ensure_days(url, batches)
    port = free_port()
    env = {**os.environ, "FLEET_DATABASE_URL": url, "FLEET_ENROLL_SECRET": SECRET}
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleet_analytics",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", serve)
        keys = []
        for host in range(args.hosts):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/osquery/enroll",
                data=json.dumps({"enroll_secret": SECRET, "host_identifier": f"host-{host:04d}"}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                keys.append(json.loads(response.read())["node_key"])
        bodies = request_bodies(batches, keys)
        elapsed, cpu = post_all(port, bodies, args.clients)
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM flows")
            stored = cur.fetchone()[0]
        conn.close()
        total = sum(len(rows) for _host, rows in batches)
        if stored != total:
            raise RuntimeError(f"stored {stored} of {total} rows")
        return {
            "seconds": round(elapsed, 3),
            "rows_per_s": round(total / elapsed),
            "mean_gzip_bytes": round(sum(len(b) for _k, b in bodies) / len(bodies)),
            "cpu_us_per_row": {role: round(seconds / total * 1e6, 1) for role, seconds in cpu.items()},
        }
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        drop_db(server, name)


def run_threads(target: Any, count: int) -> float:
    """Run `count` threads of `target` to the end; the wall time in seconds."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def post_all(port: int, bodies: list[tuple[str, bytes]], clients: int) -> tuple[float, dict[str, float]]:
    """POST every body (keep-alive, `clients` threads); the wall time and the CPU seconds per role."""
    queue = list(reversed(bodies))
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not queue:
                    break
                key, body = queue.pop()
            headers = {
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "X-Idempotency-Key": key,
            }
            connection.request("POST", "/api/v1/osquery/log", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                failures.append(f"{response.status} {answer[:200]!r}")
        connection.close()

    cpu_before = cpu_by_role()
    elapsed = run_threads(client, clients)
    cpu_after = cpu_by_role()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return elapsed, {role: cpu_after[role] - cpu_before[role] for role in cpu_after}


def request_bodies(batches: Batches, keys: list[str]) -> list[tuple[str, bytes]]:
    now = int(time.time())
    bodies = []
    for number, (host, rows) in enumerate(batches):
        lines = [
            json.loads(
                result_line(
                    name=FLOWS_QUERY,
                    columns=row,
                    host_identifier=f"host-{host:04d}",
                    unix_time=now,
                    counter=0,
                )
            )
            for row in rows
        ]
        body = json.dumps(
            {"node_key": keys[host], "log_type": "result", "data": lines, "batch_id": f"b{number}"}
        ).encode()
        bodies.append((f"b{number}", gzip.compress(body, 6)))
    return bodies


def run_floor(batches: Batches, args: Any) -> dict[str, Any]:
    """The same requests to bench/ingest_floor.py under the same gunicorn settings: HTTP, gzip and JSON
    parsing only."""
    port = free_port()
    serve = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--worker-class", "gthread",
            "--threads", "4", "--bind", f"127.0.0.1:{port}", "--chdir", str(ROOT / "bench"),
            "--name", "fleet_analytics-floor", "ingest_floor:app",
        ],
        cwd=ROOT / "bench",
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", serve)
        bodies = request_bodies(batches, ["k"] * args.hosts)
        elapsed, cpu = post_all(port, bodies, args.clients)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
    total = sum(len(rows) for _host, rows in batches)
    return {
        "seconds": round(elapsed, 3),
        "rows_per_s": round(total / elapsed),
        "cpu_us_per_row": {role: round(seconds / total * 1e6, 1) for role, seconds in cpu.items()},
    }


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.2)


def run_copy(server: str, template: str, batches: Batches, args: Any) -> dict[str, Any]:
    name = create_db(server, template)
    url = db_url(server, name)
    ensure_days(url, batches)
    ctx = FilterContext(now=int(time.time()))
    texts = []
    for number, (host, rows) in enumerate(batches):
        sanitised = sanitise_batch(rows, ctx)
        assert not sanitised.rejected
        head = f"{host + 1}\t{number + 1}\t"
        texts.append("\n".join(flow_line(head, row) for row in sanitised.rows) + "\n")
    copy_sql = (ROOT / "sql/fleet/flows_copy.sql").read_text()
    queue = list(reversed(texts))
    lock = threading.Lock()

    def loader() -> None:
        import io  # noqa: PLC0415

        conn = psycopg2.connect(url)
        while True:
            with lock:
                if not queue:
                    break
                text = queue.pop()
            with conn, conn.cursor() as cur:
                cur.copy_expert(copy_sql, io.StringIO(text))
        conn.close()

    elapsed = run_threads(loader, args.workers)
    total = sum(len(rows) for _host, rows in batches)
    drop_db(server, name)
    return {"seconds": round(elapsed, 3), "rows_per_s": round(total / elapsed)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--batch", type=int, default=1000, help="rows per request (the forwarder's 1 MiB is ~1000)"
    )
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, and COPY connections")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time the bare HTTP + gzip + JSON floor (bench/ingest_floor.py)",
    )
    args = parser.parse_args()
    per_host = make_rows(args.rows, args.hosts)
    batches = batches_for(per_host, args.batch)
    external = os.environ.get("FLEET_BENCH_DATABASE_URL")
    directory = None
    pg = None
    if external:
        server = external
    else:
        directory = Path(tempfile.mkdtemp(prefix="bench-pg-", dir="/tmp"))
        pg = EmbeddedPostgres(directory)
        server = pg.start()
    try:
        template = create_db(server, None)
        migrate(db_url(server, template))
        rounds = []
        for number in range(args.rounds):
            order = ("api", "copy") if number % 2 == 0 else ("copy", "api")
            result: dict[str, Any] = {}
            for kind in order:
                result[kind] = (run_api if kind == "api" else run_copy)(server, template, batches, args)
            if args.floor:
                result["floor"] = run_floor(batches, args)
            result["ratio"] = round(result["api"]["rows_per_s"] / result["copy"]["rows_per_s"], 3)
            print(json.dumps({"round": number + 1, **result}), flush=True)
            rounds.append(result)
        drop_db(server, template)
        summary = {
            "rows": args.rows,
            "batch": args.batch,
            "workers": args.workers,
            "clients": args.clients,
            "api_rows_per_s_median": statistics.median(r["api"]["rows_per_s"] for r in rounds),
            "copy_rows_per_s_median": statistics.median(r["copy"]["rows_per_s"] for r in rounds),
            "ratio_median": statistics.median(r["ratio"] for r in rounds),
        }
        if args.floor:
            summary["floor_rows_per_s_median"] = statistics.median(r["floor"]["rows_per_s"] for r in rounds)
        print(json.dumps(summary, indent=2))
    finally:
        if pg is not None:
            pg.stop()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
