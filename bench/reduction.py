"""Reduction: raw records (socket_events) versus flow rows (flows), in rows and in bytes shipped, for a
realistic mixed workload on loopback, with the real agent at two window lengths in the same run.

    sudo .venv/bin/python bench/reduction.py --seconds 150 --windows 60 10

The benchmark starts one agent (python -m extension run) per --windows value, each with its own
database; both see the same traffic. It then runs the workload, every part a separate process:
  https   a browser-like client against three local TLS servers ("www", "cdn", "api"; self-signed
          certificate made with the openssl CLI): pages of a document, 6-20 assets fetched over up to
          6 parallel keep-alive connections, a few API calls; requests of a few KB up, responses of
          tens of KB down; idle connections are reused within 8 s, else new ones are opened
  dns     a stub resolver asking a local dnspython server for A and AAAA of a few dozen names in
          bursts, one new UDP socket (new source port) per name, as glibc does
  ssh     one long TCP session: keystrokes of 36-52 bytes at 5-20 per second in bursts, echoed, and
          now and then a command whose output comes back in a burst of KB to MB
  bulk    one download of tens of MB over one TCP connection, paced to a home line's 4 MB/s
When the clients are done the servers are stopped, then the agents (SIGTERM: a clean shutdown drains
the last counters and aggregates the open window). Counted per agent, for the rows of the workload's
processes (by pid) and machine-wide: rows of socket_events and of flows, and their size as the JSON
lines that would be shipped (one json.dumps object per row with all its columns, plus a newline), raw
and gzip-compressed; the ratios raw/flows. Also the agents' CPU and peak RSS over the run.
A check: the bytes the flows add up to equal the raw rows' (bytes_conserved).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gzip
import hashlib
import http.client
import http.server
import json
import os
import random
import select
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.agent_resources import (  # noqa: E402
    AgentProcess,
    cpu_seconds,
    exit_on_sigterm,
    kill_group,
    log,
    memory_mb,
)

PYTHON = sys.executable
SCRIPT = Path(__file__).resolve()
LOCALHOST = "127.0.0.1"
SERVER_ROLES = ("https-server", "dns-server", "ssh-server", "bulk-server")
CLIENT_ROLES = ("https-client", "dns-client", "ssh-client", "bulk-client")
SITES = ("www", "cdn", "api")
KEEPALIVE_SERVER_S = 10.0  # the servers close a connection idle this long
KEEPALIVE_CLIENT_S = 8.0  # the browser reuses a connection idle at most this long
BULK_RATE = 4_000_000  # bytes per second of the download
NAMES = [
    f"{host}.{domain}"
    for domain, hosts in (
        ("example-news.com", ("www", "static", "img", "api", "comments")),
        ("shop-example.net", ("www", "cdn", "checkout", "search")),
        ("video-example.org", ("www", "media", "thumbs", "api")),
        ("mail-example.com", ("mail", "imap", "smtp", "contacts")),
        ("social-example.com", ("www", "graph", "static", "chat", "push")),
        ("analytics-example.io", ("collect", "tags", "pixel")),
        ("ads-example.net", ("serve", "sync", "bid", "creative")),
        ("fonts-example.com", ("fonts", "css")),
        ("code-example.dev", ("www", "api", "raw", "objects")),
        ("updates-example.com", ("download", "check", "telemetry")),
    )
    for host in hosts
]


# --- the workload's parts (each runs as `reduction.py --role NAME ...`) ---------------------------


def exit_with_parent(max_seconds: float) -> None:
    """Exit when the orchestrator is gone (this process was re-parented) or after ``max_seconds``:
    the parts run in their own sessions and the servers would otherwise outlive a killed benchmark."""
    parent = os.getppid()
    deadline = time.monotonic() + max_seconds
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(1)
    os._exit(0)


def ready(**facts: object) -> None:
    """Tell the orchestrator this server listens (one JSON line on stdout)."""
    print(json.dumps(facts), flush=True)


class PageHandler(http.server.BaseHTTPRequestHandler):
    """GET or POST /<bytes>: answers that many bytes; HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"
    timeout = KEEPALIVE_SERVER_S
    body = os.urandom(1 << 20)

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.answer()

    def answer(self) -> None:
        try:
            size = min(int(self.path.strip("/")), len(self.body))
        except ValueError:
            size = 0
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("Cache-Control", "max-age=0")
        self.end_headers()
        self.wfile.write(self.body[:size])

    def log_message(self, format: str, *args: Any) -> None:
        pass


