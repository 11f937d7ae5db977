"""Enterprise-network detection: the policy as a pure function, and the watcher on real rtnetlink
events in a network namespace of its own (root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extension.netstate import Decision, NetworkFacts, Policy, evaluate, read_search_domains

ROOT = Path(__file__).resolve().parent.parent


def test_no_policy_means_always_on() -> None:
    assert evaluate(Policy(), NetworkFacts()).on


@pytest.mark.parametrize(
    ("facts", "on", "reason"),
    [
        (
            NetworkFacts(gateways=(("10.1.0.1", ""),)),
            True,
            "default gateway 10.1.0.1 is an enterprise gateway",
        ),
        (
            NetworkFacts(gateways=(("192.168.1.1", "AA:BB:CC:00:11:22"),)),
            True,
            "enterprise MAC aa:bb:cc:00:11:22",
        ),
        (NetworkFacts(search_domains=("Corp.Example.",)), True, "DNS search domain Corp.Example."),
        (
            NetworkFacts(gateways=(("192.168.1.1", "02:00:00:00:00:09"),)),
            False,
            "default gateways: 192.168.1.1",
        ),
        (NetworkFacts(), False, "default gateways: none"),
    ],
)
def test_any_condition_puts_the_device_on(facts: NetworkFacts, on: bool, reason: str) -> None:
    policy = Policy.from_settings(["10.1.0.1"], ["aa-bb-cc-00-11-22"], ["corp.example"])
    decision = evaluate(policy, facts)
    assert decision.on is on and reason in decision.reason


def test_bad_mac_in_the_policy() -> None:
    with pytest.raises(ValueError, match="not MAC addresses: zz"):
        Policy.from_settings([], ["zz"], [])


def test_search_domains_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 10.0.0.53\ndomain corp.example\nsearch a.example b.example\n# search x\n")
    assert read_search_domains(conf) == ("corp.example", "a.example", "b.example")
    assert read_search_domains(tmp_path / "missing") == ()


WATCHER = """
import sys, time
from extension.netstate import NetworkWatcher, Policy
policy = Policy.from_settings(sys.argv[1].split(","), sys.argv[2].split(",") if sys.argv[2] else [], [])
watcher = NetworkWatcher(policy, listeners=[lambda d: print("on" if d.on else "off", d.reason, flush=True)],
                         periodic_seconds=3600)
watcher.start()
time.sleep(60)
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def namespace() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (ip)")
    name = f"nf{uuid.uuid4().hex[:8]}"
    inside, outside = f"{name}a", f"{name}b"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "add", inside, "type", "veth", "peer", "name", outside)
        sh("ip", "link", "set", inside, "netns", name)
        sh("ip", "-n", name, "addr", "add", "10.99.0.2/24", "dev", inside)
        sh("ip", "-n", name, "link", "set", inside, "up")
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name, inside
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def next_state(process: subprocess.Popen[str], timeout: float = 10) -> str:
    assert process.stdout is not None
    end = time.monotonic() + timeout
    import select  # noqa: PLC0415

    while time.monotonic() < end:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            return process.stdout.readline().strip()
    raise AssertionError("no state change reported")


