"""Windows network-change notifications for the enterprise-network dispatcher (:mod:`extension.netstate`).

:class:`IpHelperFeed` registers with the IP Helper API for interface changes (NotifyIpInterfaceChange)
and route changes (NotifyRouteChange2), IPv4 and IPv6, and turns every callback into a notification
the watcher waits on; what changed is re-read as a whole, as on Linux. The callbacks run on a thread
of the IP Helper's: they only set an event. :meth:`IpHelperFeed.close` cancels both registrations
(CancelMibChangeNotify2).

The ``iphlpapi`` argument is the loaded DLL (ctypes) in production and a fake in the tests, which
call the registered callbacks as Windows would. **Not run on Windows yet.** Reading the facts the
policy needs on Windows (default gateways with their MACs, the DNS search list) is not written yet: a
policy on Windows is refused with that reason, and without one the device counts as always on.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Final

AF_UNSPEC: Final = 0
NO_ERROR: Final = 0
# VOID (WINAPI *)(PVOID CallerContext, PVOID Row, MIB_NOTIFICATION_TYPE NotificationType)
CHANGE_CALLBACK = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)(
    None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int
)


class IpHelperError(OSError):
    """A registration for change notifications failed; the message names the call and the error."""


class IpHelperFeed:
    def __init__(self, iphlpapi: Any = None) -> None:
        if iphlpapi is None:
            windll: Any = getattr(ctypes, "WinDLL", None)  # only Windows' ctypes has it
            if windll is None:
                raise IpHelperError("IP Helper notifications need Windows (Linux uses rtnetlink)")
            iphlpapi = windll("iphlpapi")
        self.api = iphlpapi
        self._changed = threading.Event()
        self.notifications = 0
        self._callback = CHANGE_CALLBACK(self._on_change)  # kept alive while registered
        self._handles: list[ctypes.c_void_p] = []
        try:
            for call in ("NotifyIpInterfaceChange", "NotifyRouteChange2"):
                handle = ctypes.c_void_p()
                status = getattr(self.api, call)(
                    AF_UNSPEC, self._callback, None, ctypes.c_bool(False), ctypes.byref(handle)
                )
                if status != NO_ERROR:
                    raise IpHelperError(f"{call} failed with Win32 error {status}")
                self._handles.append(handle)
        except BaseException:
            self.close()
            raise

    def _on_change(self, _context: Any, _row: Any, _kind: int) -> None:
        self.notifications += 1
        self._changed.set()

    def wait(self, timeout: float) -> bool:
        if self._changed.wait(max(timeout, 0.0)):
            self._changed.clear()
            return True
        return False

    def close(self) -> None:
        while self._handles:
            self.api.CancelMibChangeNotify2(self._handles.pop())
