"""The command line, run as a user runs it: ``python -m extension ...`` in a subprocess.

The product rule for failures: one ``error:`` line naming the cause and the remedy, a non-zero exit
code, never a traceback. Covered: help, not root, an unwritable database, ``status``, bad settings, a
bad BPF object, no BTF and no libbpf (in-process: this machine has both). On the real kernel (root + BTF):
SIGTERM drains and aggregates the open window, kill -9 and a restart count nothing twice, and
``capture`` prints the flows of traffic made while it runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from extension.bpf import build
from extension.sources import libbpf
from extension.sources.base import CaptureError
from extension.store import Store
from tests.conftest import read_rows

REPO = Path(__file__).resolve().parent.parent
PEERS = str(Path(__file__).with_name("peers.py"))
PYTHON = sys.executable
NOBODY = 65534
QUIET = {"EXTENSION_DNS_SNOOP": "false", "EXTENSION_RESOLVE_HOSTNAMES": "false"}
VOCABULARY = (
    "window_start",
    "window_seconds",
    "pid",
    "process_name",
    "process_path",
    "process_sha256",
    "uid",
    "username",
    "protocol",
    "family",
    "direction",
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "local_hostname",
    "remote_hostname",
    "bytes_sent",
    "bytes_received",
    "connections",
    "activity",
    "first_seen",
    "last_seen",
)
TABLE_HEADER = [
    "window_start",
    "pid",
    "process_name",
    "username",
    "protocol",
    "direction",
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "remote_hostname",
    "bytes_sent",
    "bytes_received",
    "connections",
    "activity",
]


# --- running the CLI ---------------------------------------------------------------------------


def cli_env(**settings: str) -> dict[str, str]:
    """This process's environment without any ``EXTENSION_*`` setting, plus ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EXTENSION_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.update(settings)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "extension", *args],
        cwd=REPO,
        env=cli_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def error_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The one ``error:`` line of a failed run. Fails on a traceback, another exit code, more or fewer
    than one error line, or output on stdout."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert result.stdout == ""
    return errors[0]


def only_error_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """As :func:`error_line`, and nothing else on stderr (no log lines before the error)."""
    line = error_line(result, code)
    assert result.stderr.strip().splitlines() == [line]
    return line


@functools.cache
def nobody_python() -> tuple[str, str] | None:
    """(interpreter, PYTHONPATH) with which uid 65534 can import this checkout and its dependencies.

    The test's own interpreter when nobody can run it; otherwise a system ``python3`` of the same
    version with this environment's site-packages on PYTHONPATH (a virtualenv built from an
    interpreter under /root is out of nobody's reach). None when there is no such interpreter."""
    path = os.pathsep.join([str(REPO), *site.getsitepackages()])
    check = f"import sys, dns, extension; sys.exit(tuple(sys.version_info[:2]) != {sys.version_info[:2]})"
    for python in dict.fromkeys([PYTHON, "/usr/bin/python3", shutil.which("python3") or ""]):
        if not python:
            continue
        try:
            result = subprocess.run(
                [python, "-c", check],
                cwd="/",
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": path},
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                capture_output=True,
                timeout=30,
                check=False,
            )
        except OSError:  # nobody may not execute it at all
            continue
        if result.returncode == 0:
            return python, path
    return None


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A world-writable directory outside pytest's tmp tree (that one is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="netflow-cli-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class AgentProcess:
    """``python -m extension ...`` in the background; its stderr is collected line by line."""

    def __init__(self, args: Sequence[str], env: dict[str, str], stdout: IO[str] | int) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "extension", *args],
            cwd=REPO,
            env=env,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        """Wait until a stderr line contains ``text``; fail at once if the process exits first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
            if any(text in line for line in list(self.lines)):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"{text!r} never logged (exit code {self.proc.poll()}); stderr:\n{self.stderr}")

    def stop(self, sig: signal.Signals, timeout: float = 30) -> int:
        self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@contextlib.contextmanager
def agent_process(
    args: Sequence[str], env: dict[str, str], stdout: IO[str] | int = subprocess.DEVNULL
) -> Iterator[AgentProcess]:
    agent = AgentProcess(args, env, stdout)
    try:
        yield agent
    finally:
        agent.cleanup()


# --- traffic with known byte counts ------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    client_pid: int
    server_pid: int
    server_port: int
    c2s: int
    s2c: int


def exchange(c2s: int, s2c: int) -> Exchange:
    """One TCP/IPv4 loopback exchange between two peer processes (tests/peers.py)."""
    common = ["--proto", "tcp", "--family", "4", "--c2s", str(c2s), "--s2c", str(s2c)]
    server = subprocess.Popen([PYTHON, PEERS, "server", *common], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        hello = json.loads(server.stdout.readline())
        client = subprocess.run(
            [PYTHON, PEERS, "client", *common, "--port", str(hello["port"])],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        said = json.loads(client.stdout.splitlines()[0])
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
    return Exchange(int(said["pid"]), int(hello["pid"]), int(hello["port"]), c2s, s2c)


def totals(database: Path, table: str, pid: int, *, where: str = "1") -> tuple[int, int]:
    rows = read_rows(
        database, f"SELECT bytes_sent, bytes_received FROM {table} WHERE pid = ? AND {where}", (pid,)
    )
    return sum(int(r["bytes_sent"]) for r in rows), sum(int(r["bytes_received"]) for r in rows)


def assert_flows_count_once(database: Path, said: Exchange) -> None:
    assert totals(database, "flows", said.client_pid) == (said.c2s, said.s2c)
    assert totals(database, "flows", said.server_pid) == (said.s2c, said.c2s)
    client_flows = read_rows(database, "SELECT connections FROM flows WHERE pid = ?", (said.client_pid,))
    assert sum(int(r["connections"]) for r in client_flows) == 1


def wait_committed(database: Path, said: Exchange, timeout: float = 10) -> None:
    """Until the raw rows of both peers hold the whole exchange (committed by a drain)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        client = totals(database, "socket_events", said.client_pid, where="activity = 'data'")
        server = totals(database, "socket_events", said.server_pid, where="activity = 'data'")
        if client == (said.c2s, said.s2c) and server == (said.s2c, said.c2s):
            return
        time.sleep(0.1)
    pytest.fail(f"the exchange {said} was not committed in {timeout} s: client {client}, server {server}")