def https_server(args: argparse.Namespace) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    ports = []
    for _ in SITES:
        server = http.server.ThreadingHTTPServer((LOCALHOST, 0), PageHandler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        ports.append(server.server_address[1])
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ready(ports=ports)
    threading.Event().wait()  # until SIGTERM


class Browser:
    """Pages from three sites over pooled keep-alive TLS connections, at most 6 per site."""

    def __init__(self, ports: list[int], cert: Path, rng: random.Random) -> None:
        self.ports = dict(zip(SITES, ports, strict=True))
        self.context = ssl.create_default_context(cafile=str(cert))
        self.rng = rng
        self.lock = threading.Lock()
        self.idle: dict[str, list[tuple[http.client.HTTPSConnection, float]]] = {site: [] for site in SITES}
        self.counts: Counter[str] = Counter()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=6)

    def connection(self, site: str) -> http.client.HTTPSConnection:
        with self.lock:
            while self.idle[site]:
                conn, since = self.idle[site].pop()
                if time.monotonic() - since < KEEPALIVE_CLIENT_S:
                    self.counts["reused"] += 1
                    return conn
                conn.close()
            self.counts["opened"] += 1
        return http.client.HTTPSConnection(LOCALHOST, self.ports[site], context=self.context, timeout=10)

    def release(self, site: str, conn: http.client.HTTPSConnection) -> None:
        with self.lock:
            self.idle[site].append((conn, time.monotonic()))

    def fetch(self, site: str, sizes: list[tuple[int, int]]) -> None:
        """Requests (upload bytes, download bytes) in turn over one connection."""
        conn = self.connection(site)
        try:
            for up, down in sizes:
                headers = {
                    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/133.0",
                    "Accept": "*/*",
                    "Cookie": "session=" + "c" * max(up - 200, 0),
                }
                body = b"{" + b"p" * self.rng.randint(300, 3000) + b"}" if site == "api" else None
                conn.request("POST" if body else "GET", f"/{down}", body=body, headers=headers)
                conn.getresponse().read()
                self.counts["requests"] += 1
        except (OSError, http.client.HTTPException):
            self.counts["errors"] += 1
            conn.close()
            return
        self.release(site, conn)

    def page(self) -> None:
        rng = self.rng
        self.fetch("www", [(rng.randint(700, 1800), rng.randint(15_000, 60_000))])
        assets = [(rng.randint(500, 900), rng.randint(3_000, 120_000)) for _ in range(rng.randint(6, 20))]
        parallel = min(6, len(assets))
        jobs = [self.pool.submit(self.fetch, "cdn", assets[i::parallel]) for i in range(parallel)]
        calls = [(rng.randint(400, 1200), rng.randint(500, 8_000)) for _ in range(rng.randint(1, 3))]
        jobs.append(self.pool.submit(self.fetch, "api", calls))
        concurrent.futures.wait(jobs)
        self.counts["pages"] += 1


