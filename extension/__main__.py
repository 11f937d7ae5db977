"""Command line of the endpoint agent: ``python -m extension {run,capture} ...``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from extension import settings as settings_module
from extension.events import Record
from extension.settings import Settings, SettingsError
from extension.sources.base import CaptureError, EventSource
from extension.store import Store, StoreError

if TYPE_CHECKING:
    from extension.collector import CollectorStatus

log = logging.getLogger("extension")


EPILOG = """\
examples:
  python -m extension capture --seconds 10                 capture 10 s, print flows as a table
  python -m extension capture --seconds 5 --format json    one JSON object per flow and line
  python -m extension run                                  the long-running agent (SIGTERM stops it)
  python -m extension run --live --window-seconds 10       ... with a live per-process summary
  python -m extension status                               rows, watermark and loss counters (JSON)
  python -m extension spec                                 the osquery tables' schemas
  python -m extension osquery --socket /var/osquery/osquery.em --timeout 3 --interval 3
                                                           as an osquery extension (osqueryd runs this)
  EXTENSION_DATA_DIR=/tmp/nf python -m extension run       keep the database somewhere else

settings (environment, or the same names in a TOML/JSON file given by EXTENSION_CONFIG or --config):
  EXTENSION_DATA_DIR             database and BPF build cache (default /var/lib/osquery-netflow as root,
                                 %ProgramData%\\osquery-netflow on Windows)
  EXTENSION_WINDOW_SECONDS       flow aggregation interval, default 60
  EXTENSION_DRAIN_INTERVAL       seconds between drains of the kernel counters, default 1
  EXTENSION_RAW_RETENTION_SECONDS  raw rows kept after aggregation, default 3600
  EXTENSION_FLOW_RETENTION_SECONDS flow rows kept, default 604800 (7 days)
  EXTENSION_EXCLUDE_LOOPBACK     true to ignore loopback traffic (default false: captured)
  EXTENSION_MAP_ENTRIES          flow table capacity (kernel map; on Windows in user space), default 65536
  EXTENSION_RESOLVE_HOSTNAMES    reverse DNS in the background, default true
  EXTENSION_DNS_SNOOP            learn host names from the DNS answers processes receive (on Windows
                                 from the DNS client's ETW events), default true
  EXTENSION_BPF_OBJECT           a prebuilt netflow.bpf.o (otherwise built with clang)
  EXTENSION_SPOOL_MAX_BYTES      bound of the outbound spool of osquery logs, default 104857600
  EXTENSION_EMIT_RESULTS         run: spool the pack's rows as osquery result lines, default true
                                 (set false where osqueryd runs the pack itself)
  EXTENSION_LOG_LEVEL            debug, info (default), warning

needs root (BPF), a kernel with BTF, libbpf1; clang, llvm and bpftool to build the BPF program.
"""


def _common_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Options accepted before and after the command; after it, they only override when given."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--config", type=Path, default=default(None), help="settings file (TOML, or JSON by its .json suffix)"
    )
    parser.add_argument("--data-dir", type=Path, default=default(None), help="overrides EXTENSION_DATA_DIR")
    parser.add_argument(
        "--window-seconds", type=int, default=default(None), help="overrides EXTENSION_WINDOW_SECONDS"
    )
    parser.add_argument(
        "--exclude-loopback", action="store_true", default=default(None), help="ignore loopback traffic"
    )
    parser.add_argument(
        "--log-level", default=default(os.environ.get("EXTENSION_LOG_LEVEL", "info")), help="debug, info, ..."
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m extension",
        description="Per-process network traffic from the kernel (eBPF), stored in SQLite and "
        "aggregated into time windows, for osquery.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    run = commands.add_parser(
        "run",
        parents=[common],
        help="the long-running agent: capture, store, aggregate, prune",
        description="Capture until SIGTERM/SIGINT, then drain and aggregate what is open and exit.",
    )
    run.add_argument("--live", action="store_true", help="print a per-process summary every few seconds")
    run.add_argument("--live-interval", type=float, default=5.0, help="seconds between summaries")
    run.add_argument("--duration", type=float, help="stop after this many seconds")

    capture = commands.add_parser(
        "capture",
        parents=[common],
        help="capture for N seconds and print the flows",
        description="Attach, capture for N seconds into a temporary database, print the flows, detach.",
    )
    capture.add_argument("--seconds", type=float, default=10.0, help="how long to capture (default 10)")
    capture.add_argument("--format", choices=("table", "json"), default="table")

    commands.add_parser(
        "osquery",
        help="run as an osquery extension: osqueryd starts it with --socket PATH --timeout N --interval N",
        description="Serve the tables net_socket_events, net_flows and net_agent_status to osqueryd. "
        "Takes exactly osqueryd's extension flags: --socket PATH [--timeout N] [--interval N] [--verbose]; "
        "settings come from EXTENSION_* variables (EXTENSION_DATA_DIR: the agent's database).",
        add_help=False,
    )
    spec = commands.add_parser(
        "spec",
        help="print the osquery tables' schemas",
        description="The columns and types of every table the extension serves.",
    )
    spec.add_argument("--format", choices=("table", "json"), default="table")

    commands.add_parser(
        "status",
        parents=[common],
        help="what the database holds: rows, the aggregation watermark and every loss counter",
        description="Read the agent's database (no capture, no root needed) and print its state as JSON.",
    )
    return parser


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {
        "data_dir": args.data_dir,
        "window_seconds": args.window_seconds,
        "exclude_loopback": args.exclude_loopback,
        **extra,
    }
    return settings_module.load(config_file=args.config, overrides=overrides)


def _source_factory(
    settings: Settings, platform: str = sys.platform
) -> Callable[[Callable[[Record], None]], EventSource]:
    """The capture source of this platform: ETW on Windows, eBPF elsewhere."""

    def factory(on_record: Callable[[Record], None]) -> EventSource:
        if platform == "win32":
            from extension.sources.etw import EtwSource  # noqa: PLC0415 - Windows only
            from extension.sources.etw_win32 import Win32TraceApi  # noqa: PLC0415

            return EtwSource(
                Win32TraceApi(), on_record=on_record, dns=settings.dns_snoop, max_flows=settings.map_entries
            )
        from extension.bpf.build import build_object  # noqa: PLC0415 - Linux-only, imported when used
        from extension.sources.ebpf import EbpfSource, preflight  # noqa: PLC0415

        preflight()
        path = settings.bpf_object or build_object(settings.bpf_build_dir)
        if not path.exists():
            raise CaptureError(
                f"the BPF object {path} does not exist", "fix EXTENSION_BPF_OBJECT or unset it to build"
            )
        return EbpfSource(
            path,
            map_entries=settings.map_entries,
            ringbuf_bytes=settings.ringbuf_bytes,
            exclude_loopback=settings.exclude_loopback,
            on_record=on_record,
            dns=settings.dns_snoop,
        )

    return factory


def _human_bytes(count: object) -> str:
    value = float(count) if isinstance(count, int | float) else 0.0
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def print_table(rows: Sequence[dict[str, object]], columns: Sequence[str], out: TextIO) -> None:
    if not rows:
        out.write("(no rows)\n")
        return
    cells = [[str(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    out.write("  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)) + "\n")
    for line in cells:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) + "\n")


def print_summary(store: Store, since: int, collector_status: CollectorStatus, out: TextIO) -> None:
    rows = store.summary_by_process(since=since, limit=15)
    for row in rows:
        for column in ("bytes_sent", "bytes_received"):
            row[column] = _human_bytes(row.get(column, 0))
    source = collector_status.source
    out.write(
        f"\n== {time.strftime('%H:%M:%S')}  hook set {source.hook_set}  calls {source.events}  "
        f"evicted {source.map_evictions}  ring lost {source.ringbuf_lost}  "
        f"rows {collector_status.rows_written}  flow rows {collector_status.flows_written}\n"
    )
    columns = [c for c in (rows[0].keys() if rows else ()) if c != "process_path"]
    print_table(rows, columns or ["pid"], out)
    out.flush()


def _install_signal_handlers(stop: Callable[[], None]) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: finishing the open window", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    if hasattr(signal, "SIGBREAK"):  # Windows: Ctrl-Break, and what a console close sends
        signal.signal(signal.SIGBREAK, handler)


LOCK_OFFSET_WINDOWS = 1 << 30  # Windows locks are mandatory: lock a byte past the pid, so it stays readable


def _lock_exclusive(handle: TextIO, platform: str = sys.platform) -> None:
    """Take the open file's exclusive lock without waiting (released when the process ends); raises
    BlockingIOError when another process holds it."""
    if platform == "win32":
        import msvcrt  # noqa: PLC0415 - Windows only

        position = handle.tell()
        handle.seek(LOCK_OFFSET_WINDOWS)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError as exc:  # EACCES or EDEADLOCK, depending on the C runtime: held by another
            raise BlockingIOError(str(exc)) from exc
        finally:
            handle.seek(position)
        return
    import fcntl  # noqa: PLC0415 - POSIX only

    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _lock_data_dir(data_dir: Path, platform: str = sys.platform) -> TextIO:
    """One agent per data directory: a second one would count every byte a second time into the
    same database. The lock is held while the returned file is open and vanishes with the process."""
    path = data_dir / "agent.lock"
    try:
        if platform == "win32" and not data_dir.exists():
            from extension.windows_files import create_private_directory  # noqa: PLC0415 - Windows only

            create_private_directory(data_dir)  # not writable by other users: see that module
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open for the life of the agent
    except OSError as exc:
        reason = "it is a file" if data_dir.exists() and not data_dir.is_dir() else exc.strerror or str(exc)
        raise StoreError(
            f"data directory {data_dir} is not writable ({reason}, so {path.name} cannot be created); "
            "set EXTENSION_DATA_DIR to a writable directory"
        ) from None
    try:
        _lock_exclusive(handle, platform)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StoreError(
            f"another agent (pid {holder}) is already running with data directory {data_dir}; "
            "stop it first, or give this one its own EXTENSION_DATA_DIR"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def cmd_run(args: argparse.Namespace) -> int:
    from extension.collector import Collector  # noqa: PLC0415 - keeps --help fast
    from extension.osquery_plugins import agent_status_row  # noqa: PLC0415
    from extension.results import STATUS_EVERY, ResultEmitter  # noqa: PLC0415
    from extension.spool import Spool  # noqa: PLC0415
    from extension.uplink import Uplink, spool_info  # noqa: PLC0415

    settings = _settings(args)
    lock = _lock_data_dir(settings.data_dir)  # noqa: F841 - held until the process exits
    store = Store(settings.database_path, window_seconds=settings.window_seconds)
    # raw rows carry whole seconds: the summary starts at the second the capture started in
    started = int(time.time())
    # the spool: standalone result lines go in, the logger plugin of osqueryd's extension appends too,
    # and the uplink (when a fleet URL is set) forwards it while on the enterprise network
    spool = Spool(settings.spool_path, max_bytes=settings.spool_max_bytes)
    uplink = Uplink(settings, spool) if settings.fleet_url else None
    try:
        collector = Collector(
            settings=settings,
            store=store,
            source_factory=_source_factory(settings),
            results=ResultEmitter(store, spool) if settings.emit_results else None,
        )
        if uplink is not None:
            uplink.start()
        _install_signal_handlers(collector.stop)
        status = collector.status().source
        log.info(
            "agent running: hook set %s, database %s, window %d s",
            status.hook_set,
            settings.database_path,
            settings.window_seconds,
        )
        last_live = [time.monotonic()]
        last_status = [float("-inf")]  # the first tick reports the agent's status
        status_emitter = ResultEmitter(store, spool) if settings.emit_results else None
        reported: dict[str, object] = {}

        def on_tick(current: Collector) -> None:
            # the spool's and the uplink's state, for net_agent_status and `status` (when it changed)
            state = spool_info(spool) | (uplink.info() if uplink is not None else {})
            if state != reported:
                store.set_info(state)
                reported.clear()
                reported.update(state)
            if status_emitter is not None and time.monotonic() - last_status[0] >= STATUS_EVERY:
                last_status[0] = time.monotonic()
                status_emitter.emit_status(agent_status_row(store))
            if args.live and time.monotonic() - last_live[0] >= args.live_interval:
                last_live[0] = time.monotonic()
                print_summary(store, started, current.status(), sys.stdout)

        try:
            collector.run(duration=args.duration, on_tick=on_tick)
        finally:
            collector.close()
            if uplink is not None:
                uplink.stop()
            on_tick(collector)
        final = collector.status()
        log.info(
            "stopped: %d raw rows and %d flow rows written this run", final.rows_written, final.flows_written
        )
        if args.live:
            print_summary(store, started, final, sys.stdout)
    finally:
        store.close()
        spool.close()
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    from extension.collector import Collector  # noqa: PLC0415

    base = _settings(args)
    with tempfile.TemporaryDirectory(prefix="netflow-capture-") as tmp:
        # the database is temporary; the BPF build cache stays in the data directory
        settings = dataclasses.replace(
            base, data_dir=Path(tmp), bpf_object=base.bpf_object or _build_into(base)
        )
        store = Store(settings.database_path, window_seconds=settings.window_seconds)
        try:
            collector = Collector(settings=settings, store=store, source_factory=_source_factory(settings))
            _install_signal_handlers(collector.stop)
            try:
                collector.run(duration=args.seconds)
            finally:
                collector.close()
            flows = store.flows()
        finally:
            store.close()
    out = sys.stdout
    if args.format == "json":
        for row in flows:
            # the flows table's own columns (sql/endpoint/schema.sql), in order, but its internal id
            out.write(json.dumps({column: value for column, value in row.items() if column != "id"}) + "\n")
    else:
        shown = [dict(row) for row in flows]
        for row in shown:
            row["bytes_sent"] = _human_bytes(row["bytes_sent"])
            row["bytes_received"] = _human_bytes(row["bytes_received"])
        columns = [
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
        print_table(shown, columns, out)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from extension.collector import LOSS_COUNTERS  # noqa: PLC0415

    settings = _settings(args)
    with Store(settings.database_path, window_seconds=settings.window_seconds, read_only=True) as store:
        state = {
            "database": str(settings.database_path),
            "rows": store.row_counts(),
            "aggregated_until": store.watermark(),
            "agent": store.info(),
            "counters": {name: 0 for name in LOSS_COUNTERS} | store.counters(),
        }
    sys.stdout.write(json.dumps(state, indent=2) + "\n")
    return 0


def _build_into(base: Settings) -> Path:
    from extension.bpf.build import build_object  # noqa: PLC0415
    from extension.sources.ebpf import preflight  # noqa: PLC0415

    preflight()
    return build_object(base.bpf_build_dir)


def cmd_spec(args: argparse.Namespace) -> int:
    from extension.osquery_plugins import table_specs  # noqa: PLC0415

    specs = table_specs()
    if args.format == "json":
        sys.stdout.write(
            json.dumps({table: dict(columns) for table, columns in specs.items()}, indent=2) + "\n"
        )
        return 0
    for table, columns in specs.items():
        sys.stdout.write(f"CREATE TABLE {table} (\n")
        sys.stdout.write(",\n".join(f"  {name} {kind}" for name, kind in columns))
        sys.stdout.write("\n);\n")
    return 0


def osquery_entry() -> int:
    """``osquery-netflow-extension``: the console script osqueryd autoloads (on Windows pip makes it an
    ``.exe``, the only suffix osqueryd autoloads there); the same as ``python -m extension osquery``."""
    return main(["osquery", *sys.argv[1:]])


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["osquery"]:
        # osqueryd's flags, which osquery-python parses itself: handed over untouched
        from extension.osquery_main import run_extension  # noqa: PLC0415

        logging.basicConfig(
            level=os.environ.get("EXTENSION_LOG_LEVEL", "info").upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        try:
            return run_extension(arguments[1:], settings_module.load())
        except SettingsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    args = _parser().parse_args(arguments)
    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        print(
            f"error: unknown log level {args.log_level!r}; use debug, info, warning or error", file=sys.stderr
        )
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commands = {"run": cmd_run, "capture": cmd_capture, "status": cmd_status, "spec": cmd_spec}
    try:
        return commands[args.command](args)
    except (CaptureError, StoreError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
