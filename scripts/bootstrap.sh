#!/usr/bin/env bash
# Set-up shared by ./scripts/main and ./scripts/test: system packages (as root), a virtualenv, pinned deps.
# Idempotent and quick when nothing changed. Sourced, not run: it exports VENV_PY.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EXTENSION_VENV:-$ROOT/.venv}"

log() { printf '[setup] %s\n' "$*" >&2; }

apt_install() {
  # Install only what is missing; refresh the package index once if the first try fails.
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1
    apt-get install -y -q "${missing[@]}" >/dev/null
  }
}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  # The kernel part: clang/llvm build the BPF object, bpftool dumps vmlinux.h, libbpf loads it.
  apt_install clang llvm libbpf-dev libbpf1 bpftool python3-venv
  # The dashboard's browser tests drive the system's headless Chromium.
  apt_install chromium
else
  for tool in clang bpftool; do
    command -v "$tool" >/dev/null 2>&1 || log "note: $tool not found; kernel capture needs root and 'apt-get install clang llvm libbpf-dev libbpf1 bpftool' (kernel tests will skip)"
  done
  command -v chromium >/dev/null 2>&1 || log "note: chromium not found; the dashboard's browser tests need 'apt-get install chromium' (they will skip)"
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV" || {
    echo "error: 'python3 -m venv' failed; install the venv module (Debian: apt-get install python3-venv) and retry" >&2
    exit 1
  }
fi
STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  log "installing pinned requirements into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.txt"
  echo "$WANT" > "$STAMP"
fi
export VENV_PY="$VENV/bin/python"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
