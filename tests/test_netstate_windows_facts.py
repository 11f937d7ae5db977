"""The Windows reader of the enterprise-network facts, on a fake iphlpapi that lays out the documented
Windows x64 structures in the caller's buffer (real pointers into that buffer, written from hard-coded
offsets rather than from the reader's own ctypes declarations), and on the structure layouts themselves.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from extension import netstate_windows
from extension.netstate import NetworkFacts, Policy, evaluate, read_facts
from extension.netstate_windows import (
    GUID,
    IP_ADAPTER_ADDRESSES_LH,
    IP_ADAPTER_DNS_SUFFIX,
    IP_ADAPTER_GATEWAY_ADDRESS_LH,
    MIB_IPNET_ROW2,
    SOCKADDR_IN,
    SOCKADDR_IN6,
    SOCKADDR_INET,
    SOCKET_ADDRESS,
    IpHelperError,
    IpHelperFeed,
    parse_sockaddr,
    read_windows_facts,
)

x64 = pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="the layouts checked are x64's")
pytestmark = x64

ETHERNET, LOOPBACK = 6, 24
UP, DOWN = 1, 2
REACHABLE, STALE, UNREACHABLE, INCOMPLETE = 5, 4, 0, 1  # NL_NEIGHBOR_STATE
GAA_FLAGS = 0x80 | 0x2 | 0x4 | 0x20

# Windows x64 offsets (iptypes.h), written down independently of the reader's declarations
ADAPTER_SIZE, GATEWAY_SIZE, SUFFIX_SIZE = 448, 32, 520
A_LENGTH, A_NEXT, A_DNS_SUFFIX, A_IF_TYPE = 0, 8, 56, 100
A_GATEWAY, A_LUID, A_FIRST_DNS_SUFFIX = 208, 224, 440
ROW_INDEX, ROW_MAC, ROW_MAC_LENGTH, ROW_STATE = 28, 40, 72, 76


def sockaddr_in(ip: str) -> bytes:
    return struct.pack("<HH4s8x", 2, 0, ipaddress.IPv4Address(ip).packed)


def sockaddr_in6(ip: str, scope_id: int = 0) -> bytes:
    return struct.pack("<HHI16sI", 23, 0, 0, ipaddress.IPv6Address(ip).packed, scope_id)


def mac(text: str) -> bytes:
    return bytes(int(octet, 16) for octet in text.split(":"))


@dataclass
class FakeAdapter:
    if_index: int
    ipv6_if_index: int = 0
    luid: int = 0
    oper_status: int = UP
    if_type: int = ETHERNET
    gateways: list[bytes] = field(default_factory=list)  # SOCKADDR_IN / SOCKADDR_IN6
    dns_suffix: str | None = None  # None: a NULL DnsSuffix
    suffixes: list[str] = field(default_factory=list)  # the FirstDnsSuffix list
    length: int = ADAPTER_SIZE  # what Windows puts in Length (all fields are written regardless)


class Image:
    """The bytes GetAdaptersAddresses writes, to be placed at ``base``: pointers are base + offset."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.data = bytearray()

    def alloc(self, size: int) -> int:
        offset = len(self.data)
        self.data += bytes((size + 7) & ~7)
        return offset

    def put(self, offset: int, fmt: str, *values: Any) -> None:
        struct.pack_into(fmt, self.data, offset, *values)

    def blob(self, raw: bytes) -> int:
        """Copies ``raw`` in; its address."""
        offset = self.alloc(len(raw))
        self.data[offset : offset + len(raw)] = raw
        return self.base + offset


