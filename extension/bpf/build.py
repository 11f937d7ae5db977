"""Build the BPF object from ``netflow.bpf.c``: ``vmlinux.h`` is generated from the running kernel's
BTF (never committed), then clang compiles a CO-RE object that libbpf relocates at load time.

The object is cached under the data directory by a hash of the sources, the generated header and the
compiler version, so it is built once per kernel and source change. An endpoint that cannot have clang
can point ``EXTENSION_BPF_OBJECT`` at an object built elsewhere (CO-RE objects are portable).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from extension.sources.base import CaptureError

log = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ("netflow.bpf.c", "netflow.h")
BTF_PATH = Path("/sys/kernel/btf/vmlinux")


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        raise CaptureError(
            f"{name} is not installed, so the BPF program cannot be built",
            "install it (Debian: apt-get install clang llvm libbpf-dev bpftool), "
            "or set EXTENSION_BPF_OBJECT to a netflow.bpf.o built on another machine",
        )
    return path


def _run(argv: list[str], what: str) -> bytes:
    result = subprocess.run(argv, capture_output=True, check=False)
    if result.returncode != 0:
        tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-15:]
        raise CaptureError(
            f"{what} failed (exit {result.returncode}): " + " | ".join(tail),
            "check that clang, llvm, libbpf-dev and bpftool are installed and match this kernel",
        )
    return result.stdout


def _target_arch() -> str:
    machine = os.uname().machine
    arches = {"x86_64": "x86", "aarch64": "arm64", "ppc64le": "powerpc", "s390x": "s390", "riscv64": "riscv"}
    if machine not in arches:
        raise CaptureError(f"no BPF build settings for the {machine} architecture", "use x86_64 or arm64")
    return arches[machine]


def generate_vmlinux_header(build_dir: Path) -> Path:
    """Dump the running kernel's BTF as C; regenerated when the BTF changes (new kernel)."""
    if not BTF_PATH.exists():
        raise CaptureError(
            f"this kernel has no BTF ({BTF_PATH} is missing)",
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu, Fedora and RHEL kernels are)",
        )
    stat = BTF_PATH.stat()
    stamp = f"{os.uname().release} {stat.st_size}"
    header = build_dir / "vmlinux.h"
    stamp_file = build_dir / "vmlinux.h.stamp"
    if header.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return header
    build_dir.mkdir(parents=True, exist_ok=True)
    text = _run([_tool("bpftool"), "btf", "dump", "file", str(BTF_PATH), "format", "c"], "bpftool btf dump")
    tmp = header.with_suffix(".tmp")
    tmp.write_bytes(text)
    tmp.replace(header)
    stamp_file.write_text(stamp)
    return header


def build_object(build_dir: Path) -> Path:
    """Return the path of an up-to-date ``netflow-<hash>.bpf.o`` in ``build_dir``, building it if needed."""
    try:
        header = generate_vmlinux_header(build_dir)
        clang = _tool("clang")
        version = _run([clang, "--version"], "clang --version")
        digest = hashlib.sha256(version)
        for name in SOURCES:
            digest.update((SOURCE_DIR / name).read_bytes())
        digest.update(header.read_bytes())
        target = build_dir / f"netflow-{digest.hexdigest()[:16]}.bpf.o"
        if target.exists():
            return target
        tmp = target.with_suffix(".tmp")
        log.info("building %s", target)
        _run(
            [
                clang,
                "-O2",
                "-g",
                "-Wall",
                "-target",
                "bpf",
                f"-D__TARGET_ARCH_{_target_arch()}",
                f"-I{build_dir}",
                f"-I{SOURCE_DIR}",
                "-c",
                str(SOURCE_DIR / "netflow.bpf.c"),
                "-o",
                str(tmp),
            ],
            "clang (building the BPF program)",
        )
        tmp.replace(target)
        return target
    except OSError as exc:
        raise CaptureError(
            f"cannot build the BPF program in {build_dir}: {exc.strerror or exc}",
            "set EXTENSION_DATA_DIR to a writable directory",
        ) from None
