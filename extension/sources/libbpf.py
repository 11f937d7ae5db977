"""A thin ctypes binding of the parts of libbpf (``libbpf.so.1``, libbpf >= 1.0) the agent uses.

libbpf 1.x returns ``-errno`` from its low-level calls and NULL (with errno set) from its
object-returning ones; both become :class:`BpfCallError` here. libbpf's own log lines are captured
(including the verifier log) so that a refused program can be explained in one message.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as errno_module
import functools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from extension.sources.base import CaptureError

log = logging.getLogger(__name__)

c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_char_p = ctypes.c_char_p
c_uint32 = ctypes.c_uint32
c_uint64 = ctypes.c_uint64
c_size_t = ctypes.c_size_t

PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
SAMPLE_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)

BPF_ANY = 0


LIBBPF_ERRORS = {  # libbpf's own error numbers (enum libbpf_errno), which os.strerror does not know
    4000: "libelf failed to read the file (not an ELF object?)",
    4001: "not a valid BPF object file",
    4002: "the object has no kernel version section",
    4003: "the object was built for the other byte order",
    4004: "libbpf internal error",
    4005: "relocation failed",
    4006: "program load failed",
    4007: "the kernel verifier rejected a program",
    4008: "a program is too big",
    4009: "wrong kernel version in the object",
    4010: "the kernel does not support this program type",
}


def describe_error(err: int) -> str:
    return LIBBPF_ERRORS.get(err) or os.strerror(err)


class BpfCallError(OSError):
    def __init__(self, call: str, err: int, detail: str = "") -> None:
        self.reason = describe_error(err)
        message = f"{call}: {self.reason}" + (f"\n{detail}" if detail else "")
        super().__init__(err, message)
        self.call = call


class Libbpf:
    """The loaded library, with typed signatures and a captured log."""

    def __init__(self) -> None:
        names = ["libbpf.so.1", ctypes.util.find_library("bpf")]
        lib: ctypes.CDLL | None = None
        for name in names:
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name, use_errno=True)
                break
            except OSError:
                continue
        if lib is None:
            raise CaptureError(
                "libbpf is not installed (libbpf.so.1 not found)",
                "install it: apt-get install libbpf1 (Debian/Ubuntu) or dnf install libbpf (Fedora/RHEL)",
            )
        self.lib = lib
        self._log_lines: list[str] = []
        self._log_lock = threading.Lock()
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
        self._libc.vsnprintf.restype = c_int
        self._print_cb = PRINT_FN(self._on_print)  # keep a reference: libbpf holds the pointer
        self._declare()
        self.lib.libbpf_set_print.argtypes = [PRINT_FN]
        self.lib.libbpf_set_print.restype = c_void_p
        self.lib.libbpf_set_print(self._print_cb)

    def _declare(self) -> None:
        signatures: dict[str, tuple[list[object], object]] = {
            "bpf_object__open_file": ([c_char_p, c_void_p], c_void_p),
            "bpf_object__load": ([c_void_p], c_int),
            "bpf_object__close": ([c_void_p], None),
            "bpf_object__next_program": ([c_void_p, c_void_p], c_void_p),
            "bpf_object__find_map_by_name": ([c_void_p, c_char_p], c_void_p),
            "bpf_program__name": ([c_void_p], c_char_p),
            "bpf_program__section_name": ([c_void_p], c_char_p),
            "bpf_program__set_autoload": ([c_void_p, ctypes.c_bool], c_int),
            "bpf_program__attach": ([c_void_p], c_void_p),
            "bpf_program__attach_cgroup": ([c_void_p, c_int], c_void_p),
            "bpf_link__destroy": ([c_void_p], c_int),
            "bpf_map__fd": ([c_void_p], c_int),
            "bpf_map__set_max_entries": ([c_void_p, c_uint32], c_int),
            "bpf_map__max_entries": ([c_void_p], c_uint32),
            "bpf_map__key_size": ([c_void_p], c_uint32),
            "bpf_map__value_size": ([c_void_p], c_uint32),
            "bpf_map_update_elem": ([c_int, c_void_p, c_void_p, c_uint64], c_int),
            "bpf_map_lookup_elem": ([c_int, c_void_p, c_void_p], c_int),
            "bpf_map_lookup_and_delete_batch": (
                [c_int, c_void_p, c_void_p, c_void_p, c_void_p, ctypes.POINTER(c_uint32), c_void_p],
                c_int,
            ),
            "ring_buffer__new": ([c_int, SAMPLE_FN, c_void_p, c_void_p], c_void_p),
            "ring_buffer__poll": ([c_void_p, c_int], c_int),
            "ring_buffer__consume": ([c_void_p], c_int),
            "ring_buffer__free": ([c_void_p], None),
            "libbpf_num_possible_cpus": ([], c_int),
            "libbpf_get_error": ([c_void_p], ctypes.c_long),
        }
        for name, (argtypes, restype) in signatures.items():
            try:
                function = getattr(self.lib, name)
            except AttributeError:
                raise CaptureError(
                    f"the installed libbpf lacks {name}", "install libbpf 1.0 or newer (libbpf1)"
                ) from None
            function.argtypes = argtypes
            function.restype = restype

    def _on_print(self, level: int, fmt: bytes | None, args: int | None) -> int:
        buffer = ctypes.create_string_buffer(2048)
        self._libc.vsnprintf(buffer, len(buffer), fmt, args)
        text = buffer.value.decode("utf-8", "replace").rstrip("\n")
        with self._log_lock:
            self._log_lines.append(text)
            del self._log_lines[:-400]
        log.debug("libbpf: %s", text)
        return 0

    def take_log(self) -> str:
        with self._log_lock:
            text = "\n".join(self._log_lines)
            self._log_lines.clear()
        return text

    # --- helpers that raise on failure ----------------------------------------------------------

    def check(self, call: str, result: int) -> int:
        if result < 0:
            raise BpfCallError(call, -result, self.take_log())
        return result

    def check_ptr(self, call: str, result: int | None) -> int:
        if not result:
            err = ctypes.get_errno() or errno_module.EINVAL
            raise BpfCallError(call, err, self.take_log())
        return result

    def num_possible_cpus(self) -> int:
        return self.check("libbpf_num_possible_cpus", self.lib.libbpf_num_possible_cpus())


@functools.cache
def get_libbpf() -> Libbpf:
    """The process-wide binding. libbpf keeps the print callback in a global, so the callback (and the
    object holding it) must live as long as the process."""
    return Libbpf()


class BpfObject:
    """An opened BPF object file: set up maps and autoload before ``load()``, then attach."""

    def __init__(self, libbpf: Libbpf, path: Path) -> None:
        self.libbpf = libbpf
        self.lib = libbpf.lib
        self.path = path
        self.ptr = libbpf.check_ptr(
            "bpf_object__open_file", self.lib.bpf_object__open_file(bytes(path), None)
        )
        self.links: list[int] = []

    def programs(self) -> dict[str, int]:
        found: dict[str, int] = {}
        prog = self.lib.bpf_object__next_program(self.ptr, None)
        while prog:
            name = self.lib.bpf_program__name(prog).decode()
            found[name] = prog
            prog = self.lib.bpf_object__next_program(self.ptr, prog)
        return found

    def section(self, prog: int) -> str:
        return str(self.lib.bpf_program__section_name(prog).decode())

    def map_ptr(self, name: str) -> int:
        return self.libbpf.check_ptr(
            f"bpf_object__find_map_by_name({name})",
            self.lib.bpf_object__find_map_by_name(self.ptr, name.encode()),
        )

    def map_fd(self, name: str) -> int:
        return self.libbpf.check(f"bpf_map__fd({name})", self.lib.bpf_map__fd(self.map_ptr(name)))

    def map_layout(self, name: str) -> tuple[int, int, int]:
        """(key size, value size, max entries) of a map as the object declares it."""
        ptr = self.map_ptr(name)
        return (
            int(self.lib.bpf_map__key_size(ptr)),
            int(self.lib.bpf_map__value_size(ptr)),
            int(self.lib.bpf_map__max_entries(ptr)),
        )

    def set_max_entries(self, name: str, entries: int) -> None:
        ptr = self.map_ptr(name)
        self.libbpf.check(
            f"bpf_map__set_max_entries({name})", self.lib.bpf_map__set_max_entries(ptr, entries)
        )

    def set_autoload(self, selected: Callable[[str, str], bool]) -> list[str]:
        """Autoload exactly the programs for which ``selected(name, section)`` is true."""
        chosen = []
        for name, prog in self.programs().items():
            wanted = selected(name, self.section(prog))
            self.libbpf.check(f"set_autoload({name})", self.lib.bpf_program__set_autoload(prog, wanted))
            if wanted:
                chosen.append(name)
        return chosen

    def load(self) -> None:
        self.libbpf.check("bpf_object__load", self.lib.bpf_object__load(self.ptr))

    def attach(self, name: str, *, cgroup_fd: int | None = None) -> None:
        prog = self.programs()[name]
        if cgroup_fd is not None:
            link = self.lib.bpf_program__attach_cgroup(prog, cgroup_fd)
        else:
            link = self.lib.bpf_program__attach(prog)
        self.links.append(self.libbpf.check_ptr(f"attach {name}", link))

    def close(self) -> None:
        for link in self.links:
            self.lib.bpf_link__destroy(link)
        self.links.clear()
        if self.ptr:
            self.lib.bpf_object__close(self.ptr)
            self.ptr = 0