def test_route_and_neighbour_events_switch_the_state(namespace: tuple[str, str]) -> None:
    name, link = namespace
    process = subprocess.Popen(
        ["ip", "netns", "exec", name, sys.executable, "-c", WATCHER, "10.99.0.1", "02:00:00:00:00:01"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert next_state(process).startswith("off no enterprise gateway")  # no default route yet
        sh("ip", "-n", name, "route", "add", "default", "via", "10.99.0.1", "dev", link)
        assert next_state(process) == "on default gateway 10.99.0.1 is an enterprise gateway"
        sh("ip", "-n", name, "route", "del", "default")
        assert next_state(process).startswith("off")
        # another gateway, whose MAC is the enterprise router's: on through the neighbour table
        sh("ip", "-n", name, "neigh", "add", "10.99.0.7", "lladdr", "02:00:00:00:00:01", "dev", link)
        sh("ip", "-n", name, "route", "add", "default", "via", "10.99.0.7", "dev", link)
        assert next_state(process) == "on default gateway 10.99.0.7 has enterprise MAC 02:00:00:00:00:01"
    finally:
        process.kill()
        process.communicate(timeout=10)


def test_listener_errors_do_not_stop_the_watcher() -> None:
    from extension.netstate import NetworkWatcher  # noqa: PLC0415

    seen: list[Decision] = []

    def broken(_decision: Decision) -> None:
        raise RuntimeError("listener bug")

    states = iter([NetworkFacts(), NetworkFacts(gateways=(("10.1.0.1", ""),))])
    watcher = NetworkWatcher(
        Policy.from_settings(["10.1.0.1"], [], []),
        listeners=[broken, seen.append],
        facts=lambda: next(states),
    )
    assert not watcher.check().on
    assert watcher.check().on
    assert [d.on for d in seen] == [False, True] and watcher.changes == 2


UPLINK = """
import json, sys, time
from pathlib import Path
from extension.settings import Settings
from extension.spool import Spool
from extension.uplink import Uplink
from tests.test_forwarder import SECRET, Fleet, Server

fleet = Fleet()
server = Server(fleet)  # inside the namespace, on its own loopback
spool = Spool(Path(sys.argv[1]), max_bytes=1 << 20)
settings = Settings(data_dir=Path(sys.argv[1]).parent, fleet_url=f"http://127.0.0.1:{server.port}",
                    enroll_secret=SECRET, enterprise_gateways=("10.99.0.1",))
uplink = Uplink(settings, spool)
uplink.start()
for command in sys.stdin:
    word = command.strip()
    if word.startswith("append"):
        spool.append("result", [json.dumps({"n": int(word.split()[1])})])
        uplink.wake.set()
    elif word == "report":
        time.sleep(1.5)  # long enough for a woken forwarder to deliver
        items = [item["n"] for item in fleet.stored_items()]
        print(json.dumps({"on": uplink.watcher.on, "sent": items, "waiting": spool.stats().rows}), flush=True)
uplink.stop()
server.close()
"""


def test_forwarding_stops_off_the_enterprise_network_and_resumes_on_it(namespace: tuple[str, str]) -> None:
    """Real route changes in a namespace switch the uplink off and on; what waited goes at once."""
    name, link = namespace
    spool_path = Path(f"/tmp/{name}-spool.db")
    process = subprocess.Popen(
        ["ip", "netns", "exec", name, sys.executable, "-c", UPLINK, str(spool_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdin is not None and process.stdout is not None

    def ask(*commands: str) -> dict[str, object]:
        assert process.stdin is not None
        for command in (*commands, "report"):
            process.stdin.write(command + "\n")
        process.stdin.flush()
        import json  # noqa: PLC0415

        reported: dict[str, object] = json.loads(next_state(process, timeout=20))
        return reported

    def step(command: str, *, on: bool) -> dict[str, object]:
        """Once the watcher has seen the route change (its debounce takes a moment), run command."""
        end = time.monotonic() + 10
        while ask()["on"] is not on:
            assert time.monotonic() < end, "the watcher did not see the route change"
        return ask(command)

    try:
        assert step("append 1", on=False) == {"on": False, "sent": [], "waiting": 1}  # no route: off
        sh("ip", "-n", name, "route", "add", "default", "via", "10.99.0.1", "dev", link)
        assert ask()["sent"] == [1]  # on: what waited went at once, before anything new
        assert step("append 2", on=True) == {"on": True, "sent": [1, 2], "waiting": 0}
        sh("ip", "-n", name, "route", "del", "default")
        assert step("append 3", on=False) == {"on": False, "sent": [1, 2], "waiting": 1}  # off: it waits
        sh("ip", "-n", name, "route", "add", "default", "via", "10.99.0.1", "dev", link)
        assert step("append 4", on=True) == {"on": True, "sent": [1, 2, 3, 4], "waiting": 0}
    finally:
        process.kill()
        process.communicate(timeout=10)
        for suffix in ("", "-wal", "-shm", ".forwarder.json"):
            Path(f"{spool_path}{suffix}").unlink(missing_ok=True)


def test_fleet_tls_condition() -> None:
    policy = Policy.from_settings([], [], [], fleet_tls=True)
    assert policy.configured
    on = evaluate(policy, NetworkFacts(fleet_tls="fleet:8443", fleet_tls_ok=True))
    assert on.on and "expected certificate (fleet:8443)" in on.reason
    off = evaluate(
        policy, NetworkFacts(fleet_tls="fleet:8443 is not reachable (refused)", fleet_tls_ok=False)
    )
    assert not off.on and "fleet service: fleet:8443 is not reachable" in off.reason


def test_probe_fleet_tls_against_a_real_tls_server(tmp_path: Path) -> None:
    """Verified against the CA file, and pinned by fingerprint when fingerprints are given."""
    import hashlib  # noqa: PLC0415
    import socket  # noqa: PLC0415
    import ssl  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from extension.netstate import probe_fleet_tls  # noqa: PLC0415

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key)]
    subprocess.run(
        [*request, "-out", str(cert), "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{port}"
        der = ssl.PEM_cert_to_DER_cert(cert.read_text())
        right = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
        assert probe_fleet_tls(url, ca_file=cert, fingerprints=[]) == (True, f"127.0.0.1:{port}")
        assert probe_fleet_tls(url, ca_file=cert, fingerprints=[right])[0]
        ok, why = probe_fleet_tls(url, ca_file=cert, fingerprints=["00" * 32])
        assert not ok and "not an expected one" in why
        ok, why = probe_fleet_tls(url, ca_file=None, fingerprints=[])
        assert not ok and "unexpected certificate" in why
        ok, why = probe_fleet_tls("http://127.0.0.1:1", ca_file=cert, fingerprints=[])
        assert not ok and "not an https:// URL" in why
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
    ok, why = probe_fleet_tls(url, ca_file=cert, fingerprints=[], timeout=1)
    assert not ok and "not reachable" in why


class FakeIpHelper:
    """iphlpapi's three calls as the feed uses them; ``fail`` makes one registration fail."""

    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.callbacks: list[Any] = []
        self.cancelled: list[int] = []
        self._next = 100

    def _register(self, name: str, family: Any, callback: Any, _context: Any, initial: Any,
                  handle: Any) -> int:  # fmt: skip
        assert family == 0 and not initial.value
        if name == self.fail:
            return 87  # ERROR_INVALID_PARAMETER
        self._next += 1
        handle._obj.value = self._next
        self.callbacks.append(callback)
        return 0

    def NotifyIpInterfaceChange(self, *args: Any) -> int:
        return self._register("NotifyIpInterfaceChange", *args)

    def NotifyRouteChange2(self, *args: Any) -> int:
        return self._register("NotifyRouteChange2", *args)

    def CancelMibChangeNotify2(self, handle: object) -> int:
        self.cancelled.append(handle.value)  # type: ignore[attr-defined]
        return 0


def test_the_windows_feed_turns_ip_helper_callbacks_into_notifications() -> None:
    import threading  # noqa: PLC0415

    from extension.netstate_windows import IpHelperFeed  # noqa: PLC0415

    api = FakeIpHelper()
    feed = IpHelperFeed(api)
    assert len(api.callbacks) == 2  # interfaces and routes
    assert not feed.wait(0.01)
    route_changed = api.callbacks[1]
    threading.Thread(target=route_changed, args=(None, None, 1)).start()  # as IP Helper's thread calls
    assert feed.wait(5) and not feed.wait(0.01)  # one notification, consumed
    feed.close()
    assert sorted(api.cancelled) == [101, 102]
    feed.close()  # twice is fine
    assert len(api.cancelled) == 2


def test_a_failed_registration_cancels_the_other_and_says_so() -> None:
    from extension.netstate_windows import IpHelperError, IpHelperFeed  # noqa: PLC0415

    api = FakeIpHelper(fail="NotifyRouteChange2")
    with pytest.raises(IpHelperError, match="NotifyRouteChange2 failed with Win32 error 87"):
        IpHelperFeed(api)
    assert api.cancelled == [101]


def test_the_watcher_rechecks_on_a_feed_notification_and_reads_nothing_without_a_policy() -> None:
    import threading  # noqa: PLC0415

    from extension.netstate import NetworkWatcher  # noqa: PLC0415

    class Feed:
        def __init__(self) -> None:
            self.changed = threading.Event()
            self.closed = False

        def wait(self, timeout: float) -> bool:
            if self.changed.wait(timeout):
                self.changed.clear()
                return True
            return False

        def close(self) -> None:
            self.closed = True

    feed = Feed()
    states = [NetworkFacts(), NetworkFacts(gateways=(("10.1.0.1", ""),))]
    seen: list[Decision] = []
    watcher = NetworkWatcher(
        Policy.from_settings(["10.1.0.1"], [], []),
        listeners=[seen.append],
        facts=lambda: states[min(len(seen), 1)],
        feed=lambda: feed,
        debounce_seconds=0.05,
    )

    def on_now() -> bool:
        return watcher.on

    watcher.start()
    try:
        assert not on_now()
        feed.changed.set()  # the gateway came up
        for _ in range(100):
            if on_now():
                break
            threading.Event().wait(0.05)
        assert on_now() and [d.on for d in seen] == [False, True]
    finally:
        watcher.stop()
    assert feed.closed

    def unreadable() -> NetworkFacts:
        raise NotImplementedError("no facts reader here")

    always = NetworkWatcher(Policy(), facts=unreadable, feed=lambda: feed)
    assert always.check().on  # no policy: the facts are not read, the device forwards