def lay_out(adapters: list[FakeAdapter], base: int) -> bytearray:
    image = Image(base)
    starts = [image.alloc(ADAPTER_SIZE) for _ in adapters]
    for number, (adapter, at) in enumerate(zip(adapters, starts, strict=True)):
        following = image.base + starts[number + 1] if number + 1 < len(starts) else 0
        image.put(at + A_LENGTH, "<II", adapter.length, adapter.if_index)
        image.put(at + A_NEXT, "<Q", following)
        image.put(at + A_IF_TYPE, "<III", adapter.if_type, adapter.oper_status, adapter.ipv6_if_index)
        image.put(at + A_LUID, "<Q", adapter.luid)
        if adapter.dns_suffix is not None:
            image.put(at + A_DNS_SUFFIX, "<Q", image.blob(adapter.dns_suffix.encode("utf-16-le") + b"\0\0"))
        link = at + A_GATEWAY
        for raw in adapter.gateways:
            entry = image.alloc(GATEWAY_SIZE)
            image.put(entry, "<II", GATEWAY_SIZE, 0)
            image.put(entry + 16, "<Qi", image.blob(raw), len(raw))
            image.put(link, "<Q", image.base + entry)
            link = entry + 8  # its Next
        link = at + A_FIRST_DNS_SUFFIX
        for suffix in adapter.suffixes:
            entry = image.alloc(SUFFIX_SIZE)
            text = suffix.encode("utf-16-le")
            image.data[entry + 8 : entry + 8 + len(text)] = text
            image.put(link, "<Q", image.base + entry)
            link = entry  # its Next
    return image.data


def row_key(row: Any) -> tuple[str, int, int]:
    """(gateway IP, InterfaceIndex, InterfaceLuid) of the MIB_IPNET_ROW2 the reader passed."""
    raw = ctypes.string_at(ctypes.addressof(row), 88)
    family = struct.unpack_from("<H", raw, 0)[0]
    ip = ipaddress.IPv4Address(raw[4:8]) if family == 2 else ipaddress.IPv6Address(raw[8:24])
    index, luid = struct.unpack_from("<IQ", raw, ROW_INDEX)
    return str(ip), index, luid


def fill_row(row: Any, address: bytes, state: int) -> None:
    base = ctypes.addressof(row)
    ctypes.memmove(base + ROW_MAC, address, len(address))
    ctypes.memmove(base + ROW_MAC_LENGTH, struct.pack("<II", len(address), state), 8)


class FakeIpHelper:
    """GetAdaptersAddresses, GetIpNetEntry2 and ResolveIpNetEntry2 as Windows answers them.

    ``neighbours`` is the neighbour table and ``resolvable`` what a resolution would find, both keyed
    by (IP, interface index) with (MAC bytes, NL_NEIGHBOR_STATE); ``status`` makes GetAdaptersAddresses
    fail with it; ``grow`` makes the adapter list outgrow every buffer."""

    def __init__(
        self,
        adapters: list[FakeAdapter],
        neighbours: dict[tuple[str, int], tuple[bytes, int]] | None = None,
        resolvable: dict[tuple[str, int], bytes] | None = None,
        status: int | None = None,
        grow: bool = False,
    ) -> None:
        self.adapters = adapters
        self.neighbours = neighbours or {}
        self.resolvable = resolvable or {}
        self.status = status
        self.grow = grow
        self.offered: list[int] = []
        self.calls: list[tuple[str, str, int, int]] = []

    def needed(self) -> int:
        return len(lay_out(self.adapters, 0))

    def GetAdaptersAddresses(self, family: Any, flags: Any, reserved: Any, adapters: Any, size: Any) -> int:
        assert (family.value, flags.value, reserved) == (0, GAA_FLAGS, None)
        buffer, offered = adapters._obj, size._obj.value
        assert ctypes.sizeof(buffer) >= offered  # the caller owns what it says it offers
        self.offered.append(offered)
        if self.status is not None:
            return self.status
        if self.grow or offered < self.needed():
            size._obj.value = offered + 1000 if self.grow else self.needed()
            return 111  # ERROR_BUFFER_OVERFLOW
        image = lay_out(self.adapters, ctypes.addressof(buffer))
        ctypes.memmove(ctypes.addressof(buffer), bytes(image), len(image))
        return 0

    def GetIpNetEntry2(self, row: Any) -> int:
        ip, index, luid = row_key(row._obj)
        self.calls.append(("GetIpNetEntry2", ip, index, luid))
        if (ip, index) not in self.neighbours:
            return 1168  # ERROR_NOT_FOUND
        fill_row(row._obj, *self.neighbours[ip, index])
        return 0

    def ResolveIpNetEntry2(self, row: Any, source: Any) -> int:
        assert source is None
        ip, index, luid = row_key(row._obj)
        self.calls.append(("ResolveIpNetEntry2", ip, index, luid))
        if (ip, index) not in self.resolvable:
            return 67  # ERROR_BAD_NET_NAME: nobody answered
        fill_row(row._obj, self.resolvable[ip, index], REACHABLE)
        return 0


