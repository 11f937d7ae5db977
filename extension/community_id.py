"""Community ID v1 flow hashes (https://github.com/corelight/community-id-spec).

A Community ID names a flow the same way Zeek, Suricata, Elastic and osquery do, so a row of ours can
be joined with their logs of the same flow. The value is ``"1:" + base64(sha1(...))`` over, in
network byte order::

    seed (u16) . src addr (4 or 16 bytes) . dst addr (same) . protocol (u8) . 0 (u8)
        . src port (u16) . dst port (u16)

with the endpoints ordered so the numerically smaller (address, port) comes first, which makes both
directions of a flow hash alike. ICMP and ICMPv6 use the message type as the source "port" and the
type of the matching reply (or, for one-way messages, the code) as the destination "port", exactly as
the reference implementation (pycommunityid) and Zeek do.

IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) are hashed as the IPv4 address: that is what the
packets on the wire carry and what Zeek or Suricata hash.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct

__all__ = ["PROTOCOL_NUMBERS", "community_id", "community_id_v1"]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMP6 = 58
PROTO_SCTP = 132

PROTOCOL_NUMBERS: dict[str, int] = {
    "icmp": PROTO_ICMP,
    "tcp": PROTO_TCP,
    "udp": PROTO_UDP,
    "icmp6": PROTO_ICMP6,
    "ipv6-icmp": PROTO_ICMP6,
    "sctp": PROTO_SCTP,
}

# Protocols hashed with ports (for the ICMPs: type and counter-type or code).
_PORT_PROTOCOLS = frozenset({PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMP6, PROTO_SCTP})

# ICMP message type -> the type of its counterpart (pycommunityid communityid/icmp.py, after Zeek).
_ICMP4_COUNTERPART = {
    8: 0,  # echo -> echo reply
    0: 8,
    13: 14,  # timestamp -> timestamp reply
    14: 13,
    15: 16,  # information request -> reply
    16: 15,
    10: 9,  # router solicitation -> router advertisement
    9: 10,
    17: 18,  # address mask request -> reply
    18: 17,
}
# ICMPv6 (pycommunityid communityid/icmp6.py).
_ICMP6_COUNTERPART = {
    128: 129,  # echo request -> echo reply
    129: 128,
    130: 131,  # MLD listener query -> report
    131: 130,
    133: 134,  # router solicitation -> advertisement
    134: 133,
    135: 136,  # neighbour solicitation -> advertisement
    136: 135,
    139: 140,  # node information ("who are you") query -> reply
    140: 139,
    144: 145,  # home agent address discovery request -> reply
    145: 144,
}


def _packed(address: str) -> bytes:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError as exc:
        raise ValueError(f"not an IP address: {address!r}") from exc
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.packed
    return ip.packed


def _check_port(port: int, what: str) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"{what} {port!r} is not a 16-bit number")


def community_id_v1(
    protocol: int,
    src_addr: str,
    dst_addr: str,
    src_port: int | None = None,
    dst_port: int | None = None,
    *,
    seed: int = 0,
) -> str:
    """The Community ID v1 of a flow given by IP protocol number.

    For TCP, UDP and SCTP the ports are required; for ICMP/ICMPv6 pass the type as ``src_port`` and
    the code as ``dst_port``; other protocols are hashed without ports (pass ``None``).
    Returns "" when the endpoints are of different address families (a socket bound to ``::`` that
    talks to an IPv4 peer: the packets carry an IPv4 source we do not know), as the spec allows for
    flows an observer cannot hash. Raises ValueError for malformed input (bad address text,
    out-of-range numbers, a missing port).
    """
    if isinstance(protocol, bool) or not 0 <= protocol <= 0xFF:
        raise ValueError(f"IP protocol {protocol!r} is not an 8-bit number")
    if isinstance(seed, bool) or not 0 <= seed <= 0xFFFF:
        raise ValueError(f"seed {seed!r} is not a 16-bit number")
    src, dst = _packed(src_addr), _packed(dst_addr)
    if len(src) != len(dst):
        return ""
    if (src_port is None) != (dst_port is None):
        raise ValueError("give both ports or neither")
    if protocol in _PORT_PROTOCOLS and (src_port is None or dst_port is None):
        raise ValueError(f"IP protocol {protocol} needs ports")

    data = struct.pack("!H", seed)
    if src_port is None or dst_port is None:
        if dst < src:
            src, dst = dst, src
        data += src + dst + struct.pack("!BB", protocol, 0)
    else:
        _check_port(src_port, "source port")
        _check_port(dst_port, "destination port")
        one_way = False
        if protocol in (PROTO_ICMP, PROTO_ICMP6):
            counterparts = _ICMP4_COUNTERPART if protocol == PROTO_ICMP else _ICMP6_COUNTERPART
            counterpart = counterparts.get(src_port)
            if counterpart is None:
                one_way = True  # type and code as they are, and no reordering
            else:
                dst_port = counterpart
        if not one_way and (dst, dst_port) < (src, src_port):
            src, dst, src_port, dst_port = dst, src, dst_port, src_port
        data += src + dst + struct.pack("!BBHH", protocol, 0, src_port, dst_port)
    digest = hashlib.sha1(data, usedforsecurity=False).digest()
    return "1:" + base64.b64encode(digest).decode("ascii")


def community_id(
    protocol: str, src_addr: str, src_port: int, dst_addr: str, dst_port: int, *, seed: int = 0
) -> str:
    """The Community ID v1 of a flow given by protocol name (``tcp``, ``udp``, ``sctp``, ``icmp``,
    ``icmp6``), as stored in our rows; "" for endpoints of different address families. Raises
    ValueError for an unknown protocol or malformed input.
    """
    number = PROTOCOL_NUMBERS.get(protocol.lower())
    if number is None:
        raise ValueError(f"no Community ID for protocol {protocol!r}")
    return community_id_v1(number, src_addr, dst_addr, src_port, dst_port, seed=seed)
