"""Windows side of the enterprise-network dispatcher (:mod:`extension.netstate`): the change
notifications the watcher waits on, and the network facts the policy evaluates.

:class:`IpHelperFeed` registers with the IP Helper API for interface changes (NotifyIpInterfaceChange)
and route changes (NotifyRouteChange2), IPv4 and IPv6, and turns every callback into a notification
the watcher waits on; what changed is re-read as a whole, as on Linux. The callbacks run on a thread
of the IP Helper's: they only set an event. :meth:`IpHelperFeed.close` cancels both registrations
(CancelMibChangeNotify2).

:func:`read_windows_facts` reads the facts (what :func:`extension.netstate.read_facts` returns on
Windows): GetAdaptersAddresses with the gateways, for the adapters that are up (loopback left out);
their default gateways, each with its MAC from the neighbour table (GetIpNetEntry2; with no entry yet,
ResolveIpNetEntry2, which may send one ARP request or neighbour solicitation and block briefly: the
watcher reads on its own thread); and their connection-specific DNS suffixes (``DnsSuffix`` and the
``FirstDnsSuffix`` list) as the search domains. A gateway whose MAC cannot be found still counts, with
MAC "".

Only the connection-specific suffixes, on purpose: the computer's primary DNS suffix (a domain-joined
laptop's Active Directory domain) and a suffix search list pushed by group policy are the same on every
network the laptop joins, so they would put it "on the enterprise network" at home or in a hotel too.
A connection-specific suffix is what the network hands out (DHCP) or what is set on one adapter, and it
changes when the laptop moves. (A connection-specific suffix that group policy sets for every
connection travels with the laptop as well: such a domain does not belong in the policy.)

Structures are declared with explicit widths (ULONG is 32 bits on Windows, ``c_ulong`` is 64 on Linux;
WCHAR is 16 bits, ``c_wchar`` is 32 on Linux; pointers are ``c_void_p``), so they have the Windows x64
layout on any 64-bit Python; the tests check sizes and offsets against the documented x64 values.

The ``iphlpapi`` argument is the loaded DLL (ctypes) in production and a fake in the tests. **Not run on
Windows yet**: the feed is tested with a fake that calls the registered callbacks as Windows would, the
facts reader with a fake that lays out the documented x64 structures in the caller's buffer.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from extension.netstate import NetworkFacts

log = logging.getLogger(__name__)

AF_UNSPEC: Final = 0
AF_INET: Final = 2
AF_INET6: Final = 23  # Windows' value (10 on Linux)
NO_ERROR: Final = 0
ERROR_BUFFER_OVERFLOW: Final = 111
ERROR_NO_DATA: Final = 232
ERROR_NOT_FOUND: Final = 1168
GAA_FLAG_SKIP_ANYCAST: Final = 0x2
GAA_FLAG_SKIP_MULTICAST: Final = 0x4
GAA_FLAG_SKIP_FRIENDLY_NAME: Final = 0x20
GAA_FLAG_INCLUDE_GATEWAYS: Final = 0x80
# DNS information (DnsSuffix, FirstDnsSuffix) is kept: GAA_FLAG_SKIP_DNS_INFO is not set
GAA_FLAGS: Final = (
    GAA_FLAG_INCLUDE_GATEWAYS | GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST | GAA_FLAG_SKIP_FRIENDLY_NAME
)
IF_OPER_STATUS_UP: Final = 1
IF_TYPE_SOFTWARE_LOOPBACK: Final = 24
NLNS_UNREACHABLE: Final = 0  # NL_NEIGHBOR_STATE (nldef.h) counts from 0
NLNS_INCOMPLETE: Final = 1
INITIAL_BUFFER_BYTES: Final = 15_000  # what Microsoft recommends for GetAdaptersAddresses
MAX_BUFFER_ATTEMPTS: Final = 3
MAX_ADAPTERS: Final = 1024  # bounds on the walks: a corrupt list must not loop forever
MAX_CHAIN: Final = 256
MAX_DNS_SUFFIX_STRING_LENGTH: Final = 256
MAX_WSTRING_CHARS: Final = 1024

ULONG = ctypes.c_uint32
USHORT = ctypes.c_uint16
UCHAR = ctypes.c_uint8
ULONG64 = ctypes.c_uint64
WCHAR = ctypes.c_uint16

# VOID (WINAPI *)(PVOID CallerContext, PVOID Row, MIB_NOTIFICATION_TYPE NotificationType)
CHANGE_CALLBACK = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)(
    None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int
)


class IpHelperError(OSError):
    """An IP Helper call failed (or IP Helper is not there); the message names the call and the error."""


def load_iphlpapi(need: str) -> Any:
    """iphlpapi.dll, loaded with ctypes; ``need`` says what for, in the error off Windows."""
    windll: Any = getattr(ctypes, "WinDLL", None)  # only Windows' ctypes has it
    if windll is None:
        raise IpHelperError(need)
    return windll("iphlpapi")


class IpHelperFeed:
    def __init__(self, iphlpapi: Any = None) -> None:
        if iphlpapi is None:
            iphlpapi = load_iphlpapi("IP Helper notifications need Windows (Linux uses rtnetlink)")
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


# --- structures (iptypes.h, ws2def.h, ws2ipdef.h, netioapi.h), Windows x64 layouts ---


class SOCKET_ADDRESS(ctypes.Structure):
    _fields_ = [("lpSockaddr", ctypes.c_void_p), ("iSockaddrLength", ctypes.c_int32)]


class SOCKADDR_IN(ctypes.Structure):
    _fields_ = [
        ("sin_family", USHORT),
        ("sin_port", USHORT),
        ("sin_addr", UCHAR * 4),
        ("sin_zero", UCHAR * 8),
    ]


class SOCKADDR_IN6(ctypes.Structure):
    _fields_ = [
        ("sin6_family", USHORT),
        ("sin6_port", USHORT),
        ("sin6_flowinfo", ULONG),
        ("sin6_addr", UCHAR * 16),
        ("sin6_scope_id", ULONG),
    ]


class SOCKADDR_INET(ctypes.Union):
    _fields_ = [("Ipv4", SOCKADDR_IN), ("Ipv6", SOCKADDR_IN6), ("si_family", USHORT)]


class GUID(ctypes.Structure):
    _fields_ = [("Data1", ULONG), ("Data2", USHORT), ("Data3", USHORT), ("Data4", UCHAR * 8)]


class IP_ADAPTER_GATEWAY_ADDRESS_LH(ctypes.Structure):
    _fields_ = [
        ("Length", ULONG),  # with Reserved, the union with ULONGLONG Alignment
        ("Reserved", ULONG),
        ("Next", ctypes.c_void_p),
        ("Address", SOCKET_ADDRESS),
    ]


class IP_ADAPTER_DNS_SUFFIX(ctypes.Structure):
    _fields_ = [("Next", ctypes.c_void_p), ("String", WCHAR * MAX_DNS_SUFFIX_STRING_LENGTH)]


class IP_ADAPTER_ADDRESSES_LH(ctypes.Structure):
    _fields_ = [
        ("Length", ULONG),  # with IfIndex, the union with ULONGLONG Alignment
        ("IfIndex", ULONG),
        ("Next", ctypes.c_void_p),
        ("AdapterName", ctypes.c_void_p),  # PCHAR
        ("FirstUnicastAddress", ctypes.c_void_p),
        ("FirstAnycastAddress", ctypes.c_void_p),
        ("FirstMulticastAddress", ctypes.c_void_p),
        ("FirstDnsServerAddress", ctypes.c_void_p),
        ("DnsSuffix", ctypes.c_void_p),  # PWCHAR
        ("Description", ctypes.c_void_p),  # PWCHAR
        ("FriendlyName", ctypes.c_void_p),  # PWCHAR
        ("PhysicalAddress", UCHAR * 8),
        ("PhysicalAddressLength", ULONG),
        ("Flags", ULONG),
        ("Mtu", ULONG),
        ("IfType", ULONG),
        ("OperStatus", ULONG),
        ("Ipv6IfIndex", ULONG),
        ("ZoneIndices", ULONG * 16),
        ("FirstPrefix", ctypes.c_void_p),
        ("TransmitLinkSpeed", ULONG64),
        ("ReceiveLinkSpeed", ULONG64),
        ("FirstWinsServerAddress", ctypes.c_void_p),
        ("FirstGatewayAddress", ctypes.c_void_p),
        ("Ipv4Metric", ULONG),
        ("Ipv6Metric", ULONG),
        ("Luid", ULONG64),
        ("Dhcpv4Server", SOCKET_ADDRESS),
        ("CompartmentId", ULONG),
        ("NetworkGuid", GUID),
        ("ConnectionType", ULONG),
        ("TunnelType", ULONG),
        ("Dhcpv6Server", SOCKET_ADDRESS),
        ("Dhcpv6ClientDuid", UCHAR * 130),
        ("Dhcpv6ClientDuidLength", ULONG),
        ("Dhcpv6Iaid", ULONG),
        ("FirstDnsSuffix", ctypes.c_void_p),  # since Vista SP1
    ]


class MIB_IPNET_ROW2(ctypes.Structure):
    _fields_ = [
        ("Address", SOCKADDR_INET),
        ("InterfaceIndex", ULONG),
        ("InterfaceLuid", ULONG64),
        ("PhysicalAddress", UCHAR * 32),
        ("PhysicalAddressLength", ULONG),
        ("State", ULONG),  # NL_NEIGHBOR_STATE
        ("Flags", UCHAR),  # the union with the IsRouter and IsUnreachable bits
        ("ReachabilityTime", ULONG),
    ]


# --- what is read, as plain data ---


@dataclass(frozen=True, slots=True)
class Gateway:
    ip: str  # the address's text, without a zone (as the Linux reader shows it)
    family: int  # AF_INET or AF_INET6 (Windows' values)
    sockaddr: bytes  # the SOCKADDR_IN / SOCKADDR_IN6 as Windows gave it, for the neighbour lookup


@dataclass(frozen=True, slots=True)
class Adapter:
    if_index: int
    ipv6_if_index: int
    luid: int  # 0 when the structure Windows filled is too short to hold it
    oper_status: int
    if_type: int
    gateways: tuple[Gateway, ...]
    dns_suffixes: tuple[str, ...]  # DnsSuffix first, then the FirstDnsSuffix list; empty ones left out

    @property
    def counts(self) -> bool:
        """Up, and not the loopback: its gateways and suffixes are facts."""
        return self.oper_status == IF_OPER_STATUS_UP and self.if_type != IF_TYPE_SOFTWARE_LOOPBACK


# --- parsing, from memory Windows filled (pure: addresses in, data out) ---


def _decode_units(units: Iterable[int]) -> str:
    """UTF-16 code units up to the first NUL."""
    text = bytearray()
    for unit in units:
        if unit == 0:
            break
        text += unit.to_bytes(2, "little")
    return text.decode("utf-16-le", errors="replace")


def read_wide_string(address: int | None, max_chars: int = MAX_WSTRING_CHARS) -> str:
    """The NUL-terminated UTF-16LE string at ``address`` (a PWCHAR), read one unit at a time so that
    nothing past the NUL is touched; at most ``max_chars`` units."""
    if not address:
        return ""
    units = (ctypes.c_uint16.from_address(address + 2 * i).value for i in range(max_chars))
    return _decode_units(units)


def parse_sockaddr(address: int | None, length: int) -> Gateway | None:
    """A SOCKADDR_IN or SOCKADDR_IN6 of ``length`` bytes; None for another family, a short one, or
    the unspecified address."""
    if not address or length < 2:
        return None
    raw = ctypes.string_at(address, min(length, ctypes.sizeof(SOCKADDR_INET)))
    family = int.from_bytes(raw[:2], "little")
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    if family == AF_INET and len(raw) >= SOCKADDR_IN.sin_addr.offset + 4:
        ip = ipaddress.IPv4Address(raw[4:8])
    elif family == AF_INET6 and len(raw) >= SOCKADDR_IN6.sin6_addr.offset + 16:
        ip = ipaddress.IPv6Address(raw[8:24])
    else:
        return None
    if ip.is_unspecified:
        return None
    return Gateway(ip=str(ip), family=family, sockaddr=raw)


def parse_gateways(address: int | None) -> tuple[Gateway, ...]:
    """The IP_ADAPTER_GATEWAY_ADDRESS_LH list starting at ``address``."""
    gateways: list[Gateway] = []
    for _ in range(MAX_CHAIN):
        if not address:
            break
        entry = IP_ADAPTER_GATEWAY_ADDRESS_LH.from_address(address)
        gateway = parse_sockaddr(entry.Address.lpSockaddr, int(entry.Address.iSockaddrLength))
        if gateway is not None:
            gateways.append(gateway)
        address = entry.Next
    return tuple(gateways)


def parse_dns_suffixes(address: int | None) -> tuple[str, ...]:
    """The IP_ADAPTER_DNS_SUFFIX list starting at ``address``."""
    suffixes: list[str] = []
    for _ in range(MAX_CHAIN):
        if not address:
            break
        entry = IP_ADAPTER_DNS_SUFFIX.from_address(address)
        suffixes.append(_decode_units(entry.String))
        address = entry.Next
    return tuple(suffixes)


def _filled(length: int, field: str) -> bool:
    """Does an IP_ADAPTER_ADDRESSES of ``length`` bytes (its Length) hold ``field``? Older Windows
    fill a shorter structure; what lies past Length is not theirs."""
    descriptor = getattr(IP_ADAPTER_ADDRESSES_LH, field)
    return length >= int(descriptor.offset) + int(descriptor.size)


def parse_adapter(address: int) -> Adapter:
    """One IP_ADAPTER_ADDRESSES_LH, reading only the fields its Length covers."""
    entry = IP_ADAPTER_ADDRESSES_LH.from_address(address)
    length = int(entry.Length)

    def value(field: str) -> Any:
        return getattr(entry, field) if _filled(length, field) else None

    suffixes = [read_wide_string(value("DnsSuffix"))]
    suffixes.extend(parse_dns_suffixes(value("FirstDnsSuffix")))
    return Adapter(
        if_index=int(entry.IfIndex),
        ipv6_if_index=int(value("Ipv6IfIndex") or 0),
        luid=int(value("Luid") or 0),
        oper_status=int(value("OperStatus") or 0),
        if_type=int(value("IfType") or 0),
        gateways=parse_gateways(value("FirstGatewayAddress")),
        dns_suffixes=tuple(suffix for suffix in suffixes if suffix),
    )


def parse_adapters(address: int | None) -> list[Adapter]:
    """The IP_ADAPTER_ADDRESSES_LH list GetAdaptersAddresses wrote, starting at ``address``."""
    adapters: list[Adapter] = []
    for _ in range(MAX_ADAPTERS):
        if not address:
            break
        adapters.append(parse_adapter(address))
        address = IP_ADAPTER_ADDRESSES_LH.from_address(address).Next
    return adapters


def unique_domains(adapters: Iterable[Adapter]) -> tuple[str, ...]:
    """The DNS suffixes of ``adapters`` in order, each once (compared as the policy compares them:
    case and a trailing dot aside)."""
    seen: set[str] = set()
    domains: list[str] = []
    for adapter in adapters:
        for suffix in adapter.dns_suffixes:
            key = suffix.strip().lower().rstrip(".")
            if key and key not in seen:
                seen.add(key)
                domains.append(suffix.strip())
    return tuple(domains)


def neighbour_row(gateway: Gateway, adapter: Adapter) -> MIB_IPNET_ROW2:
    """The MIB_IPNET_ROW2 key of ``gateway``'s neighbour entry: its address, the interface's index
    for that family and the interface's LUID (used first by Windows when set)."""
    row = MIB_IPNET_ROW2()
    raw = gateway.sockaddr[: ctypes.sizeof(SOCKADDR_INET)]
    ctypes.memmove(ctypes.addressof(row), raw, len(raw))
    row.InterfaceIndex = adapter.ipv6_if_index if gateway.family == AF_INET6 else adapter.if_index
    row.InterfaceLuid = adapter.luid
    return row