def office() -> FakeIpHelper:
    """Wired Ethernet with an IPv4 gateway in the neighbour table, Wi-Fi with an IPv6 link-local
    gateway to be resolved, a disconnected adapter, and the loopback."""
    wired = FakeAdapter(
        if_index=4,
        ipv6_if_index=4,
        luid=0x6000001,
        gateways=[sockaddr_in("0.0.0.0"), sockaddr_in("192.168.1.1")],
        dns_suffix="corp.example",
        suffixes=["corp.example", "eu.corp.example"],
    )
    wifi = FakeAdapter(
        if_index=12,
        ipv6_if_index=13,
        luid=0x47000002,
        gateways=[sockaddr_in6("::"), sockaddr_in6("fe80::1", scope_id=13)],
        dns_suffix="home.example",
        suffixes=["Corp.Example."],
    )
    down = FakeAdapter(
        if_index=7,
        oper_status=DOWN,
        gateways=[sockaddr_in("10.9.9.9")],
        dns_suffix="down.example",
        suffixes=["down2.example"],
    )
    loopback = FakeAdapter(
        if_index=1, if_type=LOOPBACK, gateways=[sockaddr_in("127.0.0.2")], dns_suffix="loop.example"
    )
    return FakeIpHelper(
        [wired, down, wifi, loopback],
        neighbours={
            ("192.168.1.1", 4): (mac("aa:bb:cc:00:11:22"), REACHABLE),
            ("10.9.9.9", 7): (mac("02:00:00:00:00:99"), REACHABLE),
        },
        resolvable={("fe80::1", 13): mac("02:00:5E:00:00:01")},
    )


def test_structure_sizes_are_the_windows_x64_ones() -> None:
    sizes = {
        SOCKET_ADDRESS: 16,
        SOCKADDR_IN: 16,
        SOCKADDR_IN6: 28,
        SOCKADDR_INET: 28,
        GUID: 16,
        IP_ADAPTER_GATEWAY_ADDRESS_LH: 32,
        IP_ADAPTER_DNS_SUFFIX: 520,
        IP_ADAPTER_ADDRESSES_LH: 448,
        MIB_IPNET_ROW2: 88,
    }
    assert {kind.__name__: ctypes.sizeof(kind) for kind in sizes} == {
        kind.__name__: size for kind, size in sizes.items()
    }


def test_field_offsets_are_the_windows_x64_ones() -> None:
    adapter = {
        "Length": 0, "IfIndex": 4, "Next": 8, "AdapterName": 16, "FirstUnicastAddress": 24,
        "FirstAnycastAddress": 32, "FirstMulticastAddress": 40, "FirstDnsServerAddress": 48,
        "DnsSuffix": 56, "Description": 64, "FriendlyName": 72, "PhysicalAddress": 80,
        "PhysicalAddressLength": 88, "Flags": 92, "Mtu": 96, "IfType": 100, "OperStatus": 104,
        "Ipv6IfIndex": 108, "ZoneIndices": 112, "FirstPrefix": 176, "TransmitLinkSpeed": 184,
        "ReceiveLinkSpeed": 192, "FirstWinsServerAddress": 200, "FirstGatewayAddress": 208,
        "Ipv4Metric": 216, "Ipv6Metric": 220, "Luid": 224, "Dhcpv4Server": 232, "CompartmentId": 248,
        "NetworkGuid": 252, "ConnectionType": 268, "TunnelType": 272, "Dhcpv6Server": 280,
        "Dhcpv6ClientDuid": 296, "Dhcpv6ClientDuidLength": 428, "Dhcpv6Iaid": 432, "FirstDnsSuffix": 440,
    }  # fmt: skip
    others: dict[Any, dict[str, int]] = {
        IP_ADAPTER_GATEWAY_ADDRESS_LH: {"Length": 0, "Reserved": 4, "Next": 8, "Address": 16},
        SOCKET_ADDRESS: {"lpSockaddr": 0, "iSockaddrLength": 8},
        IP_ADAPTER_DNS_SUFFIX: {"Next": 0, "String": 8},
        SOCKADDR_IN: {"sin_family": 0, "sin_port": 2, "sin_addr": 4},
        SOCKADDR_IN6: {
            "sin6_family": 0, "sin6_port": 2, "sin6_flowinfo": 4, "sin6_addr": 8, "sin6_scope_id": 24,
        },
        MIB_IPNET_ROW2: {
            "Address": 0, "InterfaceIndex": 28, "InterfaceLuid": 32, "PhysicalAddress": 40,
            "PhysicalAddressLength": 72, "State": 76, "Flags": 80, "ReachabilityTime": 84,
        },
    }  # fmt: skip
    for structure, offsets in [(IP_ADAPTER_ADDRESSES_LH, adapter), *others.items()]:
        actual = {name: getattr(structure, name).offset for name in offsets}
        assert actual == offsets, structure.__name__
    assert IP_ADAPTER_DNS_SUFFIX.String.size == 512  # WCHAR is 2 bytes, not Linux's 4-byte wchar_t


