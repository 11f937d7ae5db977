"""``python -m extension osquery --socket PATH [--timeout N] [--interval N] [--verbose]``: run as an
osquery extension serving the tables of extension.osquery_plugins.

osqueryd starts an autoloaded extension with exactly these flags. This module validates them itself
(osquery-python exits 2 on anything else and, without ``--verbose``, returns silently with status 0
when the socket cannot be reached), registers the table plugins and hands over to osquery-python's
``start_extension``, which registers with the core and serves ``<socket>.<uuid>`` until the process
ends.

How it ends (osquery-python's behaviour, not ours): a watchdog thread pings the core every
``--interval`` seconds and calls ``os._exit(1)`` when a ping fails (osqueryd stopped or restarted);
a ``shutdown`` request from the core ends the process with ``os._exit(0)`` a second later. Neither
runs cleanup code. That is safe here: the extension only reads the store (read-only SQLite), so
nothing is lost or left half-written; osqueryd restarts autoloaded extensions itself.

Exit codes: 2 for bad flags, 1 when the socket is missing or the core refuses the registration, 1
when the core goes away (the watchdog), 0 after a shutdown request.
"""

from __future__ import annotations

import argparse
import logging
import stat
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from extension.settings import Settings

log = logging.getLogger(__name__)

EXTENSION_NAME = "osquery-netflow"
MAX_SECONDS = 3600


class UsageError(ValueError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if not 1 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{value} is out of range: use 1 to {MAX_SECONDS} seconds")
    return value


def _parser() -> _Parser:
    parser = _Parser(
        prog="python -m extension osquery",
        description="Serve net_socket_events, net_flows and net_agent_status to osqueryd as an extension. "
        "osqueryd passes these flags when it autoloads the extension.",
        add_help=False,
    )
    parser.add_argument("--socket", required=True, help="osqueryd's extensions socket (--extensions_socket)")
    parser.add_argument(
        "--timeout", type=_seconds, default=3, help="seconds to wait for the socket (default 3)"
    )
    parser.add_argument(
        "--interval", type=_seconds, default=3, help="seconds between pings of the core (default 3)"
    )
    parser.add_argument("--verbose", action="store_true", help="log at debug level")
    return parser


def usage() -> str:
    return _parser().format_help()


def parse_flags(argv: Sequence[str]) -> argparse.Namespace:
    """The extension's flags; UsageError naming the problem on anything else."""
    args = _parser().parse_args(list(argv))
    if not args.socket:
        raise UsageError("--socket must not be empty")
    return args


def _error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def _version() -> str:
    from extension import __version__  # noqa: PLC0415

    return __version__


def _socket_problem(path: str) -> str | None:
    """None when ``path`` is a Unix socket, else what is wrong with it."""
    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None if stat.S_ISSOCK(mode) else "is not a socket"


ERROR_FILE_NOT_FOUND = 2
ERROR_SEM_TIMEOUT = 121


def _pipe_problem(
    path: str, wait_named_pipe: Callable[[str, int], tuple[bool, int]] | None = None
) -> str | None:
    """Windows: None when osqueryd's named pipe has an instance waiting (WaitNamedPipeW, which does not
    take the instance, as opening the pipe to look at it would)."""
    if wait_named_pipe is None:
        wait_named_pipe = _wait_named_pipe
    ok, error = wait_named_pipe(path, 100)
    if ok:
        return None
    if error == ERROR_FILE_NOT_FOUND:
        return "does not exist"
    if error == ERROR_SEM_TIMEOUT:
        return "is busy (no free instance of the pipe)"
    return f"cannot be opened (Win32 error {error})"


def _wait_named_pipe(name: str, timeout_ms: int) -> tuple[bool, int]:  # pragma: no cover - Windows only
    import ctypes  # noqa: PLC0415

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    ok = bool(kernel32.WaitNamedPipeW(ctypes.c_wchar_p(name), ctypes.c_uint32(timeout_ms)))
    return ok, 0 if ok else int(ctypes.get_last_error())  # type: ignore[attr-defined]


def _wait_for_socket(
    path: str,
    timeout: float,
    *,
    platform: str = sys.platform,
    problem: Callable[[str], str | None] | None = None,
) -> str | None:
    """None once osqueryd's extension socket (a named pipe on Windows) is there; otherwise why not,
    after ``timeout`` seconds."""
    check = problem or (_pipe_problem if platform == "win32" else _socket_problem)
    deadline = time.monotonic() + timeout
    while True:
        found = check(path)
        if found is None or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def run_extension(argv: Sequence[str], settings: Settings) -> int:
    """Run as an osquery extension until the core goes away; returns an exit code on failure to
    start (2: bad flags, 1: no socket or registration refused). See the module docstring."""
    try:
        args = parse_flags(argv)
    except UsageError as exc:
        _error(f"{exc}\n\n{usage()}")
        return 2
    if args.verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    socket_path = str(args.socket)  # kept as given: a Windows pipe name is no file path
    problem = _wait_for_socket(socket_path, args.timeout)
    if problem is not None:
        _error(
            f"osqueryd's extension socket {socket_path} {problem}; start osqueryd with "
            f"--extensions_socket={socket_path} (or pass the socket it uses) and let it autoload this "
            "extension"
        )
        return 1

    import osquery  # noqa: PLC0415 - only this command needs the SDK
    from osquery.extensions.ttypes import ExtensionException  # noqa: PLC0415
    from thrift.Thrift import TException  # noqa: PLC0415

    from extension.osquery_logger import NetForwarder  # noqa: PLC0415
    from extension.osquery_plugins import register_plugins  # noqa: PLC0415

    manager = osquery.ExtensionManager()
    tables = register_plugins(manager, settings.database_path, window_seconds=settings.window_seconds)
    NetForwarder.configure(settings.spool_path, max_bytes=settings.spool_max_bytes)
    manager.add_plugin(NetForwarder)
    log.info(
        "osquery extension %s: tables %s from %s, core socket %s",
        EXTENSION_NAME,
        ", ".join(tables),
        settings.database_path,
        socket_path,
    )
    # start_extension parses sys.argv itself and exits 2 on any flag it does not know
    sdk_argv = [sys.argv[0] if sys.argv else "osquery-netflow", "--socket", socket_path]
    sdk_argv += ["--timeout", str(args.timeout), "--interval", str(args.interval)]
    # --verbose makes the SDK raise (instead of returning silently) when the socket cannot be opened
    sdk_argv.append("--verbose")
    saved_argv = sys.argv
    sys.argv = sdk_argv
    try:
        # serves until the process ends: the watchdog's os._exit(1) or a shutdown's os._exit(0)
        result: Any = osquery.start_extension(name=EXTENSION_NAME, version=_version())
    except ExtensionException as exc:
        _error(f"osqueryd at {socket_path} did not accept the extension: {exc.message}")
        return 1
    except (TException, OSError) as exc:
        _error(f"talking to osqueryd at {socket_path} failed: {exc}")
        return 1
    finally:
        sys.argv = saved_argv
    del result
    _error(f"could not connect to osqueryd's extension socket {socket_path}")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry for tests and wrappers: settings from the environment only."""
    from extension import settings as settings_module  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_module.load()
    except settings_module.SettingsError as exc:
        _error(f"{exc}")
        return 1
    return run_extension(sys.argv[1:] if argv is None else argv, settings)


if __name__ == "__main__":
    sys.exit(main())
