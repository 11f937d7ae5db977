#!/bin/sh
# Entrypoint of the fleet service's image (docker/fleet.Dockerfile): the first argument picks the role,
# the others are passed to its command. Also runs outside a container, from a checkout:
#   PYTHON=.venv/bin/python sh docker/fleet-entrypoint.sh migrate
# Settings are FLEET_* variables (fleet_analytics/config.py); this script reads two more:
#   FLEET_PORT              the port of the web role (default 8080)
#   FLEET_MIGRATE_ON_START  the web role migrates the database before serving (default true)
# and PYTHON, the interpreter (default: python on PATH).
set -eu

PYTHON="${PYTHON:-python}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# the package is imported from the checkout (or /app in the image) whatever the working directory
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

usage() {
    cat >&2 <<'EOF'
usage: fleet-entrypoint.sh ROLE [ARGS...]

roles:
  web       migrate the database (unless FLEET_MIGRATE_ON_START=false), then serve on
            0.0.0.0:$FLEET_PORT (default 8080); ARGS go to `serve` (e.g. --workers 4)
  migrate   apply the pending schema migrations, then exit
  worker    the Celery worker: scoring, training, maintenance; ARGS go to `worker`
            (e.g. --concurrency 2); every worker needs the same FLEET_MODEL_KEY
  beat      the Celery beat scheduler: catch-up scoring, nightly retraining, hourly maintenance;
            run exactly one
  maintain  create flow partitions ahead, drop those past retention, then exit
  cli       any command of python -m fleet_analytics, e.g.: cli enroll-secret rotate
  help      this text

Settings are FLEET_* environment variables; FLEET_DATABASE_URL is the PostgreSQL to use and
FLEET_BROKER_URL the Redis of worker, beat and web (empty: an embedded Redis in FLEET_DATA_DIR).
EOF
}

fleet() {
    "$PYTHON" -m fleet_analytics "$@"
}

is_true() { # $1: variable name, $2: its value
    case "$(printf '%s' "$2" | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes | on) return 0 ;;
        0 | false | no | off) return 1 ;;
        *)
            echo "error: $1 is '$2': use true or false" >&2
            exit 2
            ;;
    esac
}

if [ "$#" -eq 0 ]; then
    usage
    exit 2
fi
role="$1"
shift

case "$role" in
    web)
        if is_true FLEET_MIGRATE_ON_START "${FLEET_MIGRATE_ON_START:-true}"; then
            fleet migrate
        fi
        exec "$PYTHON" -m fleet_analytics serve --host 0.0.0.0 --port "${FLEET_PORT:-8080}" "$@"
        ;;
    migrate | maintain | worker | beat)
        exec "$PYTHON" -m fleet_analytics "$role" "$@"
        ;;
    cli)
        exec "$PYTHON" -m fleet_analytics "$@"
        ;;
    *)
        [ "$role" = help ] || echo "error: unknown role '$role'" >&2
        usage
        exit 2
        ;;
esac