def test_the_facts_of_the_adapters_that_are_up() -> None:
    api = office()
    facts = read_windows_facts(api, fleet_probe=lambda: (True, "fleet.corp.example:443"))
    assert facts == NetworkFacts(
        gateways=(("192.168.1.1", "aa:bb:cc:00:11:22"), ("fe80::1", "02:00:5e:00:00:01")),
        search_domains=("corp.example", "eu.corp.example", "home.example"),
        fleet_tls="fleet.corp.example:443",
        fleet_tls_ok=True,
    )
    # the IPv4 gateway by the adapter's IfIndex, the IPv6 one by its Ipv6IfIndex, both with its LUID;
    # nothing looked up for the adapter that is down or the loopback
    assert api.calls == [
        ("GetIpNetEntry2", "192.168.1.1", 4, 0x6000001),
        ("GetIpNetEntry2", "fe80::1", 13, 0x47000002),
        ("ResolveIpNetEntry2", "fe80::1", 13, 0x47000002),
    ]
    assert api.offered == [15_000]


def test_fields_past_length_are_not_read() -> None:
    """An older Windows fills a shorter structure: what lies past its Length is not read, even when the
    bytes there look like a pointer (the fake plants real ones)."""
    vista = FakeAdapter(if_index=3, length=440, dns_suffix="vista.example", suffixes=["leaked.example"])
    xp = FakeAdapter(
        if_index=5, length=184, gateways=[sockaddr_in("10.7.7.7")], dns_suffix="xp.example"
    )  # the IP_ADAPTER_ADDRESSES_XP size on x64: no gateways, no LUID
    full = FakeAdapter(if_index=6, gateways=[sockaddr_in("10.6.6.6")], suffixes=["full.example"])
    facts = read_windows_facts(FakeIpHelper([vista, xp, full]))
    assert facts.search_domains == ("vista.example", "xp.example", "full.example")
    assert facts.gateways == (("10.6.6.6", ""),)


def test_a_small_buffer_is_retried_with_the_size_windows_asks_for() -> None:
    suffixes = [f"site{number}.corp.example" for number in range(40)]  # 40 x 520 bytes > 15 KB
    api = FakeIpHelper([FakeAdapter(if_index=2, suffixes=suffixes)])
    assert api.needed() > 15_000
    facts = read_windows_facts(api)
    assert api.offered == [15_000, api.needed()]
    assert facts.search_domains == tuple(suffixes)


def test_an_adapter_list_that_keeps_growing_is_an_error_after_three_attempts() -> None:
    api = FakeIpHelper([FakeAdapter(if_index=2)], grow=True)
    with pytest.raises(IpHelperError, match="GetAdaptersAddresses failed with Win32 error 111"):
        read_windows_facts(api)
    assert api.offered == [15_000, 16_000, 17_000]


def test_no_adapters_is_empty_facts() -> None:
    facts = read_windows_facts(FakeIpHelper([], status=232), fleet_probe=lambda: (False, "unreachable"))
    assert facts == NetworkFacts(fleet_tls="unreachable", fleet_tls_ok=False)


def test_another_error_names_the_call_and_the_number() -> None:
    with pytest.raises(IpHelperError, match=r"^GetAdaptersAddresses failed with Win32 error 87$"):
        read_windows_facts(FakeIpHelper([FakeAdapter(if_index=2)], status=87))


