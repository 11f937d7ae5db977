# syntax=docker/dockerfile:1
# The endpoint: osqueryd with the extension autoloaded, plus the agent that captures and forwards. It
# captures the HOST's traffic, so it must run privileged, in the host's PID and network namespaces,
# with the host's BTF and cgroup v2 mounted:
#
#   docker build -f docker/endpoint.Dockerfile -t osquery-netflow-endpoint .
#   docker run -d --name netflow-endpoint --init --privileged --pid=host --network=host \
#     -v /sys/kernel/btf:/sys/kernel/btf:ro -v /sys/fs/cgroup:/sys/fs/cgroup:ro \
#     -v /var/lib/osquery-netflow:/var/lib/osquery-netflow -v /var/osquery:/var/osquery \
#     -e EXTENSION_FLEET_URL=https://fleet.example.com:8443 -e EXTENSION_ENROLL_SECRET=... \
#     osquery-netflow-endpoint
#
# Commands (the image's entrypoint, /usr/local/bin/netflow-endpoint):
#   osqueryd [FLAGS...]  (default) the agent (python -m extension run), and osqueryd autoloading the
#                        extension and running the pack; FLAGS (also given alone) are added to osqueryd's
#   agent [ARGS...]      the agent alone, without osqueryd ("standalone": it spools the pack's rows
#                        itself); ARGS go to `python -m extension run`
#   anything else        run as is: osqueryi, python -m extension status, sh
#
# The BPF object is built at first start against the running kernel's BTF (CO-RE) and cached in the
# data volume. Needs BuildKit (the default builder since Docker 23) for the here-documents below. Not
# built where this was written (no container engine); see docker/README.md.
FROM python:3.11-slim-bookworm

# osquery from its official apt repository (amd64 only), and the toolchain the agent builds its BPF
# program with (clang, llvm, bpftool) and loads it with (libbpf).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && install -d -m 0755 /etc/apt/keyrings \
 && curl -fsSL https://pkg.osquery.io/deb/pubkey.gpg -o /etc/apt/keyrings/osquery.asc \
 && echo "deb [arch=amd64 signed-by=/etc/apt/keyrings/osquery.asc] https://pkg.osquery.io/deb deb main" \
      > /etc/apt/sources.list.d/osquery.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends osquery clang llvm libbpf-dev libbpf1 bpftool \
 && rm -rf /var/lib/apt/lists/*

# The project where the autoload wrapper expects it: /opt/osquery-netflow, with its virtualenv in .venv
# (packaging/osquery-netflow.ext runs $OSQUERY_NETFLOW_HOME/.venv/bin/python -m extension osquery).
# Runtime dependencies only: requirements.txt without its "# Tests and checks" section.
WORKDIR /opt/osquery-netflow
COPY requirements.txt ./
RUN sed '/^# Tests and checks/,$d' requirements.txt > /tmp/runtime.txt \
 && python -m venv /opt/osquery-netflow/.venv \
 && /opt/osquery-netflow/.venv/bin/pip install --no-cache-dir --disable-pip-version-check \
      -r /tmp/runtime.txt \
 && rm /tmp/runtime.txt
COPY extension ./extension
COPY sql ./sql
RUN find extension -name __pycache__ -prune -exec rm -rf {} +

ENV PATH=/opt/osquery-netflow/.venv/bin:$PATH \
    OSQUERY_NETFLOW_HOME=/opt/osquery-netflow \
    EXTENSION_DATA_DIR=/var/lib/osquery-netflow \
    PYTHONUNBUFFERED=1

# Autoload (docs/osquery.md, "Installing the extension"): osqueryd only starts a file whose name ends in
# .ext, owned by root and writable by no one else, in a directory no one else can write.
COPY packaging/osquery-netflow.ext /usr/lib/osquery/extensions/osquery-netflow.ext
RUN chown -R root:root /usr/lib/osquery \
 && chmod 0755 /usr/lib/osquery /usr/lib/osquery/extensions \
      /usr/lib/osquery/extensions/osquery-netflow.ext
COPY <<'EOF' /etc/osquery/extensions.load
/usr/lib/osquery/extensions/osquery-netflow.ext
EOF

# osqueryd: the pack from a file (sql/packs/netflow.conf), result and status lines to its own files and
# to the extension's net_forwarder logger, which appends them to the spool the agent forwards.
COPY <<'EOF' /etc/osquery/osquery.flags
--config_plugin=filesystem
--config_path=/etc/osquery/osquery.conf
--logger_plugin=filesystem,net_forwarder
--logger_path=/var/log/osquery
--extensions_autoload=/etc/osquery/extensions.load
--extensions_timeout=10
--extensions_socket=/var/osquery/osquery.em
--database_path=/var/osquery/osquery.db
--pidfile=/var/osquery/osqueryd.pidfile
EOF
COPY <<'EOF' /etc/osquery/osquery.conf
{
  "packs": {
    "netflow": "/opt/osquery-netflow/sql/packs/netflow.conf"
  }
}
EOF
RUN chmod 0644 /etc/osquery/extensions.load /etc/osquery/osquery.flags /etc/osquery/osquery.conf \
 && install -d -m 0750 /var/osquery /var/log/osquery

COPY --chmod=0755 <<'EOF' /usr/local/bin/netflow-endpoint
#!/bin/bash
# The endpoint container's entrypoint: see the header of docker/endpoint.Dockerfile.
set -euo pipefail
cd /opt/osquery-netflow
command="${1:-osqueryd}"
case "$command" in
    -*) command=osqueryd ;; # only flags: osqueryd's
    *) [ "$#" -eq 0 ] || shift ;;
esac
case "$command" in
    agent) exec python -m extension run "$@" ;;
    osqueryd) ;;
    *) exec "$command" "$@" ;;
esac

# osqueryd runs the pack, so each row reaches the spool once, through net_forwarder (docs/osquery.md):
# the agent only captures and forwards, unless told otherwise.
EXTENSION_EMIT_RESULTS="${EXTENSION_EMIT_RESULTS:-false}" python -m extension run &
agent=$!
osqueryd --flagfile=/etc/osquery/osquery.flags "$@" &
osqueryd=$!

stopping=0
stop() {
    stopping=1
    kill -TERM "$agent" "$osqueryd" 2>/dev/null || true
}
trap stop TERM INT

# Until one of them ends, or docker stop (SIGTERM: the agent drains the kernel a last time).
status=0
wait -n "$agent" "$osqueryd" || status=$?
if [ "$stopping" -eq 0 ]; then
    echo "netflow-endpoint: the agent or osqueryd exited (status $status); stopping the other" >&2
    [ "$status" -ne 0 ] || status=1
else
    status=0
fi
stop
wait "$agent" 2>/dev/null || true
wait "$osqueryd" 2>/dev/null || true
exit "$status"
EOF

VOLUME ["/var/lib/osquery-netflow", "/var/osquery"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/netflow-endpoint"]
CMD ["osqueryd"]