def agent_env(bpf_object: Path) -> dict[str, str]:
    return cli_env(EXTENSION_BPF_OBJECT=str(bpf_object), **QUIET)


# --- help --------------------------------------------------------------------------------------


def test_help_shows_the_examples_and_every_setting() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith("usage: python -m extension")
    assert "examples:" in out
    assert "python -m extension capture --seconds 10" in out
    assert "python -m extension run" in out
    for setting in ("EXTENSION_DATA_DIR", "EXTENSION_WINDOW_SECONDS", "EXTENSION_BPF_OBJECT"):
        assert setting in out
    assert "needs root" in out


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("run", ["usage: python -m extension run", "--live", "--duration", "SIGTERM"]),
        ("capture", ["usage: python -m extension capture", "--seconds", "--format {table,json}"]),
    ],
)
def test_command_help(command: str, expected: list[str]) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for text in expected:
        assert text in result.stdout


# --- not root ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "prebuilt"),
    [
        pytest.param(["capture", "--seconds", "1"], False, id="capture-building"),
        pytest.param(["capture", "--seconds", "1"], True, id="capture-prebuilt-object"),
        pytest.param(["run", "--duration", "1"], True, id="run-prebuilt-object"),
    ],
)
def test_unprivileged_user_is_told_to_run_as_root(
    shared_dir: Path, command: list[str], prebuilt: bool
) -> None:
    env = cli_env(HOME=str(shared_dir), TMPDIR=str(shared_dir))
    if prebuilt:  # preflight comes before the object is even looked at
        env["EXTENSION_BPF_OBJECT"] = str(shared_dir / "netflow.bpf.o")
    argv = ["-m", "extension", "--data-dir", str(shared_dir / "data"), *command]
    if os.geteuid() == 0:
        found = nobody_python()
        if found is None:
            pytest.skip(f"no Python interpreter with this checkout's dependencies is usable by uid {NOBODY}")
        python, env["PYTHONPATH"] = found
        result = subprocess.run(
            [python, *argv],
            cwd=shared_dir,
            env=env,
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    else:
        result = subprocess.run(
            [PYTHON, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
        )
    line = error_line(result)
    assert line.startswith("error: kernel capture needs root")
    assert "sudo" in line  # the remedy


# --- the database ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["flag", "flag-after-command", "environment"])
def test_data_dir_under_a_regular_file(tmp_path: Path, how: str) -> None:
    regular = tmp_path / "file"
    regular.write_text("not a directory\n")
    if how == "flag":
        result = run_cli("--data-dir", str(regular / "sub"), "run", "--duration", "1")
    elif how == "flag-after-command":
        result = run_cli("run", "--duration", "1", "--data-dir", str(regular / "sub"))
    else:
        result = run_cli("run", "--duration", "1", env=cli_env(EXTENSION_DATA_DIR=str(regular)))
    line = only_error_line(result)
    # run takes the data directory's lock first, so that is what fails
    assert f"data directory {regular}" in line and "not writable" in line
    assert ("Not a directory" in line) if how != "environment" else ("it is a file" in line)
    assert "set EXTENSION_DATA_DIR" in line
    assert regular.read_text() == "not a directory\n"


@pytest.mark.kernel
def test_capture_build_cache_under_a_regular_file(tmp_path: Path) -> None:
    """capture keeps its database in a temporary directory but builds the BPF object in the data
    directory: that must fail with the same remedy."""
    regular = tmp_path / "file"
    regular.write_text("")
    result = run_cli("capture", "--seconds", "1", env=cli_env(EXTENSION_DATA_DIR=str(regular), **QUIET))
    line = error_line(result)
    assert f"cannot build the BPF program in {regular}" in line
    assert "Not a directory" in line and "set EXTENSION_DATA_DIR" in line


# --- status ------------------------------------------------------------------------------------


def test_status_without_a_database(tmp_path: Path) -> None:
    line = only_error_line(run_cli("status", "--data-dir", str(tmp_path)))
    assert f"no agent database at {tmp_path / 'netflow.db'}" in line
    assert "EXTENSION_DATA_DIR" in line
    assert not (tmp_path / "netflow.db").exists()  # status never creates one


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a database another user may only read")
def test_status_reads_the_agent_database_without_root(shared_dir: Path) -> None:
    """`status` says it needs no root: a user who may read, not write, the agent's database."""
    data = shared_dir / "data"
    Store(data / "netflow.db", window_seconds=60).close()
    data.chmod(0o755)
    found = nobody_python()
    if found is None:
        pytest.skip(f"no Python interpreter with this checkout's dependencies is usable by uid {NOBODY}")
    python, path = found
    result = subprocess.run(
        [python, "-m", "extension", "status", "--data-dir", str(data)],
        cwd=shared_dir,
        env=cli_env(PYTHONPATH=path, HOME=str(shared_dir)),
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == {"socket_events": 0, "flows": 0}


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            "abc", ["window_seconds = 'abc' is not valid", "set EXTENSION_WINDOW_SECONDS"], id="abc"
        ),
        pytest.param("0", ["window_seconds = 0 is not valid", "EXTENSION_WINDOW_SECONDS"], id="zero"),
    ],
)
def test_bad_window_seconds(tmp_path: Path, value: str, expected: list[str]) -> None:
    env = cli_env(EXTENSION_WINDOW_SECONDS=value)
    line = only_error_line(run_cli("--data-dir", str(tmp_path), "run", "--duration", "1", env=env))
    for text in expected:
        assert text in line
    assert not (tmp_path / "netflow.db").exists()  # refused before anything was opened


