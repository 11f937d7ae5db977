"""Command line of the fleet service: ``python -m fleet_analytics migrate`` (more commands come with
the service: serve, enroll-secret, worker, beat, ...)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fleet_analytics.db import MigrationError, migrate
from fleet_analytics.embedded import EmbeddedPostgres, EmbeddedPostgresError


def default_data_dir() -> Path:
    return (
        Path("/var/lib/osquery-netflow-fleet")
        if os.geteuid() == 0
        else Path.home() / ".local/state/osquery-netflow-fleet"
    )


def cmd_migrate(_args: argparse.Namespace) -> int:
    url = os.environ.get("FLEET_DATABASE_URL", "")
    if url:
        applied = migrate(url)
    else:
        data_dir = Path(os.environ.get("FLEET_DATA_DIR") or default_data_dir())
        with EmbeddedPostgres(data_dir) as pg:
            applied = migrate(pg.dsn)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else "; up to date"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fleet_analytics",
        description="The fleet analytics service. Settings: FLEET_DATABASE_URL (an external PostgreSQL "
        "15+; without it an embedded PostgreSQL runs in FLEET_DATA_DIR).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("migrate", help="apply the pending schema migrations (idempotent)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return {"migrate": cmd_migrate}[args.command](args)
    except (MigrationError, EmbeddedPostgresError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
