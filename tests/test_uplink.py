"""The agent end to end with forwarding: captured flows leave as osquery result lines through the
spool to a real HTTP fleet stand-in, only while the enterprise-network policy says "on"."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from extension.netstate import read_facts
from tests.test_cli import agent_env, agent_process, exchange, run_cli
from tests.test_forwarder import SECRET, Fleet, Server


def gateway_here() -> str:
    gateways = read_facts().gateways
    if not gateways:
        pytest.skip("this host has no default gateway to build an 'on' policy from")
    return gateways[0][0]


@pytest.mark.kernel
def test_flows_reach_the_fleet_while_on_and_wait_while_off(tmp_path: Path, bpf_object: Path) -> None:
    fleet = Fleet()
    server = Server(fleet)
    try:
        for policy, expect_on in ((gateway_here(), True), ("203.0.113.77", False)):
            data = tmp_path / ("on" if expect_on else "off")
            env = agent_env(bpf_object) | {
                "EXTENSION_FLEET_URL": f"http://127.0.0.1:{server.port}",
                "EXTENSION_ENROLL_SECRET": SECRET,
                "EXTENSION_ENTERPRISE_GATEWAYS": policy,
            }
            sent_before = len(fleet.stored_items())
            with agent_process(["--data-dir", str(data), "--window-seconds", "5", "run"], env) as agent:
                agent.wait_for("agent running")
                said = exchange(2222, 333)
                if expect_on:
                    end = time.monotonic() + 20
                    while time.monotonic() < end:
                        items = fleet.stored_items()
                        mine = [
                            i
                            for i in items
                            if isinstance(i, dict)
                            and i.get("name") == "pack_netflow_netflow_flows"
                            and i["columns"]["pid"] == str(said.client_pid)
                        ]
                        if mine:
                            break
                        time.sleep(0.3)
                    assert mine, agent.stderr
                    assert mine[0]["columns"]["bytes_sent"] == "2222"
                else:
                    time.sleep(3)
                assert agent.stop(signal.SIGTERM) == 0, agent.stderr
            status = json.loads(run_cli("status", "--data-dir", str(data)).stdout)["agent"]
            assert status["enterprise_network"] == ("on" if expect_on else "off")
            if not expect_on:
                assert len(fleet.stored_items()) == sent_before  # nothing left while off
                assert int(status["spool_rows"]) > 0  # it waits in the spool
                assert "no enterprise gateway" in status["enterprise_reason"]
            else:
                assert fleet.enrolls and fleet.enrolls[0].get("enroll_secret") == SECRET
    finally:
        fleet.release.set()
        server.close()