def test_config_file_with_an_unknown_key(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("window_second = 30\n")
    result = run_cli("--config", str(config), "--data-dir", str(tmp_path), "run", "--duration", "1")
    line = only_error_line(result)
    assert f"config file {config}: unknown setting 'window_second'" in line
    assert "known settings:" in line and "window_seconds" in line


def test_config_file_that_is_not_toml(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("window_seconds = \n")
    env = cli_env(EXTENSION_CONFIG=str(config))
    line = only_error_line(run_cli("--data-dir", str(tmp_path), "run", "--duration", "1", env=env))
    assert f"config file {config} is not valid" in line
    assert "line 1" in line  # where to fix it


def test_config_file_that_does_not_exist(tmp_path: Path) -> None:
    config = tmp_path / "missing.toml"
    line = only_error_line(run_cli("--config", str(config), "run", "--duration", "1"))
    assert f"cannot read config file {config}" in line
    assert "fix the path in EXTENSION_CONFIG or --config" in line


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_unknown_log_level(tmp_path: Path, how: str) -> None:
    if how == "flag":
        result = run_cli("--log-level", "loud", "--data-dir", str(tmp_path), "run", "--duration", "1")
    else:
        env = cli_env(EXTENSION_LOG_LEVEL="loud")
        result = run_cli("--data-dir", str(tmp_path), "run", "--duration", "1", env=env)
    line = only_error_line(result, code=2)
    assert line == "error: unknown log level 'loud'; use debug, info, warning or error"


# --- the BPF object ----------------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.parametrize("command", [["run", "--duration", "1"], ["capture", "--seconds", "1"]])
@pytest.mark.parametrize("what", ["text-file", "missing", "directory"])
def test_bad_bpf_object(tmp_path: Path, what: str, command: list[str]) -> None:
    obj = tmp_path / "netflow.bpf.o"
    if what == "text-file":
        obj.write_text("this is not an ELF file\n")
    elif what == "directory":
        obj.mkdir()
    env = cli_env(EXTENSION_BPF_OBJECT=str(obj), **QUIET)
    line = error_line(run_cli("--data-dir", str(tmp_path / "data"), *command, env=env))
    assert str(obj) in line  # the cause: which file
    assert "EXTENSION_BPF_OBJECT" in line  # the remedy: the setting to fix


# --- no BTF, no libbpf (in-process: this machine has both) --------------------------------------


def test_no_btf_names_the_kernel_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "btf" / "vmlinux"
    monkeypatch.setattr(build, "BTF_PATH", missing)
    for attempt in (build.generate_vmlinux_header, build.build_object):  # the second is what the CLI calls
        with pytest.raises(CaptureError) as caught:
            attempt(tmp_path / "bpf")
        assert caught.value.cause == f"this kernel has no BTF ({missing} is missing)"
        assert "CONFIG_DEBUG_INFO_BTF=y" in caught.value.remedy
        assert str(caught.value) == f"{caught.value.cause}. {caught.value.remedy}"
    assert not (tmp_path / "bpf").exists()


def test_missing_libbpf_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []

    def no_such_library(name: str, *args: Any, **kwargs: Any) -> None:
        tried.append(name)
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(ctypes, "CDLL", no_such_library)  # for this test only
    with pytest.raises(CaptureError) as caught:
        libbpf.Libbpf()
    assert tried[0] == "libbpf.so.1"
    assert caught.value.cause == "libbpf is not installed (libbpf.so.1 not found)"
    assert "apt-get install libbpf1" in caught.value.remedy


# --- the agent process on the real kernel ------------------------------------------------------


@pytest.mark.kernel
def test_sigterm_drains_and_aggregates_the_open_window(tmp_path: Path, bpf_object: Path) -> None:
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--window-seconds", "60", "run"]
    with agent_process(args, agent_env(bpf_object)) as agent:
        agent.wait_for("agent running")
        said = exchange(12345, 678)
        assert agent.stop(signal.SIGTERM) == 0, agent.stderr
    assert "Traceback" not in agent.stderr
    assert "received SIGTERM: finishing the open window" in agent.stderr
    assert "stopped:" in agent.stderr
    assert_flows_count_once(data / "netflow.db", said)

    status = run_cli("status", "--data-dir", str(data), "--window-seconds", "60")
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    counts = read_rows(
        data / "netflow.db",
        "SELECT (SELECT count(*) FROM socket_events) AS socket_events, (SELECT count(*) FROM flows) AS flows",
    )[0]
    assert state["rows"] == counts and counts["flows"] > 0
    first_seen = read_rows(
        data / "netflow.db", "SELECT max(first_seen) AS t FROM flows WHERE pid = ?", (said.client_pid,)
    )[0]["t"]
    assert state["aggregated_until"] > first_seen  # the open window was aggregated at shutdown
    assert state["counters"]["map_evictions"] == 0

    # standalone mode: the same flows, as osquery result lines in the spool, each once
    from extension.results import FLOWS_QUERY  # noqa: PLC0415
    from extension.spool import Spool  # noqa: PLC0415

    spool = Spool(data / "spool.db", max_bytes=1 << 30)
    batch = spool.next_batch(max_bytes=1 << 30, max_lines=1_000_000)
    spool.close()
    assert batch is not None and batch.log_type == "result"
    results = [json.loads(line) for line in batch.lines]
    client = [
        r["columns"]
        for r in results
        if r["name"] == FLOWS_QUERY and r["columns"]["pid"] == str(said.client_pid)
    ]
    assert sum(int(c["bytes_sent"]) for c in client) == said.c2s
    assert sum(int(c["bytes_received"]) for c in client) == said.s2c


@pytest.mark.kernel
def test_one_agent_per_data_directory(tmp_path: Path, bpf_object: Path) -> None:
    """A second agent on the same data directory would count everything twice: it must refuse, name
    the running one, and leave it undisturbed; after the first stops, a new one starts."""
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "run"]
    with agent_process(args, agent_env(bpf_object)) as first:
        first.wait_for("agent running")
        second = run_cli(*args, env=agent_env(bpf_object))
        line = only_error_line(second)
        assert f"another agent (pid {first.proc.pid})" in line and "EXTENSION_DATA_DIR" in line
        assert first.proc.poll() is None
        assert first.stop(signal.SIGTERM) == 0, first.stderr
    with agent_process(args, agent_env(bpf_object)) as third:
        third.wait_for("agent running")
        assert third.stop(signal.SIGTERM) == 0, third.stderr


@pytest.mark.kernel
def test_kill_and_restart_counts_nothing_twice(tmp_path: Path, bpf_object: Path) -> None:
    data = tmp_path / "data"
    database = data / "netflow.db"
    args = ["--data-dir", str(data), "--window-seconds", "60", "run"]
    with agent_process(args, agent_env(bpf_object)) as first:
        first.wait_for("agent running")
        a = exchange(5555, 444)
        wait_committed(database, a)
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    with agent_process(args, agent_env(bpf_object)) as second:
        second.wait_for("agent running")
        b = exchange(7777, 333)
        assert second.stop(signal.SIGTERM) == 0, second.stderr
    assert "Traceback" not in first.stderr + second.stderr
    assert_flows_count_once(database, a)
    assert_flows_count_once(database, b)
    # the raw rows were not duplicated either
    assert totals(database, "socket_events", a.client_pid) == (a.c2s, a.s2c)


def run_capture(tmp_path: Path, bpf_object: Path, fmt: str, seconds: int) -> tuple[Exchange, list[str]]:
    """``capture`` with an exchange made while it is attached; returns the exchange and stdout lines."""
    out = tmp_path / f"capture.{fmt}"
    args = ["--data-dir", str(tmp_path / "data"), "capture", "--seconds", str(seconds), "--format", fmt]
    with out.open("w") as stdout, agent_process(args, agent_env(bpf_object), stdout) as capture:
        capture.wait_for("capturing with hook set")
        said = exchange(4321, 1234)
        assert capture.wait(timeout=30) == 0, capture.stderr
    assert "Traceback" not in capture.stderr
    return said, out.read_text().splitlines()


@pytest.mark.kernel
def test_capture_json(tmp_path: Path, bpf_object: Path) -> None:
    said, lines = run_capture(tmp_path, bpf_object, "json", 3)
    rows = [json.loads(line) for line in lines]
    assert rows
    for row in rows:
        assert isinstance(row, dict)
        assert set(VOCABULARY) <= set(row)
    client = [row for row in rows if row["pid"] == said.client_pid]
    assert sum(row["bytes_sent"] for row in client) == said.c2s
    assert sum(row["bytes_received"] for row in client) == said.s2c
    assert sum(row["connections"] for row in client) == 1
    for row in client:
        assert row["protocol"] == "tcp" and row["family"] == 4
        assert row["direction"] == "outbound"
        assert row["remote_address"] == "127.0.0.1" and row["remote_port"] == said.server_port
        assert row["window_seconds"] == 60


@pytest.mark.kernel
def test_capture_table(tmp_path: Path, bpf_object: Path) -> None:
    said, lines = run_capture(tmp_path, bpf_object, "table", 2)
    assert lines[0].split() == TABLE_HEADER
    client = [line.split() for line in lines[1:] if line.split()[1] == str(said.client_pid)]
    assert client, lines
    if len(client) == 1:  # (one row unless the exchange straddled a window boundary)
        shown = " ".join(client[0])
        assert "4.3 kB" in shown and "1.2 kB" in shown


@pytest.mark.kernel
def test_live_summary_of_the_main_job(tmp_path: Path, bpf_object: Path) -> None:
    """What ./scripts/main shows: a per-process summary with the hook set and the loss counters, and
    the process that exchanged traffic in it, with its bytes."""
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "run", "--live", "--live-interval", "1", "--duration", "4"]
    with agent_process(args, agent_env(bpf_object), stdout=subprocess.PIPE) as agent:
        agent.wait_for("agent running")
        said = exchange(54321, 1234)
        assert agent.wait(timeout=30) == 0, agent.stderr
        assert agent.proc.stdout is not None
        shown = agent.proc.stdout.read()
        agent.proc.stdout.close()
    summaries = [block for block in shown.split("\n== ") if "hook set" in block]
    assert len(summaries) >= 2  # at least one while running and the final one
    final = summaries[-1]
    assert "evicted 0" in final and "ring lost 0" in final
    client_line = next(line for line in final.splitlines() if line.startswith(f"{said.client_pid} "))
    assert "54.3 kB" in client_line and "1.2 kB" in client_line