def https_client(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    browser = Browser(args.ports, args.cert, rng)
    end = time.monotonic() + args.seconds
    next_poll = time.monotonic() + 20
    while time.monotonic() < end:
        browser.page()
        think = time.monotonic() + rng.uniform(2, 12)
        while time.monotonic() < min(think, end):
            if time.monotonic() >= next_poll:  # a page's background refresh
                browser.fetch("api", [(rng.randint(400, 900), rng.randint(300, 2_000))])
                next_poll += 20
            time.sleep(0.2)
    browser.pool.shutdown()
    print(json.dumps(dict(browser.counts)))


def fake_address(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    return f"10.{digest[0]}.{digest[1]}.{digest[2] or 1}"


def dns_server(_args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCALHOST, 0))
    ready(ports=[sock.getsockname()[1]])
    while True:
        packet, peer = sock.recvfrom(4096)
        try:
            query = dns.message.from_wire(packet)
        except Exception:  # a bad query is ignored, as a server would
            continue
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        for question in query.question:
            if question.rdtype == dns.rdatatype.A and question.rdclass == dns.rdataclass.IN:
                name = question.name.to_text(omit_final_dot=True)
                response.answer.append(dns.rrset.from_text(question.name, 300, "IN", "A", fake_address(name)))
        sock.sendto(response.to_wire(), peer)


def dns_client(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    weights = [1 / (rank + 1) for rank in range(len(NAMES))]  # a few names are asked for most
    counts: Counter[str] = Counter()
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        for name in rng.choices(NAMES, weights, k=rng.randint(1, 6)):
            # like glibc: one new socket per lookup, A and AAAA sent together, both answers awaited
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(2)
                sock.connect((LOCALHOST, args.ports[0]))
                for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    wire = dns.message.make_query(name, rdtype).to_wire()
                    sock.send(wire)
                    counts["bytes_sent"] += len(wire)
                try:
                    for _ in range(2):
                        counts["bytes_received"] += len(sock.recv(4096))
                except TimeoutError:
                    counts["timeouts"] += 1
            counts["lookups"] += 1
        time.sleep(rng.uniform(0.5, 6))
    print(json.dumps(dict(counts)))


FRAME = struct.Struct("!BI")  # kind (k: keystroke, o: output request), length of what follows


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 16))
        if not chunk:
            raise ConnectionError("peer closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def serve_terminal(conn: socket.socket) -> None:
    output = os.urandom(1 << 16)
    with conn:
        try:
            while True:
                kind, size = FRAME.unpack(recv_exactly(conn, FRAME.size))
                payload = recv_exactly(conn, size)
                if kind == ord("k"):  # echo the keystroke
                    conn.sendall(FRAME.pack(ord("k"), len(payload)) + payload)
                else:  # a command's output: the size asked for
                    wanted = int(payload)
                    conn.sendall(FRAME.pack(ord("o"), wanted))
                    while wanted:
                        chunk = output[: min(wanted, len(output))]
                        conn.sendall(chunk)
                        wanted -= len(chunk)
        except (ConnectionError, OSError, ValueError):
            return


def ssh_server(_args: argparse.Namespace) -> None:
    listener = socket.create_server((LOCALHOST, 0))
    ready(ports=[listener.getsockname()[1]])
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_terminal, args=(conn,), daemon=True).start()


def ssh_client(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    counts: Counter[str] = Counter()
    end = time.monotonic() + args.seconds
    with socket.create_connection((LOCALHOST, args.ports[0])) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while time.monotonic() < end:
            for _ in range(rng.randint(5, 40)):  # a command line typed at 5-20 keys per second
                payload = os.urandom(rng.choice((36, 36, 44, 52)))
                sock.sendall(FRAME.pack(ord("k"), len(payload)) + payload)
                _, size = FRAME.unpack(recv_exactly(sock, FRAME.size))
                recv_exactly(sock, size)
                counts["keystrokes"] += 1
                counts["bytes_sent"] += FRAME.size + len(payload)
                counts["bytes_received"] += FRAME.size + size
                time.sleep(rng.uniform(0.05, 0.2))
                if time.monotonic() >= end:
                    break
            if rng.random() < 0.4:  # the command prints something: a burst of output
                wanted = rng.randint(2_000, 300_000) if rng.random() < 0.9 else rng.randint(1, 3) << 20
                request = str(wanted).encode()
                sock.sendall(FRAME.pack(ord("o"), len(request)) + request)
                _, size = FRAME.unpack(recv_exactly(sock, FRAME.size))
                recv_exactly(sock, size)
                counts["bursts"] += 1
                counts["bytes_sent"] += FRAME.size + len(request)
                counts["bytes_received"] += FRAME.size + size
            time.sleep(rng.uniform(0.5, 5))  # reading, thinking
    print(json.dumps(dict(counts)))


def bulk_server(_args: argparse.Namespace) -> None:
    listener = socket.create_server((LOCALHOST, 0))
    ready(ports=[listener.getsockname()[1]])
    chunk = os.urandom(1 << 16)
    while True:
        conn, _ = listener.accept()
        with conn:
            wanted = int(conn.recv(64).split(b"\n", 1)[0])
            started = time.monotonic()
            sent = 0
            while sent < wanted:
                piece = chunk[: min(len(chunk), wanted - sent)]
                conn.sendall(piece)
                sent += len(piece)
                delay = started + sent / BULK_RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)


