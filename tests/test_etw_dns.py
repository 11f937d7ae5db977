"""Host names on Windows from Microsoft-Windows-DNS-Client: event 3008 decoded from payloads built
byte by byte, the session routing that provider's events (and refusing what it did not ask for), and
the collector naming a peer from a query the process made, with the session's loss counters
persisted for net_agent_status."""

from __future__ import annotations

import ipaddress
import sqlite3
import struct
import time
from pathlib import Path

import pytest

from extension.sources.etw import EtwSource
from extension.sources.etw_dns import (
    DNS_CLIENT_GUID,
    DNS_CLIENT_NAME,
    MAX_NAME_CHARS,
    QUERY_COMPLETED,
    DnsQuery,
    decode_dns_query,
    parse_results,
)
from extension.sources.etw_events import PROVIDER_GUID, PROVIDER_NAME, EtwDecodeError
from extension.sources.etw_session import KEYWORDS_ALL, EtwSession
from tests.test_etw_session import FakeTraceApi


def wide(text: str) -> bytes:
    return text.encode("utf-16-le") + b"\x00\x00"


def query_payload(name: str, results: str, *, qtype: int = 1, status: int = 0, options: int = 0x140) -> bytes:
    return wide(name) + struct.pack("<IQI", qtype, options, status) + wide(results)


def test_a_completed_query_names_its_addresses() -> None:
    results = "type:  5 edge.example.net;::ffff:93.184.216.34;2606:2800:220:1::248;::ffff:93.184.216.34;"
    query = decode_dns_query(query_payload("www.Example.org.", results))
    assert query == DnsQuery(
        name="www.Example.org", query_type=1, status=0, addresses=("93.184.216.34", "2606:2800:220:1::248")
    )


def test_failed_and_empty_queries_name_nothing() -> None:
    assert decode_dns_query(query_payload("nope.example", "", status=9003)).addresses == ()
    # a failed query's results are not trusted even if present
    assert decode_dns_query(query_payload("x.example", "::ffff:10.0.0.1;", status=1460)).addresses == ()
    assert decode_dns_query(query_payload("", "::ffff:10.0.0.1;")).addresses == ()


@pytest.mark.parametrize(
    ("results", "addresses"),
    [
        ("", ()),
        (";;", ()),
        ("type:  5 a.example;type:  5 b.example;", ()),
        (" ::ffff:192.0.2.1 ; fe80::1 ;", ("192.0.2.1", "fe80::1")),
        ("not-an-address;300.1.1.1;::ffff:198.51.100.9", ("198.51.100.9",)),
    ],
)
def test_results_text(results: str, addresses: tuple[str, ...]) -> None:
    assert parse_results(results) == addresses


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", "QueryName is not NUL-terminated"),
        ("abc".encode("utf-16-le"), "QueryName is not NUL-terminated"),
        (wide("a.example") + b"\x01\x00\x00\x00", "end before QueryStatus"),
        (
            wide("a.example") + struct.pack("<IQI", 1, 0, 0) + "1.2".encode("utf-16-le"),
            "QueryResults is not NUL",
        ),
        (wide("a" * (MAX_NAME_CHARS + 1)), "QueryName is longer than 255"),
        (b"\x00\xd8\x00\x00" + struct.pack("<IQI", 1, 0, 0) + wide(""), "QueryName is not UTF-16"),
    ],
)
def test_malformed_payloads_are_refused_with_the_reason(payload: bytes, error: str) -> None:
    with pytest.raises(EtwDecodeError, match=error):
        decode_dns_query(payload)


def test_fields_a_later_event_version_appends_are_ignored() -> None:
    payload = query_payload("a.example", "::ffff:192.0.2.7;") + struct.pack("<I", 7)
    assert decode_dns_query(payload).addresses == ("192.0.2.7",)