@pytest.mark.parametrize(
    ("address", "state", "expected"),
    [
        (mac("AA:BB:CC:00:11:22"), REACHABLE, "aa:bb:cc:00:11:22"),
        (mac("aa:bb:cc:00:11:22"), STALE, "aa:bb:cc:00:11:22"),  # stale still names the router
        (mac("aa:bb:cc:00:11:22"), UNREACHABLE, ""),
        (mac("aa:bb:cc:00:11:22"), INCOMPLETE, ""),
        (bytes(6), REACHABLE, ""),
        (mac("aa:bb:cc:00:11:22:33:44"), REACHABLE, ""),  # not an Ethernet MAC
    ],
)
def test_the_gateway_mac_from_the_neighbour_entry(address: bytes, state: int, expected: str) -> None:
    api = FakeIpHelper(
        [FakeAdapter(if_index=9, gateways=[sockaddr_in("10.1.0.1")])],
        neighbours={("10.1.0.1", 9): (address, state)},
        resolvable={("10.1.0.1", 9): mac("02:00:00:00:00:01")},
    )
    assert read_windows_facts(api).gateways == (("10.1.0.1", expected),)
    assert [call[0] for call in api.calls] == ["GetIpNetEntry2"]  # an entry exists: no resolution


def test_no_neighbour_entry_and_no_answer_leaves_the_mac_empty(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeIpHelper([FakeAdapter(if_index=9, gateways=[sockaddr_in("10.1.0.1")])])
    with caplog.at_level(logging.DEBUG, logger="extension.netstate_windows"):
        facts = read_windows_facts(api)
    assert facts.gateways == (("10.1.0.1", ""),)  # the gateway IP still counts
    assert [call[0] for call in api.calls] == ["GetIpNetEntry2", "ResolveIpNetEntry2"]
    assert "no MAC for gateway 10.1.0.1: ResolveIpNetEntry2 failed with Win32 error 67" in caplog.text
    decision = evaluate(Policy.from_settings(["10.1.0.1"], [], []), facts)
    assert decision.on and "default gateway 10.1.0.1 is an enterprise gateway" in decision.reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (sockaddr_in("10.1.2.3"), "10.1.2.3"),
        (sockaddr_in6("fe80::1", scope_id=7), "fe80::1"),  # no zone, as the Linux reader shows it
        (sockaddr_in6("2001:db8::1"), "2001:db8::1"),
        (sockaddr_in("0.0.0.0"), None),
        (sockaddr_in6("::"), None),
        (struct.pack("<HHI16sI", 10, 0, 0, ipaddress.IPv6Address("fe80::1").packed, 0), None),  # Linux's 10
        (sockaddr_in6("fe80::1")[:20], None),  # too short to hold the address
    ],
)
def test_gateway_socket_addresses(raw: bytes, expected: str | None) -> None:
    buffer = ctypes.create_string_buffer(raw, len(raw))
    gateway = parse_sockaddr(ctypes.addressof(buffer), len(raw))
    assert (gateway.ip if gateway else None) == expected
    assert parse_sockaddr(None, 16) is None


def test_read_facts_dispatches_to_the_windows_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    api = office()
    needs: list[str] = []

    def load(need: str) -> FakeIpHelper:
        needs.append(need)
        return api

    monkeypatch.setattr(netstate_windows, "load_iphlpapi", load)
    monkeypatch.setattr(sys, "platform", "win32")
    facts = read_facts(fleet_probe=lambda: (True, "fleet:443"))
    monkeypatch.undo()
    assert facts.gateways == (("192.168.1.1", "aa:bb:cc:00:11:22"), ("fe80::1", "02:00:5e:00:00:01"))
    assert facts.search_domains == ("corp.example", "eu.corp.example", "home.example")
    assert (facts.fleet_tls, facts.fleet_tls_ok) == ("fleet:443", True)
    assert len(needs) == 1 and api.offered == [15_000]
    assert sys.platform != "win32"  # restored


def test_the_policy_decides_on_the_gateway_mac_and_on_the_dns_suffix() -> None:
    facts = read_windows_facts(office())
    by_mac = evaluate(Policy.from_settings([], ["02-00-5E-00-00-01"], []), facts)
    assert by_mac.on and by_mac.reason == "default gateway fe80::1 has enterprise MAC 02:00:5e:00:00:01"
    by_domain = evaluate(Policy.from_settings([], [], ["EU.corp.example"]), facts)
    assert by_domain.on and by_domain.reason == "DNS search domain eu.corp.example is an enterprise domain"
    # what only the disconnected adapter and the loopback have does not put the device on
    gateways, macs, domains = (
        ["10.9.9.9", "127.0.0.2"],
        ["02:00:00:00:00:99"],
        ["down.example", "loop.example"],
    )
    elsewhere = evaluate(Policy.from_settings(gateways, macs, domains), facts)
    assert not elsewhere.on
    assert elsewhere.reason.endswith("(default gateways: 192.168.1.1, fe80::1)")


