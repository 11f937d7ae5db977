"""Decoders of kernel records, on records built byte by byte; and the C layouts they mirror."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from extension import events
from extension.events import (
    AF_INET,
    AF_INET6,
    FLOW_KEY,
    FLOW_VALUE,
    PROCESS,
    RECORD_PROCESS,
    RECORD_SOCK_STATE,
    SOCK_STATE,
    DecodeError,
    ProcessRecord,
    SockStateRecord,
    decode_flow_key,
    decode_flow_value,
    decode_record,
)

HEADER = Path(__file__).resolve().parent.parent / "extension" / "bpf" / "netflow.h"


def v4(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, text) + b"\x00" * 12


def v6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def flow_key(family: int, proto: int, laddr: bytes, raddr: bytes, comm: bytes = b"curl") -> bytes:
    return FLOW_KEY.pack(4242, 1000, family, proto, 51000, 443, laddr, raddr, comm)


def test_flow_key_v4() -> None:
    key = decode_flow_key(flow_key(AF_INET, 6, v4("10.0.0.5"), v4("203.0.113.9")))
    assert (key.pid, key.uid, key.comm, key.protocol) == (4242, 1000, "curl", "tcp")
    assert (key.local_address, key.local_port, key.remote_address, key.remote_port) == (
        "10.0.0.5",
        51000,
        "203.0.113.9",
        443,
    )
    assert key.shown_family == 4


def test_flow_key_v6_and_v4_mapped() -> None:
    key = decode_flow_key(flow_key(AF_INET6, 17, v6("2001:db8::1"), v6("2001:db8::53")))
    assert (key.protocol, key.remote_address, key.shown_family) == ("udp", "2001:db8::53", 6)
    mapped = decode_flow_key(flow_key(AF_INET6, 6, v6("::ffff:10.0.0.5"), v6("::ffff:198.51.100.7")))
    assert (mapped.local_address, mapped.remote_address, mapped.shown_family) == (
        "10.0.0.5",
        "198.51.100.7",
        4,
    )


def test_comm_is_cut_at_nul_and_full_length() -> None:
    key = decode_flow_key(flow_key(AF_INET, 6, v4("1.2.3.4"), v4("5.6.7.8"), b"0123456789abcdef"))
    assert key.comm == "0123456789abcdef"
    key = decode_flow_key(flow_key(AF_INET, 6, v4("1.2.3.4"), v4("5.6.7.8"), b"ssh\x00garbage"))
    assert key.comm == "ssh"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00" * 10, "flow key of 10 bytes"),
        (FLOW_KEY.pack(1, 0, 1, 6, 0, 0, b"", b"", b""), "unknown address family 1"),
        (FLOW_KEY.pack(1, 0, AF_INET, 1, 0, 0, b"", b"", b""), "unknown protocol 1"),
    ],
)
def test_bad_flow_keys(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_flow_key(raw)


def test_flow_value() -> None:
    # created at 5 s (tick 1000), last call 250 ticks later at 250 Hz: one second later
    value = decode_flow_value(FLOW_VALUE.pack(10, 20, 1, 2, 5_000_000_000, 1000, 1250, 1), 4e6)
    assert (value.bytes_sent, value.bytes_received, value.sends, value.receives) == (10, 20, 1, 2)
    assert (value.first_ns, value.last_ns, value.first_dir) == (
        5_000_000_000,
        6_000_000_000,
        events.FIRST_RECEIVED,
    )
    with pytest.raises(DecodeError, match="flow value of 63 bytes"):
        decode_flow_value(b"\x00" * 63, 4e6)
    with pytest.raises(DecodeError, match="impossible ticks"):
        decode_flow_value(FLOW_VALUE.pack(1, 1, 1, 1, 5, 10, 9, 0), 4e6)
    with pytest.raises(DecodeError, match="impossible ticks"):
        decode_flow_value(FLOW_VALUE.pack(1, 1, 1, 1, 5, 10, 10, 7), 4e6)


def sock_state(**overrides: object) -> bytes:
    fields: dict[str, object] = {
        "kind": RECORD_SOCK_STATE,
        "size": SOCK_STATE.size,
        "ts": 5,
        "cookie": 77,
        "tgid": 10,
        "uid": 0,
        "family": AF_INET6,
        "proto": 6,
        "old": 2,
        "new": 1,
        "lport": 40000,
        "rport": 22,
        "laddr": v6("2001:db8::2"),
        "raddr": v6("2001:db8::3"),
        "comm": b"ssh",
    }
    fields.update(overrides)
    return SOCK_STATE.pack(*fields.values())


def test_sock_state_record() -> None:
    record = decode_record(sock_state())
    assert isinstance(record, SockStateRecord)
    assert (record.cookie, record.pid, record.oldstate, record.newstate) == (77, 10, 2, 1)
    assert (record.local_address, record.remote_port, record.shown_family, record.comm) == (
        "2001:db8::2",
        22,
        6,
        "ssh",
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x01\x00", "shorter than its header"),
        (sock_state(size=SOCK_STATE.size + 8), "says 104 bytes but 96 arrived"),
        (sock_state(family=99), "unknown address family 99"),
        (sock_state(proto=132), "unknown protocol 132"),
        (sock_state(kind=9), "unknown kind 9"),
        (struct.pack("<II", RECORD_SOCK_STATE, 8), "socket state record of 8 bytes"),
        (struct.pack("<II", RECORD_PROCESS, 8), "process record of 8 bytes"),
    ],
)
def test_bad_records(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_record(raw)


def test_process_record_rebuilds_the_path_from_dentries() -> None:
    names = b"".join(
        name.ljust(events.NAME_LEN, b"\x00") for name in (b"python3.11", b"bin", b"usr", b"/")
    ).ljust(events.PATH_DEPTH * events.NAME_LEN, b"\x00")
    raw = PROCESS.pack(
        RECORD_PROCESS, PROCESS.size, 1, 2, 300, 1, 0, 259, 4096, 1700000000, 5000, b"python3", 4, names
    )
    record = decode_record(raw)
    assert isinstance(record, ProcessRecord)
    assert record.exe_path == "/usr/bin/python3.11"
    assert (record.pid, record.ppid, record.exe_dev, record.exe_ino, record.exe_size) == (
        300,
        1,
        259,
        4096,
        5000,
    )


def test_format_address_unknown_family() -> None:
    with pytest.raises(DecodeError):
        events.format_address(3, b"\x00" * 16)


@pytest.mark.skipif(
    shutil.which("gcc") is None, reason="gcc is not installed: cannot compile the layout probe"
)
def test_c_layouts_match_the_python_formats(tmp_path: Path) -> None:
    """Compile netflow.h with the C compiler and compare every struct size with the decoders."""
    probe = tmp_path / "probe.c"
    probe.write_text(
        "#include <linux/types.h>\n#include <stdio.h>\n"
        f'#include "{HEADER}"\n'
        'int main(void) { printf("%zu %zu %zu %zu %zu %zu\\n", sizeof(struct pnf_flow_key),'
        " sizeof(struct pnf_flow_value), sizeof(struct pnf_sock_state), sizeof(struct pnf_process),"
        " __builtin_offsetof(struct pnf_process, names), sizeof(struct pnf_dns)); return 0; }\n"
    )
    binary = tmp_path / "probe"
    subprocess.run(["gcc", "-o", str(binary), str(probe)], check=True)
    sizes = [
        int(x)
        for x in subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.split()
    ]
    names_offset = PROCESS.size - events.PATH_DEPTH * events.NAME_LEN
    assert sizes == [
        FLOW_KEY.size,
        FLOW_VALUE.size,
        SOCK_STATE.size,
        PROCESS.size,
        names_offset,
        events.DNS.size,
    ]


def test_dns_record() -> None:
    packet = b"\x45" + b"\x00" * 59
    raw = events.DNS.pack(events.RECORD_DNS, events.DNS.size, len(packet), len(packet), packet)
    record = decode_record(raw)
    assert isinstance(record, events.DnsRecord)
    assert record.packet == packet and not record.truncated
    cut = events.DNS.pack(events.RECORD_DNS, events.DNS.size, events.DNS_MAX, 4000, b"\x45" * events.DNS_MAX)
    record = decode_record(cut)
    assert isinstance(record, events.DnsRecord) and record.truncated
    for length, wire in ((0, 0), (events.DNS_MAX + 1, 9000), (100, 99)):
        bad = events.DNS.pack(events.RECORD_DNS, events.DNS.size, length, wire, b"")
        with pytest.raises(DecodeError, match="impossible lengths"):
            decode_record(bad)
