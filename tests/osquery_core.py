"""A test stand-in for osqueryd's extension manager ("the core"), speaking the real Thrift protocol.

osqueryd listens on a Unix socket (``--extensions_socket``); an extension connects, calls
``registerExtension`` with its registry (registry type -> plugin name -> routes), gets a uuid, then
serves its own plugins on ``<socket>.<uuid>`` and pings the core every ``--interval`` seconds. This
core does the core's half of that: it accepts registrations and pings, records what was registered,
and :func:`call_extension` plays osqueryd calling a plugin on the extension's own socket.

:meth:`OsqueryCore.stop` closes the listening socket *and* every open connection, as a dying osqueryd
would, so an extension's next ping fails (thrift's own TThreadedServer cannot be stopped at all).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osquery.extensions import Extension, ExtensionManager
from osquery.extensions.ttypes import ExtensionResponse, ExtensionStatus, InternalExtensionInfo
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport


@dataclass
class Registration:
    uuid: int
    name: str
    version: str
    sdk_version: str
    min_sdk_version: str
    registry: dict[str, dict[str, list[dict[str, str]]]]  # type -> plugin name -> routes

    def plugins(self, registry_type: str) -> list[str]:
        return sorted(self.registry.get(registry_type, {}))


@dataclass
class _State:
    lock: threading.Condition = field(default_factory=threading.Condition)
    registrations: dict[int, Registration] = field(default_factory=dict)
    deregistered: list[int] = field(default_factory=list)
    pings: int = 0
    next_uuid: int = 1


class _Handler(ExtensionManager.Iface):  # type: ignore[misc]  # generated, untyped
    def __init__(self, state: _State) -> None:
        self.state = state

    def ping(self) -> Any:
        with self.state.lock:
            self.state.pings += 1
            self.state.lock.notify_all()
        return ExtensionStatus(code=0, message="OK")

    def call(self, registry: str, item: str, request: dict[str, str]) -> Any:
        return ExtensionResponse(
            status=ExtensionStatus(code=1, message=f"the test core has no plugin {registry}/{item}"),
            response=[],
        )

    def shutdown(self) -> None:
        return None

    def extensions(self) -> dict[int, Any]:
        with self.state.lock:
            return {
                uuid: InternalExtensionInfo(
                    name=r.name,
                    version=r.version,
                    sdk_version=r.sdk_version,
                    min_sdk_version=r.min_sdk_version,
                )
                for uuid, r in self.state.registrations.items()
            }

    def options(self) -> dict[str, Any]:
        return {}

    def registerExtension(self, info: Any, registry: dict[str, dict[str, Any]]) -> Any:
        with self.state.lock:
            for existing in self.state.registrations.values():
                if existing.name == info.name:
                    # osqueryd refuses a second extension of the same name the same way
                    return ExtensionStatus(code=1, message="Duplicate extension registered")
            uuid = self.state.next_uuid
            self.state.next_uuid += 1
            self.state.registrations[uuid] = Registration(
                uuid=uuid,
                name=info.name,
                version=info.version,
                sdk_version=info.sdk_version,
                min_sdk_version=info.min_sdk_version,
                registry={
                    kind: {name: list(routes) for name, routes in items.items()}
                    for kind, items in registry.items()
                },
            )
            self.state.lock.notify_all()
        return ExtensionStatus(code=0, message="OK", uuid=uuid)

    def deregisterExtension(self, uuid: int) -> Any:
        with self.state.lock:
            if self.state.registrations.pop(uuid, None) is None:
                return ExtensionStatus(code=1, message="No extension UUID registered")
            self.state.deregistered.append(uuid)
        return ExtensionStatus(code=0, message="OK")

    def query(self, sql: str) -> Any:
        return ExtensionResponse(
            status=ExtensionStatus(code=1, message="the test core runs no SQL"), response=[]
        )

    def getQueryColumns(self, sql: str) -> Any:
        return self.query(sql)


class OsqueryCore:
    """The core's extension manager on ``socket_path``, served from background threads."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = Path(socket_path)
        self._state = _State()
        self._processor = ExtensionManager.Processor(_Handler(self._state))
        self._listener: socket.socket | None = None
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> OsqueryCore:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        listener.listen(16)
        listener.settimeout(0.1)  # lets the accept loop see stop()
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="osquery-core", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Go away like a dead osqueryd: no listener, every connection closed, the socket file gone."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._clients_lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def __enter__(self) -> OsqueryCore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the extensions did ------------------------------------------------------------------

    @property
    def registrations(self) -> dict[int, Registration]:
        with self._state.lock:
            return dict(self._state.registrations)

    @property
    def pings(self) -> int:
        with self._state.lock:
            return self._state.pings

    def wait_for_registration(self, name: str, timeout: float) -> Registration:
        """The registration of extension ``name``; TimeoutError when none arrives in time."""
        deadline = time.monotonic() + timeout
        with self._state.lock:
            while True:
                for registration in self._state.registrations.values():
                    if registration.name == name:
                        return registration
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no extension {name!r} registered within {timeout} s")
                self._state.lock.wait(remaining)

    def wait_for_pings(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._state.lock:
            while self._state.pings < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self._state.pings} pings within {timeout} s, expected {count}")
                self._state.lock.wait(remaining)

    # --- serving ---------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._clients_lock:
                self._clients.add(client)
            threading.Thread(
                target=self._serve, args=(client,), name="osquery-core-conn", daemon=True
            ).start()

    def _serve(self, client: socket.socket) -> None:
        handle = TSocket.TSocket()
        handle.setHandle(client)
        transport = TTransport.TBufferedTransport(handle)
        protocol = TBinaryProtocol.TBinaryProtocol(transport)
        try:
            while not self._stopping.is_set():
                self._processor.process(protocol, protocol)
        except (TTransport.TTransportException, OSError):
            pass
        finally:
            with self._clients_lock:
                self._clients.discard(client)
            client.close()


def call_extension(
    socket_path: Path | str,
    uuid: int,
    registry: str,
    item: str,
    request: dict[str, str],
    *,
    timeout: float = 10.0,
) -> tuple[int, str, list[dict[str, str]]]:
    """Call plugin ``registry``/``item`` on the extension registered as ``uuid`` with the core at
    ``socket_path``, as osqueryd does: returns (status code, status message, response rows)."""
    handle = TSocket.TSocket(unix_socket=f"{socket_path}.{uuid}")
    handle.setTimeout(timeout * 1000)
    transport = TTransport.TBufferedTransport(handle)
    client = Extension.Client(TBinaryProtocol.TBinaryProtocol(transport))
    # the extension listens on its socket only after registerExtension has returned: retry the
    # connection for a while, as the first call after a registration may race it
    deadline = time.monotonic() + timeout
    path = Path(f"{socket_path}.{uuid}")
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    while True:
        try:
            transport.open()
            break
        except TTransport.TTransportException:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
    try:
        result = client.call(registry, item, request)
    finally:
        transport.close()
    return int(result.status.code), str(result.status.message), list(result.response or [])