def row_mac(row: MIB_IPNET_ROW2) -> str:
    """The MAC of a neighbour entry, ``aa:bb:cc:dd:ee:ff``; "" while unresolved or unreachable."""
    if int(row.State) in (NLNS_UNREACHABLE, NLNS_INCOMPLETE) or int(row.PhysicalAddressLength) != 6:
        return ""
    octets = bytes(row.PhysicalAddress[:6])
    if not any(octets):
        return ""
    return ":".join(f"{octet:02x}" for octet in octets)


# --- the calls ---


def get_adapters(api: Any) -> list[Adapter]:
    """GetAdaptersAddresses: every adapter with its gateways and DNS suffixes. The buffer starts at
    15 KB and grows to the size Windows asks for (a few attempts: adapters may come and go between
    calls); no adapters at all is an empty list."""
    size = INITIAL_BUFFER_BYTES
    for _ in range(MAX_BUFFER_ATTEMPTS):
        buffer = (ctypes.c_uint64 * ((size + 7) // 8))()  # 8-byte aligned, as the structures need
        needed = ULONG(ctypes.sizeof(buffer))
        status = int(
            api.GetAdaptersAddresses(
                ULONG(AF_UNSPEC), ULONG(GAA_FLAGS), None, ctypes.byref(buffer), ctypes.byref(needed)
            )
        )
        if status == NO_ERROR:
            return parse_adapters(ctypes.addressof(buffer))  # parsed while the buffer lives
        if status == ERROR_NO_DATA:
            return []
        if status != ERROR_BUFFER_OVERFLOW:
            raise IpHelperError(f"GetAdaptersAddresses failed with Win32 error {status}")
        offered = ctypes.sizeof(buffer)
        size = int(needed.value) if needed.value > offered else offered * 2  # a bogus size: grow anyway
    raise IpHelperError(
        f"GetAdaptersAddresses failed with Win32 error {ERROR_BUFFER_OVERFLOW} (buffer overflow) "
        f"{MAX_BUFFER_ATTEMPTS} times: the adapter list kept growing"
    )


def gateway_mac(api: Any, gateway: Gateway, adapter: Adapter) -> str:
    """``gateway``'s MAC from the neighbour table (GetIpNetEntry2), resolved once when there is no
    entry (ResolveIpNetEntry2: an ARP request or neighbour solicitation); "" when neither has it."""
    row = neighbour_row(gateway, adapter)
    call = "GetIpNetEntry2"
    status = int(api.GetIpNetEntry2(ctypes.byref(row)))
    if status == ERROR_NOT_FOUND:
        row = neighbour_row(gateway, adapter)
        call = "ResolveIpNetEntry2"
        status = int(api.ResolveIpNetEntry2(ctypes.byref(row), None))
    if status != NO_ERROR:
        log.debug("no MAC for gateway %s: %s failed with Win32 error %d", gateway.ip, call, status)
        return ""
    mac = row_mac(row)
    if not mac:
        log.debug("no MAC for gateway %s: neighbour state %d", gateway.ip, int(row.State))
    return mac


def read_windows_facts(
    iphlpapi: Any = None, fleet_probe: Callable[[], tuple[bool, str]] | None = None
) -> NetworkFacts:
    """The default gateways of the adapters that are up (with their MACs) and their connection-specific
    DNS suffixes, read now; ``fleet_probe`` as on Linux."""
    if iphlpapi is None:
        iphlpapi = load_iphlpapi(
            "reading the network facts with the IP Helper API needs Windows (Linux reads rtnetlink)"
        )
    adapters = [adapter for adapter in get_adapters(iphlpapi) if adapter.counts]
    gateways = tuple(
        (gateway.ip, gateway_mac(iphlpapi, gateway, adapter))
        for adapter in adapters
        for gateway in adapter.gateways
    )
    ok, why = fleet_probe() if fleet_probe is not None else (False, "")
    return NetworkFacts(
        gateways=gateways, search_domains=unique_domains(adapters), fleet_tls=why, fleet_tls_ok=ok
    )


# --- listening TCP ports (the direction of connections open before the agent started) -------------

TCP_TABLE_OWNER_PID_LISTENER: Final = 3
ERROR_INSUFFICIENT_BUFFER: Final = 122
MIB_TCP_STATE_LISTEN: Final = 2
TCP_ROW_BYTES: Final = {AF_INET: 24, AF_INET6: 56}  # MIB_TCPROW_OWNER_PID, MIB_TCP6ROW_OWNER_PID
# where dwLocalPort and dwState sit in a row (the port in network byte order in the low 16 bits)
TCP_ROW_FIELDS: Final = {AF_INET: (8, 0), AF_INET6: (20, 48)}
MAX_TCP_ROWS: Final = 1 << 20


def parse_tcp_listeners(raw: bytes, family: int) -> set[int]:
    """The local ports of a MIB_TCPTABLE_OWNER_PID / MIB_TCP6TABLE_OWNER_PID in LISTEN.
    Raises ValueError when the table does not fit its own count."""
    if len(raw) < 4:
        raise ValueError(f"a TCP table has at least 4 bytes, not {len(raw)}")
    count = int.from_bytes(raw[:4], "little")
    size, (port_at, state_at) = TCP_ROW_BYTES[family], TCP_ROW_FIELDS[family]
    if count > MAX_TCP_ROWS or 4 + count * size > len(raw):
        raise ValueError(f"a TCP table of {count} rows does not fit in {len(raw)} bytes")
    ports: set[int] = set()
    for index in range(count):
        row = 4 + index * size
        state = int.from_bytes(raw[row + state_at : row + state_at + 4], "little")
        if state == MIB_TCP_STATE_LISTEN:
            ports.add(int.from_bytes(raw[row + port_at : row + port_at + 2], "big"))
    return ports


def _tcp_table(iphlpapi: Any, family: int) -> bytes:
    size = ctypes.c_uint32(4096)
    for _ in range(MAX_BUFFER_ATTEMPTS):
        buffer = (ctypes.c_uint8 * size.value)()
        status = iphlpapi.GetExtendedTcpTable(
            buffer,
            ctypes.byref(size),
            ctypes.c_int(0),
            ctypes.c_uint32(family),
            ctypes.c_int(TCP_TABLE_OWNER_PID_LISTENER),
            ctypes.c_uint32(0),
        )
        if status == NO_ERROR:
            return bytes(buffer)
        if status != ERROR_INSUFFICIENT_BUFFER:
            raise IpHelperError(f"GetExtendedTcpTable failed with Win32 error {status}")
    raise IpHelperError("GetExtendedTcpTable kept asking for a larger buffer")


def read_listening_ports(iphlpapi: Any = None) -> set[tuple[str, int]]:
    """TCP ports in LISTEN now, IPv4 and IPv6, as ``extension.collector.read_listening_ports`` reads
    them from /proc on Linux; empty (logged) when the table cannot be read."""
    if iphlpapi is None:
        iphlpapi = load_iphlpapi("the TCP listener table through the IP Helper API needs Windows")
    ports: set[tuple[str, int]] = set()
    for family in (AF_INET, AF_INET6):
        try:
            ports |= {("tcp", port) for port in parse_tcp_listeners(_tcp_table(iphlpapi, family), family)}
        except (OSError, ValueError) as exc:
            log.warning(
                "cannot read the TCP listeners (%s): directions of older connections are unknown", exc
            )
    return ports