def test_the_session_routes_dns_client_events_and_counts_the_rest() -> None:
    api = FakeTraceApi()
    seen: list[DnsQuery] = []
    session = EtwSession(api, on_dns=seen.append)
    session.start()
    try:
        assert ("enable", 77, DNS_CLIENT_GUID, 4, KEYWORDS_ALL) in api.calls and session.dns_enabled
        events = [
            (DNS_CLIENT_GUID, QUERY_COMPLETED, query_payload("a.example", "::ffff:192.0.2.1;"), 1),
            (DNS_CLIENT_GUID, 3020, query_payload("a.example", "::ffff:192.0.2.1;"), 2),  # not needed
            (DNS_CLIENT_GUID, QUERY_COMPLETED, b"\x41\x00", 3),  # malformed: counted
            ("00000000-0000-0000-0000-000000000001", 10, b"", 4),  # a provider not asked for
        ]
        for event in events:
            api.events.put(event)
        assert all(api.handled.acquire(timeout=5) for _ in events)
        assert [query.name for query in seen] == ["a.example"]
        assert (session.dns_queries, session.dns_decode_errors, session.foreign_events) == (1, 1, 1)
    finally:
        session.close()


def test_without_dns_the_provider_is_not_enabled_and_its_events_count_as_foreign() -> None:
    api = FakeTraceApi()
    session = EtwSession(api)
    session.start()
    try:
        assert [call[2] for call in api.calls if call[0] == "enable"] == [PROVIDER_GUID]
        api.events.put((DNS_CLIENT_GUID, QUERY_COMPLETED, query_payload("a.example", ""), 1))
        assert api.handled.acquire(timeout=5) and session.foreign_events == 1
    finally:
        session.close()


def test_a_dns_client_that_cannot_be_enabled_leaves_capture_running() -> None:
    api = FakeTraceApi()
    api.enable_statuses[DNS_CLIENT_GUID] = 5  # ERROR_ACCESS_DENIED
    source = EtwSource(api, on_record=lambda _record: None)
    try:
        assert not source.session.dns_enabled and source.session.running
        assert source.stats().hooks == (PROVIDER_NAME,)
    finally:
        source.close()


def test_the_collector_names_a_peer_from_the_query_and_persists_the_sessions_losses(tmp_path: Path) -> None:
    from extension.osquery_plugins import agent_status_row  # noqa: PLC0415
    from tests.test_enrich_windows import FakeProcesses, windows_collector  # noqa: PLC0415

    collector, store, api = windows_collector(tmp_path, FakeProcesses())
    try:
        assert collector.source.stats().hooks == (PROVIDER_NAME, DNS_CLIENT_NAME)
        body = (
            ipaddress.ip_address("203.0.113.80").packed
            + ipaddress.ip_address("10.0.0.2").packed
            + struct.pack(">HH", 443, 51000)
        )
        events = [
            (
                DNS_CLIENT_GUID,
                QUERY_COMPLETED,
                query_payload("api.vendor.example", "::ffff:203.0.113.80;"),
                0,
            ),
            (PROVIDER_GUID, 10, struct.pack("<II", 3100, 300) + body, 0),
        ]
        for event in events:
            api.events.put((*event[:3], time.monotonic_ns()))
        assert all(api.handled.acquire(timeout=5) for _ in events)
        collector.drain_once()
    finally:
        collector.source.close()
    with sqlite3.connect(tmp_path / "netflow.db") as db:
        rows = db.execute("SELECT remote_address, remote_hostname, bytes_sent FROM socket_events").fetchall()
    assert rows == [("203.0.113.80", "api.vendor.example", 300)]
    counters = store.counters()
    # the fake session reports 3 lost events, 1 lost buffer, 40 buffers written
    assert (counters["etw_events_lost"], counters["etw_buffers_lost"], counters["ringbuf_lost"]) == (3, 1, 4)
    assert counters["etw_buffers_written"] == 40 and counters["etw_dns_queries"] == 1
    status = agent_status_row(store)
    assert status["ringbuf_lost"] == 4 and '"etw_events_lost": 3' in str(status["counters"])
