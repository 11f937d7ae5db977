# syntax=docker/dockerfile:1
# The fleet service: one image for every role, picked by the first argument (docker/fleet-entrypoint.sh:
# web, migrate, worker, beat, maintain, cli, help). Built from the repository root:
#
#   docker build -f docker/fleet.Dockerfile -t osquery-netflow-fleet .
#   docker run --rm -e FLEET_DATABASE_URL=postgresql://... osquery-netflow-fleet migrate
#   docker run -d -p 8080:8080 -e FLEET_DATABASE_URL=postgresql://... -e FLEET_ENROLL_SECRET=... \
#     osquery-netflow-fleet web
#
# docker/compose.yaml runs the whole stack. Not built where this was written (no container engine);
# see docker/README.md for what was checked.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The pinned runtime dependencies: requirements.txt without its "# Tests and checks" section (if that
# heading were ever renamed, sed would keep the whole file: more installed, nothing missing).
COPY requirements.txt ./
RUN sed '/^# Tests and checks/,$d' requirements.txt > /tmp/runtime.txt \
 && pip install --no-cache-dir -r /tmp/runtime.txt \
 && rm /tmp/runtime.txt

# The service runs as an unprivileged user that cannot modify its own code (owned by root).
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/fleet --create-home \
      --shell /usr/sbin/nologin fleet

# Only what the service reads: its package, its SQL (queries, migrations) and the shipped packs.
COPY fleet_analytics ./fleet_analytics
COPY sql/fleet ./sql/fleet
COPY sql/packs ./sql/packs
COPY docker/fleet-entrypoint.sh ./docker/fleet-entrypoint.sh
RUN chmod 0755 docker/fleet-entrypoint.sh \
 && find fleet_analytics -name __pycache__ -prune -exec rm -rf {} + \
 && python -m compileall -q fleet_analytics

USER fleet
# FLEET_DATA_DIR holds beat's schedule file, and what stands in for unset settings: the embedded
# PostgreSQL without FLEET_DATABASE_URL (for trying it out), the embedded Redis of worker and beat
# without FLEET_BROKER_URL, the model key file without FLEET_MODEL_KEY.
ENV FLEET_DATA_DIR=/var/lib/fleet \
    FLEET_PORT=8080
EXPOSE 8080
# SIGTERM: gunicorn finishes the requests in flight (up to 30 s), then exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/docker/fleet-entrypoint.sh"]
CMD ["web"]
