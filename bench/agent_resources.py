"""Agent CPU and memory: the real agent (python -m extension run) while the loopback workload
(bench/workload.py) runs paced at given rates, against the same agent left idle, in the same run.

    sudo .venv/bin/python bench/agent_resources.py --rounds 3 --rates 10000 100000 --flows 250

Per round, each mode in turn (rotated, so drift on a shared machine hits all alike), each with a fresh
agent and a fresh database:
  idle         the agent attached, no workload, for --seconds
  <rate>/s     the workload paced at that many sends per second: 64-byte sends, TCP then UDP, half
               each (workload.py runs its TCP and UDP loops one after the other, each at --rate)
  <n> flows    n connected UDP sockets each sending one 64-byte datagram per second to one sink in the
               same process (which reads with recv(), without the peer's address: one counter for
               its side): about n kernel counters to drain, n raw rows to write, every second.
               The agent's work scales with the counters it drains, not with the sends (the kernel
               adds those up), so this mode measures its cost per raw row.
Measured: the agent's CPU time (utime + stime of all its threads, /proc/<pid>/stat; schedstat as a
finer cross-check) over the wall time of the workload process, its RSS before the workload and its
peak RSS (VmHWM) at the end, the rows it wrote per second (machine-wide: it sees all traffic); and
the workload's own CPU (the process and its reaped children, from wait4) and the rate it reached.

The number of sends per run is --seconds times the rate, capped by the flat-out rate of the workload
measured first (without the agent), so that a rate the workload cannot reach still lasts --seconds.

With ``--profile DIR`` one more run at the first rate (or with --flows, of the flows mode) is made
with the agent under cProfile (CPU time of the main thread, which runs the drain loop); the top
functions by own and cumulative time are added to the result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TARGET_CPU_PERCENT = 2.0  # at 10k sends/s (the target)
TARGET_RSS_MB = 80.0
SETTLE_SECONDS = 2.0  # after "agent running": the first drains, the enrichment threads starting


# The agent under cProfile, timed by CPU time of the main thread (time.thread_time), not wall time:
# the loop mostly waits in ring_buffer__poll, which wall time would rank first. Only Collector.run (the
# steady drain loop and the final drain) is profiled, not the start-up (imports, BPF load).
PROFILED_AGENT = """
import cProfile, runpy, sys, time
import extension.collector
out = sys.argv[1]
sys.argv = ["extension", *sys.argv[2:]]
profile = cProfile.Profile(time.thread_time)
original_run = extension.collector.Collector.run
def run(self, *args, **kwargs):
    profile.enable()
    try:
        return original_run(self, *args, **kwargs)
    finally:
        profile.disable()
        profile.dump_stats(out)
