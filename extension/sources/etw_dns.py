"""Names processes resolved on Windows: the ETW provider Microsoft-Windows-DNS-Client.

On Linux the agent learns host names from the DNS answers the kernel sees arrive; on Windows the DNS
client itself reports every completed query (event 3008, the one osquery's own ``dns_lookup_events``
reads), in the process that asked. Its user data, in the manifest's order:

=============  =============  =============================================================
field          type           here
=============  =============  =============================================================
QueryName      UnicodeString  the name asked for (UTF-16LE, NUL-terminated)
QueryType      UInt32         1 A, 28 AAAA, 5 CNAME, ...
QueryOptions   UInt64         DNS_QUERY_* flags (unused)
QueryStatus    UInt32         0 on success, else a Win32/DNS error (9003 no such name, ...)
QueryResults   UnicodeString  records separated by ``;``: addresses (IPv4 as ``::ffff:a.b.c.d``),
                              other types as ``type:  5 target``
=============  =============  =============================================================

:func:`decode_dns_query` validates all of it; the addresses of a successful query are learned as
names of the query (the name the process used, as on Linux, not the CNAME target).
**Not run on Windows yet**: tested on payloads built byte by byte from that layout.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from extension.sources.etw_events import EtwDecodeError

DNS_CLIENT_NAME: Final = "Microsoft-Windows-DNS-Client"
DNS_CLIENT_GUID: Final = "1C95126E-7EEA-49A9-A3FE-A378B03DDB4D"
QUERY_COMPLETED: Final = 3008
MAX_NAME_CHARS: Final = 255  # a DNS name is at most 253 characters; allow a trailing dot
MAX_RESULTS_CHARS: Final = 16384
_MIDDLE: Final = struct.Struct("<IQI")  # QueryType, QueryOptions, QueryStatus


@dataclass(frozen=True, slots=True)
class DnsQuery:
    name: str
    query_type: int
    status: int
    addresses: tuple[str, ...]  # canonical text; v4-mapped shown as IPv4; empty unless status is 0


def _utf16z(payload: bytes, offset: int, limit: int, field: str) -> tuple[str, int]:
    """A NUL-terminated UTF-16LE string at ``offset``: (text, offset after the NUL)."""
    end = offset
    while True:
        if end + 2 > len(payload):
            raise EtwDecodeError(f"{field} is not NUL-terminated")
        if payload[end : end + 2] == b"\x00\x00":
            break
        end += 2
        if (end - offset) // 2 > limit:
            raise EtwDecodeError(f"{field} is longer than {limit} characters")
    try:
        text = payload[offset:end].decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise EtwDecodeError(f"{field} is not UTF-16: {exc.reason}") from None
    return text, end + 2


def parse_results(results: str) -> tuple[str, ...]:
    """The addresses among a QueryResults text, canonical, deduplicated in order; the rest skipped."""
    found: list[str] = []
    for item in results.split(";"):
        entry = item.strip()
        if not entry or entry.startswith("type:"):
            continue
        try:
            address = ipaddress.ip_address(entry)
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            text = str(address.ipv4_mapped)
        else:
            text = str(address)
        if text not in found:
            found.append(text)
    return tuple(found)


def decode_dns_query(payload: bytes) -> DnsQuery:
    """Event 3008's user data; EtwDecodeError names what is wrong."""
    name, offset = _utf16z(payload, 0, MAX_NAME_CHARS, "QueryName")
    if offset + _MIDDLE.size > len(payload):
        raise EtwDecodeError(f"{len(payload)} bytes end before QueryStatus")
    query_type, _options, status = _MIDDLE.unpack_from(payload, offset)
    # bytes after QueryResults are ignored: a later version of the event may append fields
    results, _end = _utf16z(payload, offset + _MIDDLE.size, MAX_RESULTS_CHARS, "QueryResults")
    name = name.strip().rstrip(".")
    return DnsQuery(name, query_type, status, parse_results(results) if status == 0 and name else ())