def bulk_client(args: argparse.Namespace) -> None:
    time.sleep(args.seconds * 0.2)  # the download starts a while into the session
    received = 0
    with socket.create_connection((LOCALHOST, args.ports[0])) as sock:
        request = f"{args.bulk_bytes}\n".encode()
        sock.sendall(request)
        while received < args.bulk_bytes:
            data = sock.recv(1 << 16)
            if not data:
                break
            received += len(data)
    print(json.dumps({"bytes_sent": len(request), "bytes_received": received}))


ROLES = {
    "https-server": https_server,
    "https-client": https_client,
    "dns-server": dns_server,
    "dns-client": dns_client,
    "ssh-server": ssh_server,
    "ssh-client": ssh_client,
    "bulk-server": bulk_server,
    "bulk-client": bulk_client,
}


# --- the orchestrator --------------------------------------------------------------------------------


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (openssl CLI)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
    command += " -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    return cert, key


class Workload:
    """The role processes, each in its own session so that a cleanup takes everything down."""

    def __init__(self, args: argparse.Namespace, cert: Path, key: Path) -> None:
        self.args = args
        self.cert, self.key = cert, key
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def start(self, role: str, ports: Iterable[int] = (), seed: int = 0) -> subprocess.Popen[str]:
        command = [PYTHON, str(SCRIPT), "--role", role, "--seconds", str(self.args.seconds)]
        command += ["--cert", str(self.cert), "--key", str(self.key), "--seed", str(seed)]
        command += ["--bulk-bytes", str(self.args.bulk_bytes)]
        command += ["--ports", *map(str, ports)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.processes[role] = process
        return process

    def start_server(self, role: str, timeout: float = 30.0) -> list[int]:
        process = self.start(role)
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if readable else ""
        if not line:
            raise RuntimeError(f"{role} did not start (exit {process.poll()})")
        ports: list[int] = json.loads(line)["ports"]
        return ports

    def finish(self, role: str, timeout: float) -> dict[str, int]:
        process = self.processes[role]
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(process)
            raise RuntimeError(f"{role} did not finish in {timeout:.0f} s") from None
        if process.returncode != 0:
            raise RuntimeError(f"{role} failed (exit {process.returncode})")
        summary: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return summary

    def stop_servers(self) -> None:
        for role in SERVER_ROLES:
            process = self.processes.get(role)
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    kill_group(process)

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                kill_group(process)
            if process.stdout is not None:
                process.stdout.close()


Row = dict[str, Any]  # a database row, column name -> value


def json_lines(rows: list[Row]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None


def sizes(raw: list[Row], flows: list[Row]) -> dict[str, Any]:
    raw_json, flow_json = json_lines(raw), json_lines(flows)
    raw_gzip, flow_gzip = len(gzip.compress(raw_json, 6)), len(gzip.compress(flow_json, 6))
    return {
        "raw_rows": len(raw),
        "flow_rows": len(flows),
        "rows_ratio": ratio(len(raw), len(flows)),
        "raw_json_bytes": len(raw_json),
        "flow_json_bytes": len(flow_json),
        "bytes_ratio": ratio(len(raw_json), len(flow_json)),
        "raw_gzip_bytes": raw_gzip,
        "flow_gzip_bytes": flow_gzip,
        "gzip_bytes_ratio": ratio(raw_gzip, flow_gzip),
    }


def total(rows: list[Row], column: str) -> int:
    return sum(int(row[column]) for row in rows)


def analyse(database: Path, pids: dict[str, int]) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        raw = [dict(row) for row in conn.execute("SELECT * FROM socket_events ORDER BY id")]
        flows = [dict(row) for row in conn.execute("SELECT * FROM flows ORDER BY id")]
    finally:
        conn.close()
    role_of = {pid: role for role, pid in pids.items()}
    ours_raw = [row for row in raw if row["pid"] in role_of]
    ours_flows = [row for row in flows if row["pid"] in role_of]
    workload = sizes(ours_raw, ours_flows)
    workload["windows"] = len({row["window_start"] for row in ours_flows})
    # the aggregation must neither lose nor invent traffic
    workload["bytes_conserved"] = all(
        total(ours_raw, column) == total(ours_flows, column) for column in ("bytes_sent", "bytes_received")
    )
    workload["raw_rows_by_activity"] = dict(Counter(str(row["activity"]) for row in ours_raw))
    by_role: dict[str, Any] = {}
    for role, pid in pids.items():
        role_raw = [row for row in ours_raw if row["pid"] == pid]
        role_flows = [row for row in ours_flows if row["pid"] == pid]
        figures = sizes(role_raw, role_flows)
        figures["captured_bytes_sent"] = total(role_raw, "bytes_sent")
        figures["captured_bytes_received"] = total(role_raw, "bytes_received")
        by_role[role] = figures
    return {"workload": workload, "by_role": by_role, "machine_wide": sizes(raw, flows)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=150.0, help="how long the clients run")
    parser.add_argument("--windows", type=int, nargs="+", default=[60, 10], help="window lengths (s)")
    parser.add_argument("--bulk-bytes", type=int, default=48_000_000, help="size of the download")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bpf-object", type=Path, help="prebuilt object (default: build into the temp dir)")
    parser.add_argument("--agent-root", type=Path, default=ROOT, help="checkout whose agent runs")
    parser.add_argument("--keep", type=Path, help="copy the agents' databases into this directory")
    # internal: one part of the workload
    parser.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    parser.add_argument("--ports", type=int, nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--cert", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role is not None:
        threading.Thread(target=exit_with_parent, args=(args.seconds + 600,), daemon=True).start()
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            ROLES[args.role](args)
        return
    if os.geteuid() != 0:
        sys.exit("error: the benchmark attaches BPF programs: run it as root")
    args.agent_root = args.agent_root.resolve()
    exit_on_sigterm()

    with tempfile.TemporaryDirectory(prefix="netflow-reduction-") as tmp:
        work = Path(tmp)
        if args.bpf_object is None:
            sys.path.insert(0, str(args.agent_root))
            from extension.bpf.build import build_object  # noqa: PLC0415

            args.bpf_object = build_object(work / "bpf")
        cert, key = make_certificate(work)
        agents: dict[int, AgentProcess] = {}
        workload = Workload(args, cert, key)
        try:
            for window in args.windows:
                agents[window] = AgentProcess(
                    work / f"window-{window}",
                    args.bpf_object,
                    agent_root=args.agent_root,
                    window_seconds=window,
                )
            log(
                f"agents running (windows {', '.join(f'{w} s' for w in args.windows)}); starting the workload"
            )
            cpu_before = {window: cpu_seconds(agent.pid) for window, agent in agents.items()}
            started = time.monotonic()
            ports = {role: workload.start_server(role) for role in SERVER_ROLES}
            for index, role in enumerate(CLIENT_ROLES):
                workload.start(role, ports[role.replace("client", "server")], seed=args.seed * 100 + index)
            log(f"workload running for {args.seconds:.0f} s")
            summaries = {role: workload.finish(role, args.seconds + 120) for role in CLIENT_ROLES}
            pids = {role: process.pid for role, process in workload.processes.items()}
            workload.stop_servers()
            time.sleep(2.5)  # the last counters of the servers are drained
            wall = time.monotonic() - started
            for window, agent in agents.items():
                if agent.process.poll() is not None:
                    raise RuntimeError(
                        f"the {window} s agent exited during the run ({agent.process.returncode})"
                    )
            resources = {
                window: {
                    "cpu_pct": 100 * (cpu_seconds(agent.pid) - cpu_before[window]) / wall,
                    "peak_rss_mb": memory_mb(agent.pid)["VmHWM"],
                }
                for window, agent in agents.items()
            }
            for agent in agents.values():
                agent.stop()
            log("agents stopped; counting")
        finally:
            workload.kill_all()
            for agent in agents.values():
                agent.stop()
        configurations: dict[str, object] = {}
        for window, agent in agents.items():
            database = work / f"window-{window}" / "netflow.db"
            figures = analyse(database, pids)
            figures["agent"] = {
                "hook_set": agent.hook_set,
                "cpu_pct": round(resources[window]["cpu_pct"], 3),
                "peak_rss_mb": round(resources[window]["peak_rss_mb"], 1),
                "machine_raw_rows_per_s": round(figures["machine_wide"]["raw_rows"] / wall, 1),
            }
            configurations[f"window_{window}s"] = figures
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                (args.keep / f"netflow-window-{window}.db").write_bytes(database.read_bytes())
        result = {
            "seconds": args.seconds,
            "wall_s": round(wall, 1),
            "seed": args.seed,
            "agent_root": str(args.agent_root),
            "clients": summaries,
            "configurations": configurations,
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
