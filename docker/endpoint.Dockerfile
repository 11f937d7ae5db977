# The endpoint agent in a container. It captures the HOST's traffic, so it must run privileged, in the
# host's PID and network namespaces, with the host's BTF and cgroup v2 mounted:
#
#   docker build -f docker/endpoint.Dockerfile -t osquery-netflow-endpoint .
#   docker run -d --name netflow-agent --privileged --pid=host --network=host \
#     -v /sys/kernel/btf:/sys/kernel/btf:ro -v /sys/fs/cgroup:/sys/fs/cgroup:ro \
#     -v /var/lib/osquery-netflow:/var/lib/osquery-netflow osquery-netflow-endpoint
#
# The BPF object is built at first start against the running kernel's BTF (CO-RE) and cached in the
# data volume. Not exercised in CI (no container engine there); see docker/README.md.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev libbpf1 bpftool \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/osquery-netflow
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY extension ./extension
COPY sql ./sql

ENV EXTENSION_DATA_DIR=/var/lib/osquery-netflow \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/osquery-netflow"]

# SIGTERM (docker stop) drains the kernel a last time and aggregates the open window.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "extension"]
CMD ["run"]
