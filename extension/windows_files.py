"""The agent's data directory on Windows: created private, as the state it holds must not be writable
by other users.

``%ProgramData%`` lets every user create files in the subdirectories of others (its inherited
permissions grant Users "create files / append data" on subfolders): a user who planted
``netflow.db-wal`` or a spool file before the agent created it would own that file and could write
rows the fleet then trusts. So when the agent creates its data directory it does so with a protected
DACL (no inheritance from ``%ProgramData%``) that grants full control to SYSTEM, Administrators and the
directory's owner (the agent's account) only: SDDL :data:`PRIVATE_DIRECTORY_SDDL`. A directory that
already exists is left as it is (the installer's ``icacls`` step in docs/windows.md sets it).

**Not run on Windows yet**: tested through fake DLLs that check what the calls receive.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

# D: DACL, P: protected (not inherited); A: allow, OICI: files and subdirectories inherit it,
# FA: full access; SY: LocalSystem, BA: Administrators, OW: the owner (the account that creates it)
PRIVATE_DIRECTORY_SDDL: Final = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;OW)"
SDDL_REVISION_1: Final = 1
ERROR_ALREADY_EXISTS: Final = 183


class SECURITY_ATTRIBUTES(ctypes.Structure):
    _fields_ = [
        ("nLength", ctypes.c_uint32),
        ("lpSecurityDescriptor", ctypes.c_void_p),
        ("bInheritHandle", ctypes.c_int32),
    ]


def _dlls() -> tuple[Any, Any]:
    windll: Any = getattr(ctypes, "WinDLL", None)  # only Windows' ctypes has it
    if windll is None:
        raise OSError("creating a directory with a Windows security descriptor needs Windows")
    return windll("advapi32", use_last_error=True), windll("kernel32", use_last_error=True)


def _last_error() -> int:
    get = getattr(ctypes, "get_last_error", None)  # Windows only
    return int(get()) if get is not None else 0


def create_private_directory(path: Path, *, advapi32: Any = None, kernel32: Any = None) -> bool:
    """Create ``path`` (its parents as usual) with :data:`PRIVATE_DIRECTORY_SDDL`. Returns False when
    it existed already (then nothing is changed); raises OSError naming the call and the error."""
    if advapi32 is None or kernel32 is None:
        advapi32, kernel32 = _dlls()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = ctypes.c_void_p()
    if not advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(
        ctypes.c_wchar_p(PRIVATE_DIRECTORY_SDDL),
        ctypes.c_uint32(SDDL_REVISION_1),
        ctypes.byref(descriptor),
        None,
    ):
        raise OSError(
            f"ConvertStringSecurityDescriptorToSecurityDescriptorW failed with Win32 error {_last_error()}"
        )
    try:
        attributes = SECURITY_ATTRIBUTES(ctypes.sizeof(SECURITY_ATTRIBUTES), descriptor.value, 0)
        if kernel32.CreateDirectoryW(ctypes.c_wchar_p(os.fspath(path)), ctypes.byref(attributes)):
            log.info("created %s readable and writable by SYSTEM, Administrators and its owner only", path)
            return True
        error = _last_error()
        if error == ERROR_ALREADY_EXISTS or path.is_dir():
            return False
        raise OSError(f"CreateDirectoryW({path}) failed with Win32 error {error}")
    finally:
        kernel32.LocalFree(descriptor)
