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
  worker    the detection worker (needs the version of the service with the detection pipeline)
  beat      the detection scheduler (same)
  maintain  create flow partitions ahead, drop those past retention, then exit
  cli       any command of python -m fleet_analytics, e.g.: cli enroll-secret rotate
  help      this text

Settings are FLEET_* environment variables; FLEET_DATABASE_URL is the PostgreSQL to use.
EOF
}

fleet() {
    "$PYTHON" -m fleet_analytics "$@"
}

# Whether this version's command line has a command: `--help` lists each on a line of its own,
# indented by four spaces.
has_command() {
    if ! help_text="$("$PYTHON" -m fleet_analytics --help 2>&1)"; then
        echo "error: '$PYTHON -m fleet_analytics --help' failed:" >&2
        printf '%s\n' "$help_text" >&2
        exit 1
    fi
    printf '%s\n' "$help_text" | grep -Eq "^    $1( |\$)"
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
    migrate | maintain)
        exec "$PYTHON" -m fleet_analytics "$role" "$@"
        ;;
    worker | beat)
        if ! has_command "$role"; then
            echo "error: the role '$role' is not available in this version of the fleet service:" \
                "'python -m fleet_analytics $role' comes with the detection pipeline" >&2
            exit 64
        fi
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