def test_off_windows_iphlpapi_cannot_be_loaded_and_says_why() -> None:
    assert not hasattr(ctypes, "WinDLL")
    with pytest.raises(IpHelperError, match="reading the network facts with the IP Helper API needs Windows"):
        read_windows_facts()
    with pytest.raises(IpHelperError, match="IP Helper notifications need Windows"):
        IpHelperFeed()


# --- the TCP listener table -------------------------------------------------------------------------


def tcp4_row(state: int, port: int) -> bytes:
    # MIB_TCPROW_OWNER_PID: state, local addr, local port (network order in the low 16 bits), remote
    # addr, remote port, owning pid
    return struct.pack("<II", state, 0) + struct.pack(">H", port) + b"\x00\x00" + struct.pack("<III", 0, 0, 4)


def tcp6_row(state: int, port: int) -> bytes:
    # MIB_TCP6ROW_OWNER_PID: local addr[16], scope, local port, remote addr[16], scope, remote port,
    # state, owning pid
    return (
        bytes(16) + struct.pack("<I", 0) + struct.pack(">H", port) + b"\x00\x00"
        + bytes(16) + struct.pack("<III", 0, 0, state) + struct.pack("<I", 4)
    )  # fmt: skip


class FakeTcpTables:
    """GetExtendedTcpTable as Windows answers: too small a buffer gets the size needed and 122."""

    def __init__(self, tables: dict[int, bytes], status: int = 0) -> None:
        self.tables = tables
        self.status = status
        self.calls: list[tuple[int, int]] = []

    def GetExtendedTcpTable(
        self, buffer: Any, size: Any, order: Any, family: Any, klass: Any, reserved: Any
    ) -> int:
        assert klass.value == 3 and reserved.value == 0  # TCP_TABLE_OWNER_PID_LISTENER
        self.calls.append((family.value, size._obj.value))
        if self.status:
            return self.status
        table = self.tables[family.value]
        if size._obj.value < len(table):
            size._obj.value = len(table)
            return 122
        ctypes.memmove(buffer, table, len(table))
        return 0


def test_listening_ports_from_the_tcp_tables() -> None:
    from extension.netstate_windows import read_listening_ports  # noqa: PLC0415

    v4 = struct.pack("<I", 3) + tcp4_row(2, 445) + tcp4_row(5, 50000) + tcp4_row(2, 3389)
    v6 = struct.pack("<I", 201) + b"".join(tcp6_row(2, 8000 + n) for n in range(201))  # > 4096 bytes
    api = FakeTcpTables({2: v4, 23: v6})
    ports = read_listening_ports(api)
    assert ports == {("tcp", 445), ("tcp", 3389)} | {("tcp", 8000 + n) for n in range(201)}
    assert [family for family, _ in api.calls] == [2, 23, 23]  # the IPv6 table needed a larger buffer
    assert api.calls[-1][1] == 4 + 201 * 56


def test_a_table_that_does_not_fit_its_count_is_refused_and_an_error_leaves_no_ports() -> None:
    from extension.netstate_windows import parse_tcp_listeners, read_listening_ports  # noqa: PLC0415

    with pytest.raises(ValueError, match="2 rows does not fit in 28 bytes"):
        parse_tcp_listeners(struct.pack("<I", 2) + tcp4_row(2, 1), 2)
    with pytest.raises(ValueError, match="at least 4 bytes"):
        parse_tcp_listeners(b"\x01", 23)
    assert parse_tcp_listeners(struct.pack("<I", 0), 23) == set()
    assert read_listening_ports(FakeTcpTables({}, status=5)) == set()  # access denied: logged


def test_the_collector_asks_windows_for_listeners() -> None:
    from extension.collector import read_listening_ports  # noqa: PLC0415

    assert read_listening_ports(platform="win32") == set()  # no iphlpapi here: logged, none
