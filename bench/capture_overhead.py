"""Capture overhead: the loopback workload (bench/workload.py) with and without the agent attached,
interleaved, reported as a ratio of medians; plus where the cost goes (kernel BPF run time per call).

    sudo .venv/bin/python bench/capture_overhead.py --rounds 30

Modes measured in the same run, in turn (round-robin, so drift on a shared machine hits all alike):
  baseline    nothing attached
  agent       the full agent (python -m extension run): BPF programs + Python drain every second
and, with ``--diagnose``, a final run with ``kernel.bpf_stats_enabled=1`` that reads run_time_ns and
run_cnt of each attached program (bpftool), i.e. nanoseconds of BPF per traffic call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# the one agent launcher: waits until attached, drains its stderr on a thread (a full pipe would
# stall the agent), SIGTERM then SIGKILL on stop
from bench.agent_resources import AgentProcess  # noqa: E402


def run_workload(args: argparse.Namespace) -> dict[str, float]:
    out = subprocess.run(
        [PYTHON, str(ROOT / "bench" / "workload.py"), "--tcp", str(args.tcp), "--udp", str(args.udp)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def bpf_prog_stats() -> dict[str, tuple[int, int]]:
    shown = json.loads(
        subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, check=True).stdout
    )
    return {
        f"{p.get('type')}:{p.get('name')}": (p.get("run_time_ns", 0), p.get("run_cnt", 0))
        for p in shown
        if p.get("name", "").startswith(("on_", "udp_", "fexit_", "dns_"))
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--tcp", type=int, default=200_000)
    parser.add_argument("--udp", type=int, default=100_000)
    parser.add_argument("--bpf-object", type=Path, help="prebuilt object (default: build into the temp dir)")
    parser.add_argument("--diagnose", action="store_true", help="also measure BPF run time per call")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("error: the benchmark attaches BPF programs: run it as root")

    with tempfile.TemporaryDirectory(prefix="netflow-bench-") as tmp:
        data_dir = Path(tmp)
        if args.bpf_object is None:
            sys.path.insert(0, str(ROOT))
            from extension.bpf.build import build_object  # noqa: PLC0415

            args.bpf_object = build_object(data_dir / "bpf")
        run_workload(args)  # warm-up: page cache, CPU frequency
        times: dict[str, list[float]] = {"baseline": [], "agent": []}
        cpu: dict[str, list[float]] = {"baseline": [], "agent": []}
        for round_ in range(args.rounds):
            order = ["baseline", "agent"] if round_ % 2 == 0 else ["agent", "baseline"]
            for mode in order:
                if mode == "agent":
                    agent = AgentProcess(data_dir, args.bpf_object)
                    try:
                        measured = run_workload(args)
                    finally:
                        agent.stop()
                else:
                    measured = run_workload(args)
                times[mode].append(measured["seconds"])
                cpu[mode].append(measured["cpu_seconds"])
            last = {mode: f"{values[-1]:.3f} s" for mode, values in times.items()}
            print(f"round {round_ + 1}: baseline {last['baseline']}, agent {last['agent']}", file=sys.stderr)
        calls = args.tcp + args.udp
        base = statistics.median(times["baseline"])
        agent_median = statistics.median(times["agent"])
        result: dict[str, object] = {
            "rounds": args.rounds,
            "sends": calls,
            "baseline_median_s": round(base, 4),
            "agent_median_s": round(agent_median, 4),
            "ratio_agent_vs_baseline": round(agent_median / base, 4),
            # each round's two runs are adjacent in time: their ratio cancels slow drift of the machine
            "median_paired_ratio": round(
                statistics.median(a / b for a, b in zip(times["agent"], times["baseline"], strict=True)), 4
            ),
            "paired_ratio_quartiles": [
                round(q, 4)
                for q in statistics.quantiles(
                    [a / b for a, b in zip(times["agent"], times["baseline"], strict=True)], n=4
                )
            ],
            "baseline_us_per_send": round(base / calls * 1e6, 3),
            "added_us_per_send": round((agent_median - base) / calls * 1e6, 3),
            "cpu_ratio_agent_vs_baseline": round(
                statistics.median(cpu["agent"]) / statistics.median(cpu["baseline"]), 4
            ),
            "baseline_cpu_us_per_send": round(statistics.median(cpu["baseline"]) / calls * 1e6, 3),
        }
        if args.diagnose:
            subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
            agent = AgentProcess(data_dir, args.bpf_object)
            try:
                before = bpf_prog_stats()
                run_workload(args)
                after = bpf_prog_stats()
            finally:
                agent.stop()
                subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"], check=True)
            result["bpf_ns_per_call"] = {
                name: round((after[name][0] - before[name][0]) / max(after[name][1] - before[name][1], 1), 1)
                for name in after
                if name in before and after[name][1] > before[name][1]
            }
            result["bpf_calls"] = {name: after[name][1] - before[name][1] for name in after if name in before}
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