extension.collector.Collector.run = run
runpy.run_module("extension", run_name="__main__", alter_sys=True)
"""


# Starts a command in its own place (exec) after asking the kernel to SIGTERM it when the benchmark
# dies (PR_SET_PDEATHSIG survives exec): not even a SIGKILLed benchmark leaves an agent behind.
WITH_PARENT = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit("the benchmark is gone")
os.execv(sys.argv[2], sys.argv[2:])
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class AgentProcess:
    """`python -m extension run` in the background, waited on until it is attached.

    Its stderr is read by a thread (kept in ``lines``), so a chatty agent can never block on a full pipe.
    ``agent_root`` is the checkout whose ``extension`` package runs (default: this one)."""

    def __init__(
        self,
        data_dir: Path,
        bpf_object: Path | None,
        *,
        agent_root: Path = ROOT,
        window_seconds: int | None = None,
        profile_to: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        env = {**os.environ, "EXTENSION_DATA_DIR": str(data_dir), "PYTHONPATH": str(agent_root)}
        if bpf_object is not None:
            env["EXTENSION_BPF_OBJECT"] = str(bpf_object)
        agent_args = ["--log-level", "info"]
        if window_seconds is not None:
            agent_args += ["--window-seconds", str(window_seconds)]
        agent_args.append("run")
        if profile_to is None:
            command = [PYTHON, "-m", "extension", *agent_args]
        else:
            command = [PYTHON, "-c", PROFILED_AGENT, str(profile_to), *agent_args]
        command = [PYTHON, "-c", WITH_PARENT, str(os.getpid()), *command]
        self.lines: list[str] = []
        self._running = threading.Event()
        self.process = subprocess.Popen(
            command, env=env, cwd=agent_root, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self.pid = self.process.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + start_timeout
        while not self._running.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "".join(line for line in self.lines[-20:] if not line.startswith("libbpf: "))
                raise RuntimeError(f"the agent did not start (exit {self.process.returncode}):\n{tail}")

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "agent running" in line:
                self._running.set()

    @property
    def hook_set(self) -> str:
        for line in self.lines:
            if "agent running: hook set " in line:
                return line.split("agent running: hook set ", 1)[1].split(",", 1)[0]
        return ""

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (a clean shutdown: final drain, the open window aggregated); SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"agent {self.pid} did not stop in {timeout:.0f} s: killing it")
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        return self.process.returncode


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL a process started with ``start_new_session`` and everything in its group; reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
        process.wait(timeout=10)


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit and SIGINT KeyboardInterrupt (also when started with SIGINT ignored,
    as background jobs are), so that every ``finally`` stops what the benchmark started."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)


def thread_cpu_seconds(pid: int) -> float:
    """Time on CPU of the live threads of a process, in seconds (/proc/<pid>/task/*/schedstat, ns):
    a finer-grained cross-check of :func:`cpu_seconds` (clock ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MB (10^6 bytes)."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024 / 1e6
    return found


def run_measured(command: list[str]) -> dict[str, float]:
    """A workload command to completion: its JSON line, plus wall time and the CPU of the process and
    its reaped children (wait4)."""
    started = time.perf_counter()
    # its own process group, so that an interrupted run takes its children down too
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:
        kill_group(process)
        raise
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    if process.returncode != 0:
        raise RuntimeError(f"the workload failed (exit {process.returncode}): {command}")
    result: dict[str, float] = json.loads(out)
    result["wall_seconds"] = wall
    result["tree_cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result


def run_workload(tcp: int, udp: int, rate: float | None) -> dict[str, float]:
    """bench/workload.py (its sink child is joined before it exits, so wait4 includes it)."""
    command = [PYTHON, str(ROOT / "bench" / "workload.py"), "--tcp", str(tcp), "--udp", str(udp)]
    if rate is not None:
        command += ["--rate", str(rate)]
    return run_measured(command)


def flows_workload(count: int, seconds: float) -> None:
    """``count`` connected UDP sockets, each sending one datagram per second (spread over the second in
    10 slices) to one sink socket that reads them all; prints one JSON line."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sink.setblocking(False)
    senders = []
    for _ in range(count):
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.connect(sink.getsockname())
        senders.append(sender)
    payload = b"x" * 64
    slices = [senders[i::10] for i in range(10)]
    sends = received = 0
    start = time.perf_counter()
    tick = 0
    while time.perf_counter() - start < seconds:
        for sender in slices[tick % 10]:
            sender.send(payload)
            sends += 1
        with contextlib.suppress(BlockingIOError):
            while True:
                sink.recv(2048)
                received += 1
        tick += 1
        delay = start + tick / 10 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.perf_counter() - start
    print(json.dumps({"flows": count, "sends": sends, "received": received, "seconds": elapsed}))


def count_rows(database: Path, since: float, until: float) -> int:
    """Rows of socket_events dated in [since, until) (epoch s): what the agent wrote while measured."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        query = "SELECT count(*) FROM socket_events WHERE time >= ? AND time < ?"
        return int(conn.execute(query, (int(since), int(until))).fetchone()[0])
    finally:
        conn.close()


@dataclass(frozen=True)
class Mode:
    name: str  # "idle", "10000/s", "250 flows"
    kind: str  # idle | sends | flows
    value: float = 0  # sends per second, or flows
    sends: int = 0  # sends per run (kind sends)

    def run(self, seconds: float) -> dict[str, float]:
        """The workload of this mode (nothing for idle); its figures and wall_seconds."""
        if self.kind == "sends":
            return run_workload(self.sends // 2, self.sends - self.sends // 2, self.value)
        if self.kind == "flows":
            command = [PYTHON, str(Path(__file__).resolve()), "--flows-workload", str(int(self.value))]
            return run_measured([*command, "--seconds", str(seconds)])
        started = time.perf_counter()
        time.sleep(seconds)
        return {"wall_seconds": time.perf_counter() - started}


def measure(args: argparse.Namespace, mode: Mode, data_dir: Path) -> dict[str, float]:
    """One fresh agent: settle, measure over the mode's workload, stop."""
    agent = AgentProcess(data_dir, args.bpf_object, agent_root=args.agent_root)
    try:
        time.sleep(SETTLE_SECONDS)
        rss_before = memory_mb(agent.pid)["VmRSS"]
        cpu_before = cpu_seconds(agent.pid)
        ns_cpu_before = thread_cpu_seconds(agent.pid)
        epoch_start = time.time()
        workload = mode.run(args.seconds)
        wall = workload["wall_seconds"]
        if agent.process.poll() is not None:
            raise RuntimeError(f"the agent exited during the measurement (exit {agent.process.returncode})")
        cpu_used = cpu_seconds(agent.pid) - cpu_before
        ns_cpu_used = thread_cpu_seconds(agent.pid) - ns_cpu_before
        memory = memory_mb(agent.pid)
        epoch_end = time.time()
        hook_set = agent.hook_set
    finally:
        agent.stop()
    # whole seconds strictly inside the measurement (rows are dated to the second)
    raw = count_rows(data_dir / "netflow.db", epoch_start + 1, epoch_end)
    counted_seconds = max(int(epoch_end) - int(epoch_start + 1), 1)
    result = {
        "wall_s": wall,
        "agent_cpu_s": cpu_used,
        "agent_cpu_pct": 100 * cpu_used / wall,
        "agent_cpu_pct_schedstat": 100 * ns_cpu_used / wall,
        "agent_rss_before_mb": rss_before,
        "agent_rss_end_mb": memory["VmRSS"],
        "agent_peak_rss_mb": memory["VmHWM"],
        "raw_rows_per_s": raw / counted_seconds,
    }
    shown = ""
    if mode.kind != "idle":
        result["workload_cpu_pct"] = 100 * workload["tree_cpu_seconds"] / wall
        sends = workload.get("sends", workload.get("tcp_sends", 0) + workload.get("udp_sends", 0))
        result["achieved_sends_per_s"] = sends / workload["seconds"]
        shown = f", workload {result['workload_cpu_pct']:.0f}% CPU at {result['achieved_sends_per_s']:.0f}/s"
    if mode.kind == "sends":
        result["sender_cpu_pct"] = 100 * workload["cpu_seconds"] / workload["seconds"]
    log(
        f"  {mode.name:>10}: agent {result['agent_cpu_pct']:.2f}% CPU, peak RSS {memory['VmHWM']:.1f} MB, "
        f"{result['raw_rows_per_s']:.0f} raw rows/s{shown} ({hook_set})"
    )
    return result


def profile_agent(args: argparse.Namespace, mode: Mode, data_dir: Path) -> dict[str, object]:
    """The agent under cProfile during one run of ``mode``: the top functions of its main thread by CPU."""
    out = args.profile / f"agent-{mode.name.replace('/', '_').replace(' ', '_')}.prof"
    agent = AgentProcess(data_dir, args.bpf_object, agent_root=args.agent_root, profile_to=out)
    try:
        time.sleep(SETTLE_SECONDS)
        mode.run(args.seconds)
    finally:
        agent.stop()
    functions = pstats.Stats(str(out)).get_stats_profile().func_profiles
    total = sum(function.tottime for function in functions.values())  # own time of every function

    def top(key: str) -> list[dict[str, object]]:
        ranked = sorted(functions.items(), key=lambda item: float(getattr(item[1], key)), reverse=True)
        return [
            {
                "function": f"{Path(function.file_name).name}:{function.line_number}({name})",
                "calls": function.ncalls,
                "own_s": round(function.tottime, 3),
                "cumulative_s": round(function.cumtime, 3),
            }
            for name, function in ranked[: args.profile_top]
        ]

    log(f"profile written to {out} (python -m pstats {out})")
    return {
        "mode": mode.name,
        "file": str(out),
        "main_thread_cpu_s": round(total, 3),
        "by_own_cpu": top("tottime"),
        "by_cumulative_cpu": top("cumtime"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rates", type=float, nargs="*", default=[10_000.0, 100_000.0])
    parser.add_argument("--flows", type=int, nargs="*", default=[250], help="flows modes (0 or more)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each measurement")
    parser.add_argument("--bpf-object", type=Path, help="prebuilt object (default: build into the temp dir)")
    parser.add_argument("--agent-root", type=Path, default=ROOT, help="checkout whose agent runs")
    parser.add_argument("--profile", type=Path, help="also profile the agent (cProfile) into this dir")
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument("--flows-workload", type=int, help=argparse.SUPPRESS)  # internal: the workload
    args = parser.parse_args()
    if args.flows_workload is not None:
        flows_workload(args.flows_workload, args.seconds)
        return
    if os.geteuid() != 0:
        sys.exit("error: the benchmark attaches BPF programs: run it as root")
    args.agent_root = args.agent_root.resolve()
    exit_on_sigterm()

    with tempfile.TemporaryDirectory(prefix="netflow-resources-") as tmp:
        work = Path(tmp)
        if args.bpf_object is None:
            sys.path.insert(0, str(args.agent_root))
            from extension.bpf.build import build_object  # noqa: PLC0415

            args.bpf_object = build_object(work / "bpf")
        # the flat-out rate of the workload alone (also the warm-up: page cache, CPU frequency)
        probe = run_workload(50_000, 50_000, None)
        flat_out = 100_000 / probe["seconds"]
        log(f"workload flat out, no agent: {flat_out:.0f} sends/s")
        modes = [Mode("idle", "idle")]
        modes += [
            Mode(f"{rate:.0f}/s", "sends", rate, int(min(rate, flat_out) * args.seconds))
            for rate in args.rates
        ]
        modes += [Mode(f"{count} flows", "flows", count) for count in args.flows]
        results: dict[str, list[dict[str, float]]] = {mode.name: [] for mode in modes}
        for round_ in range(args.rounds):
            log(f"round {round_ + 1}/{args.rounds}")
            shift = round_ % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                data_dir = work / f"{round_}-{mode.name.replace('/', '_').replace(' ', '_')}"
                results[mode.name].append(measure(args, mode, data_dir))
        summary: dict[str, dict[str, float]] = {}
        for name, runs in results.items():
            summary[name] = {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}
        idle = summary["idle"]
        for mode in modes[1:]:
            figures = summary[mode.name]
            if mode.kind == "sends":
                figures["sends_per_run"] = mode.sends
            figures["agent_cpu_pct_above_idle"] = round(figures["agent_cpu_pct"] - idle["agent_cpu_pct"], 3)
            figures["agent_cpu_vs_workload_cpu"] = round(
                figures["agent_cpu_pct"] / figures["workload_cpu_pct"], 4
            )
            extra_rows = figures["raw_rows_per_s"] - idle["raw_rows_per_s"]
            if mode.kind == "flows" and extra_rows > 0:
                # CPU per drained counter, above idle (10 * pct = ms of CPU per second)
                extra_cpu_ms = 10 * (figures["agent_cpu_pct_schedstat"] - idle["agent_cpu_pct_schedstat"])
                figures["agent_cpu_us_per_raw_row"] = round(1000 * extra_cpu_ms / extra_rows, 1)
        result: dict[str, object] = {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "agent_root": str(args.agent_root),
            "workload_flat_out_sends_per_s": round(flat_out),
            "median": summary,
            "runs": {
                name: [{k: round(v, 3) for k, v in run.items()} for run in runs]
                for name, runs in results.items()
            },
        }
        at_10k = next((mode for mode in modes if mode.kind == "sends" and mode.value == 10_000), None)
        if at_10k is not None:
            result["targets_at_10k"] = {
                "cpu_pct": TARGET_CPU_PERCENT,
                "cpu_met": summary[at_10k.name]["agent_cpu_pct"] < TARGET_CPU_PERCENT,
                "rss_mb": TARGET_RSS_MB,
                "rss_met": summary[at_10k.name]["agent_peak_rss_mb"] < TARGET_RSS_MB,
            }
        if args.profile is not None and len(modes) > 1:
            args.profile.mkdir(parents=True, exist_ok=True)
            profiled = next((mode for mode in modes if mode.kind == "flows"), modes[1])
            result["profile"] = profile_agent(args, profiled, work / "profile")
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
