"""The labelled fleet simulator: rows as the agent emits them, rhythm, attacks, and feeding the service."""

from __future__ import annotations

import gzip
import http.server
import ipaddress
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask.testing import FlaskClient

from extension.community_id import community_id
from extension.results import FLOWS_QUERY
from fleet_analytics import create_app
from fleet_analytics.ingest.filters import (
    FLOW_COLUMNS,
    INTEGER_COLUMNS,
    KEY_COLUMNS,
    TEXT_LIMITS,
    FilterContext,
    sanitise_batch,
)
from fleet_analytics.simulate import (
    SCENARIOS,
    FeedReport,
    Simulation,
    feed,
    http_post,
    result_lines,
    simulate,
)
from tests.fleet_helpers import SECRET, query

FRIDAY = 1767916800  # 2026-01-09 00:00 UTC: a week ending then has its weekend and a weekday last
WEEK = 7.0
DNS_LIMIT_NORMAL = 100  # bytes: the largest query systemd-resolved sends in the simulation


@pytest.fixture(scope="module")
def week() -> Simulation:
    return simulate(hosts=8, days=WEEK, end=FRIDAY, seed=3)


@pytest.fixture(scope="module")
def flows(week: Simulation) -> pd.DataFrame:
    frame: pd.DataFrame = week.flows
    return frame


@pytest.fixture(scope="module")
def normal(flows: pd.DataFrame) -> pd.DataFrame:
    frame: pd.DataFrame = flows[flows["scenario"] == ""]
    return frame


def labelled(flows: pd.DataFrame, scenario: str) -> pd.DataFrame:
    frame: pd.DataFrame = flows[flows["scenario"] == scenario]
    return frame


# -- the rows ---------------------------------------------------------------------------------------


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    first = simulate(hosts=4, days=1, end=FRIDAY, seed=11)
    again = simulate(hosts=4, days=1, end=FRIDAY, seed=11)
    other = simulate(hosts=4, days=1, end=FRIDAY, seed=12)
    pd.testing.assert_frame_equal(first.flows, again.flows)
    assert first.injections == again.injections
    assert (first.hosts, first.start, first.end) == (again.hosts, again.start, again.end)
    assert len(first.flows) != len(other.flows) or not first.flows.equals(other.flows)
    assert first.injections != other.injections


def test_every_column_with_its_type(week: Simulation, flows: pd.DataFrame) -> None:
    assert list(flows.columns) == [*FLOW_COLUMNS, "host_identifier", "scenario"]
    for column in INTEGER_COLUMNS:
        assert flows[column].dtype == np.int64, column
    for column in (*TEXT_LIMITS, "host_identifier", "scenario"):
        assert flows[column].dtype == "str", column
        assert not flows[column].isna().any(), column
    assert week.window_seconds == 60 and week.end == FRIDAY and week.end - week.start == WEEK * 86400
    numbers = [int(host.split(".")[0].split("-")[1]) for host in week.hosts]
    assert numbers == list(range(1, 9)) and all(host.endswith(".corp.example") for host in week.hosts)
    assert {host.split("-")[0] for host in week.hosts} == {"ws", "srv"}
    assert set(flows["host_identifier"]) <= set(week.hosts)
    assert 50_000 < len(flows) < 500_000


def test_rows_are_consistent(week: Simulation, flows: pd.DataFrame) -> None:
    f = flows
    w = week.window_seconds
    assert (f["window_start"] % w == 0).all()
    assert f["window_start"].between(week.start, week.end - w).all()
    assert (f["window_seconds"] == w).all()
    assert ((f["first_seen"] >= f["window_start"]) & (f["first_seen"] <= f["last_seen"])).all()
    assert (f["last_seen"] < f["window_start"] + w).all()
    assert f["protocol"].isin(["tcp", "udp"]).all() and f["family"].isin([4, 6]).all()
    assert set(f["direction"]) == {"outbound", "inbound"}
    assert set(f["activity"]) <= {"connect", "data", "close", "accept", "connect_failed"}
    assert (f["direction"] == "outbound").mean() > 0.9
    for column in ("bytes_sent", "bytes_received", "connections", "sends", "receives"):
        assert (f[column] >= 0).all(), column
    assert ((f["sends"] <= f["bytes_sent"]) & ((f["sends"] > 0) == (f["bytes_sent"] > 0))).all()
    assert ((f["receives"] <= f["bytes_received"]) & ((f["receives"] > 0) == (f["bytes_received"] > 0))).all()
    # activities used as the agent uses them
    opened = f["activity"].isin(["connect", "accept"])
    assert (f.loc[opened, "connections"] >= 1).all()
    assert (f.loc[f["activity"] == "data", "connections"] == 0).all()
    assert (f.loc[f["activity"] == "accept", "direction"] == "inbound").all()
    assert (f.loc[f["activity"] == "connect", "direction"] == "outbound").all()
    failed = f[f["activity"] == "connect_failed"]
    assert (
        (failed["bytes_sent"] == 0) & (failed["bytes_received"] == 0) & (failed["connections"] == 0)
    ).all()
    assert (f["connections"] == 0).any()  # connections that continue from an earlier window
    outbound = f[f["direction"] == "outbound"]
    assert outbound["local_port"].between(32768, 60999).all()
    assert (f["process_start_time"] <= f["first_seen"]).all()
    # addresses: canonical, of the row's family; each host has its own address in 10.20.0.0/16
    for column in ("local_address", "remote_address"):
        for text in f[column].unique():
            assert str(ipaddress.ip_address(text)) == text
    assert ((f["remote_address"].str.contains(":")) == (f["family"] == 6)).all()
    assert ((f["local_address"].str.contains(":")) == (f["family"] == 6)).all()
    v4 = f[f["family"] == 4].groupby("host_identifier")["local_address"].unique()
    assert all(len(addresses) == 1 for addresses in v4)
    addresses = [addresses[0] for addresses in v4]
    assert len(set(addresses)) == len(addresses)
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("10.20.0.0/16") for a in addresses)
    assert 0.02 < (f["family"] == 6).mean() < 0.4
    assert (f["local_hostname"] == f["host_identifier"].str.split(".").str[0]).all()
    for column, limit in TEXT_LIMITS.items():
        assert (f[column].str.len() <= limit).all(), column
    assert (f["process_sha256"].str.fullmatch("[0-9a-f]{64}")).all()
    # one row per flow key and host, as the agent aggregates
    assert not f.duplicated(["host_identifier", *KEY_COLUMNS]).any()


def test_community_ids_are_those_of_the_flows(flows: pd.DataFrame) -> None:
    sample = pd.concat([flows.sample(1500, random_state=1), flows[flows["family"] == 6].head(300)])
    sample = pd.concat([sample, flows[flows["direction"] == "inbound"].head(300)])
    for row in sample.itertuples():
        expected = community_id(
            row.protocol, row.local_address, row.local_port, row.remote_address, row.remote_port
        )
        assert row.community_id == expected, row
    # both ends of a flow between simulated hosts are there, with the same Community ID
    inbound = flows[(flows["direction"] == "inbound") & flows["process_name"].isin(["nginx", "sshd"])]
    assert len(inbound)
    assert inbound["community_id"].isin(flows.loc[flows["direction"] == "outbound", "community_id"]).all()


def test_applications_and_processes(normal: pd.DataFrame) -> None:
    f = normal
    apps = set(f["process_name"])
    for name in ("systemd-resolve", "systemd-timesyn", "http", "ssh", "sshd", "nginx", "prometheus-node"):
        assert name in apps, name
    assert apps & {"firefox", "chrome"} and apps & {"slack", "teams-for-linux"}
    assert apps & {"dropbox", "onedrive", "rclone"} and "thunderbird" in apps
    # a pid is stable for a process's lifetime, and the process started before its rows
    lives = f.groupby(["host_identifier", "process_path", "process_start_time"])["pid"].nunique()
    assert (lives == 1).all()
    # a binary version has one sha256 fleet-wide; hosts run one of a few versions
    assert (f.groupby("process_sha256")["process_name"].nunique() == 1).all()
    assert (f.groupby("process_name")["process_sha256"].nunique() <= 3).all()
    resolved = f[f["process_name"] == "systemd-resolve"]
    assert resolved.groupby("process_sha256")["host_identifier"].nunique().max() >= 2
    # users: one per workstation, uid 1000 and up, owning the user's applications
    browsers = f[f["process_name"].isin(["firefox", "chrome"])]
    assert (browsers["uid"] >= 1000).all()
    assert (browsers.groupby("host_identifier")["username"].nunique() == 1).all()
    # DNS to the internal resolvers, small both ways
    dns = f[f["remote_port"] == 53]
    assert set(dns["remote_address"]) == {"10.0.0.53", "10.0.0.54"} and (dns["protocol"] == "udp").all()
    assert dns["bytes_sent"].max() <= DNS_LIMIT_NORMAL and dns["bytes_received"].max() < 600
    # browsers: many sites, Zipf-like (a few very popular), mostly TCP 443, some QUIC
    web = browsers
    counts = web["remote_hostname"][web["remote_hostname"] != ""].value_counts()
    assert len(counts) > 300 and counts.iloc[0] > 20 * counts.median()
    assert (web["remote_port"] == 443).all() and 0.05 < (web["protocol"] == "udp").mean() < 0.5
    assert web["bytes_received"].sum() > 10 * web["bytes_sent"].sum()
    # the sync client's check-in and the chat keepalives are periodic; apt downloads are large
    assert f.loc[f["process_name"] == "http", "bytes_received"].max() > 10 * 2**20
    chat = f[f["process_name"].isin(["slack", "teams-for-linux"]) & (f["activity"] == "data")]
    assert (chat.groupby(["host_identifier", "window_start"]).size() >= 1).sum() > 1000
    assert f.loc[f["remote_port"] == 22, "remote_address"].str.startswith(("10.0.1.", "10.20.")).all()


def test_normal_rows_pass_the_sanitising_filters(week: Simulation, normal: pd.DataFrame) -> None:
    sample = normal.sample(30_000, random_state=2)
    sample = pd.concat([sample, normal[normal["family"] == 6].head(2000)])
    sample = sample.drop_duplicates(["host_identifier", *KEY_COLUMNS])
    rows = sample[list(FLOW_COLUMNS)].astype(str).to_dict("records")  # text, as osquery logs it
    sanitised = sanitise_batch(rows, FilterContext(now=week.end))
    assert sanitised.rejected == []
    assert len(sanitised.rows) == len(rows)


def test_the_attacks_pass_the_filters_too(week: Simulation, flows: pd.DataFrame) -> None:
    attacks = flows[flows["scenario"] != ""]
    sanitised = sanitise_batch(
        attacks[list(FLOW_COLUMNS)].astype(str).to_dict("records"), FilterContext(week.end)
    )
    assert sanitised.rejected == []


def test_diurnal_and_weekly_rhythm(week: Simulation, normal: pd.DataFrame) -> None:
    # timezone offsets are -5..+2 h: 02-04 UTC is night and 13-15 UTC working hours for every host
    time = pd.to_datetime(normal["window_start"], unit="s")
    weekend = time.dt.day_of_week >= 5
    hour = time.dt.hour
    windows_per_hour = 3600 // week.window_seconds
    weekdays = 5 * windows_per_hour * 2  # the week ending on a Friday 00:00 has five weekdays (Fri-Thu)

    def rate(mask: pd.Series) -> float:
        return float(mask.sum())

    night = rate(~weekend & hour.isin([2, 3])) / weekdays
    day = rate(~weekend & hour.isin([13, 14])) / weekdays
    weekend_day = rate(weekend & hour.isin([13, 14])) / (2 * windows_per_hour * 2)
    assert day > 3 * night > 0
    assert weekend_day < 0.5 * day
    # at night there is background traffic (DNS, keepalives), but hardly any browsing
    at_night = normal[~weekend & hour.isin([2, 3])]
    share = at_night["process_name"].isin(["firefox", "chrome"]).mean()
    assert share < 0.2
    assert {"systemd-resolve"} <= set(at_night["process_name"])


# -- attacks ------------------------------------------------------------------------------------------


def test_each_attack_is_labelled_on_its_host_after_the_attack_start(
    week: Simulation, flows: pd.DataFrame
) -> None:
    attack_start = week.end - 86400
    assert [injection.scenario for injection in week.injections] == list(SCENARIOS)
    assert set(flows["scenario"]) == {"", *SCENARIOS}
    assert (flows.loc[flows["scenario"] != "", "window_start"] >= attack_start).all()
    hosts = {injection.host_identifier for injection in week.injections}
    assert len(hosts) == len(SCENARIOS)  # each on its own host: 8 hosts, all on during a weekday
    for injection in week.injections:
        rows = labelled(flows, injection.scenario)
        assert injection.start >= attack_start and injection.end <= week.end
        assert rows["window_start"].between(injection.start, injection.end - week.window_seconds).all()
        on_host = rows[rows["host_identifier"] == injection.host_identifier]
        assert len(on_host) > 0, injection
        assert (on_host["process_path"] == injection.process_path).any(), injection
        assert set(on_host["process_sha256"]) >= {injection.process_sha256}
        assert set(on_host["remote_address"]) <= set(injection.remote_addresses)
        assert injection.description
        # elsewhere only on the peers that accepted the attacker's connections
        peers = rows[rows["host_identifier"] != injection.host_identifier]
        assert (peers["direction"] == "inbound").all()
        assert set(peers["local_address"]) <= set(injection.remote_addresses)


def test_exfiltration(flows: pd.DataFrame, normal: pd.DataFrame) -> None:
    rows = labelled(flows, "exfiltration")
    assert rows["bytes_sent"].sum() >= 100 * 2**20
    assert rows["bytes_received"].sum() < 0.05 * rows["bytes_sent"].sum()
    assert not set(rows["remote_address"]) & set(normal["remote_address"])  # a destination never seen
    minutes = (rows["last_seen"].max() - rows["first_seen"].min()) / 60
    assert 10 <= minutes <= 180
    assert rows["bytes_sent"].sum() / (minutes * 60) < 13 * 2**20  # a laptop's uplink, not a datacentre's


def test_beaconing(flows: pd.DataFrame, normal: pd.DataFrame) -> None:
    rows = labelled(flows, "beaconing")
    (path,) = set(rows["process_path"])
    assert path.startswith("/home/") and "/.cache/" in path
    assert not set(rows["process_sha256"]) & set(normal["process_sha256"])
    assert not set(rows["remote_address"]) & set(normal["remote_address"])
    assert rows["remote_address"].nunique() == 1
    opened = rows[rows["connections"] == 1].sort_values("first_seen")
    assert len(opened) >= 20
    intervals = np.diff(opened["first_seen"].to_numpy())
    median = float(np.median(intervals))
    assert 50 <= median <= 330
    near = np.abs(intervals - median) <= 0.3 * median
    assert near.mean() > 0.75  # periodic, with jitter (gaps are the host's sleep)
    assert np.std(intervals[near]) > 0.02 * median
    per_beacon = rows.groupby("local_port")["bytes_sent"].sum()
    assert per_beacon.median() < 3000 and per_beacon.std() / per_beacon.mean() < 0.2


def test_port_scan(flows: pd.DataFrame) -> None:
    rows = labelled(flows, "port_scan")
    assert rows["remote_port"].nunique() >= 100
    assert 1 <= rows["remote_address"].nunique() <= 3
    assert rows["pid"].nunique() == 1
    assert (rows["activity"] == "connect_failed").mean() > 0.8
    assert rows["bytes_sent"].sum() + rows["bytes_received"].sum() < 10_000


def test_host_sweep(flows: pd.DataFrame) -> None:
    rows = labelled(flows, "host_sweep")
    source = rows[rows["direction"] == "outbound"]
    assert source["remote_address"].nunique() >= 100
    assert set(source["remote_port"]) <= {22, 445}
    assert source["pid"].nunique() == 1
    assert all(
        ipaddress.ip_address(a) in ipaddress.ip_network("10.20.0.0/16") for a in source["remote_address"]
    )


def test_lateral_movement(week: Simulation, flows: pd.DataFrame, normal: pd.DataFrame) -> None:
    (injection,) = [i for i in week.injections if i.scenario == "lateral_movement"]
    rows = labelled(flows, "lateral_movement")
    source = rows[rows["host_identifier"] == injection.host_identifier]
    assert set(source["remote_port"]) <= {22, 445, 3389} and 22 in set(source["remote_port"])
    peers = set(source["remote_address"])
    assert 2 <= len(peers) <= 5 and all(a.startswith("10.20.") for a in peers)
    # that host never talks to its peers otherwise
    before = normal[normal["host_identifier"] == injection.host_identifier]
    assert not (
        before["remote_address"].str.startswith("10.20.") & before["remote_port"].isin([22, 445, 3389])
    ).any()
    ssh = source[(source["remote_port"] == 22) & (source["bytes_sent"] > 0)]
    assert 10_000 < ssh["bytes_sent"].sum() + ssh["bytes_received"].sum() < 200 * 2**20
    accepted = rows[rows["direction"] == "inbound"]
    assert len(accepted) > 0 and set(accepted["process_name"]) == {"sshd"}
    assert set(accepted["local_address"]) <= peers


def test_dns_tunnel(flows: pd.DataFrame) -> None:
    rows = labelled(flows, "dns_tunnel")
    assert (rows["protocol"] == "udp").all() and (rows["remote_port"] == 53).all()
    (resolver,) = set(rows["remote_address"])
    assert not ipaddress.ip_address(resolver).is_private
    assert rows["sends"].sum() >= 1000
    assert rows["sends"].median() >= 10  # queries per minute
    assert rows["bytes_sent"].sum() / rows["sends"].sum() > DNS_LIMIT_NORMAL
    assert (rows["last_seen"].max() - rows["first_seen"].min()) > 3600


def test_rare_binary(flows: pd.DataFrame, normal: pd.DataFrame) -> None:
    rows = labelled(flows, "rare_binary")
    assert rows["process_sha256"].nunique() == 1 and rows["host_identifier"].nunique() == 1
    assert not set(rows["process_sha256"]) & set(normal["process_sha256"])
    assert not set(rows["remote_address"]) & set(normal["remote_address"])
    assert 0 < rows["bytes_received"].sum() < 100 * 2**20


def test_a_clean_fleet_is_the_same_fleet_without_the_attacks(week: Simulation, normal: pd.DataFrame) -> None:
    clean = simulate(hosts=8, days=WEEK, end=FRIDAY, seed=3, attacks=())
    assert clean.injections == ()
    assert (clean.flows["scenario"] == "").all()
    pd.testing.assert_frame_equal(clean.flows, normal.reset_index(drop=True))


def test_attack_start_and_attack_hosts() -> None:
    end = FRIDAY - 86400
    attack_start = end - 6 * 3600 + 17
    sim = simulate(hosts=6, days=2, end=end, seed=5, attack_start=attack_start, attack_hosts=1)
    rows = sim.flows[sim.flows["scenario"] != ""]
    assert len({injection.host_identifier for injection in sim.injections}) == 1
    assert (rows["window_start"] >= attack_start).all()
    assert set(rows["scenario"]) == set(SCENARIOS)
    single = simulate(hosts=6, days=2, end=end, seed=5, attacks=["beaconing", "beaconing"])
    assert [i.scenario for i in single.injections] == ["beaconing", "beaconing"]
    assert single.injections[0].host_identifier != single.injections[1].host_identifier


@pytest.mark.parametrize("window_seconds", [10, 3600])
def test_other_window_lengths(window_seconds: int) -> None:
    sim = simulate(hosts=3, days=1, end=FRIDAY, seed=2, window_seconds=window_seconds)
    f = sim.flows
    assert len(f) > 0 and (f["window_seconds"] == window_seconds).all()
    assert (f["window_start"] % window_seconds == 0).all()
    assert (
        (f["first_seen"] >= f["window_start"]) & (f["last_seen"] < f["window_start"] + window_seconds)
    ).all()
    sample = f.sample(min(len(f), 5000), random_state=3)
    assert (
        sanitise_batch(
            sample[list(FLOW_COLUMNS)].astype(str).to_dict("records"), FilterContext(sim.end)
        ).rejected
        == []
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"hosts": 0}, "hosts must be from 1 to 9999, not 0"),
        ({"hosts": 1.5}, "hosts must be a whole number"),
        ({"hosts": True}, "hosts must be a whole number"),
        ({"days": 0}, "days must be a number of days above 0"),
        ({"days": -1.0}, "days must be"),
        ({"days": 40}, "at most 31"),
        ({"days": 1 / 86400}, "covers no whole window"),
        ({"window_seconds": 5}, "window_seconds must be from 10 to 3600, not 5"),
        ({"window_seconds": 7200}, "window_seconds must be from 10 to 3600"),
        ({"seed": -1}, "seed must be at least 0"),
        (
            {"attacks": ["beaconing", "ddos"]},
            "unknown scenario\\(s\\) 'ddos': the scenarios are exfiltration",
        ),
        ({"attacks": "beaconing"}, "attacks must be a sequence of scenario names"),
        ({"attack_start": FRIDAY}, "attack_start .* outside the simulated range"),
        ({"attack_start": FRIDAY - 3 * 86400}, "outside the simulated range"),
        ({"attack_hosts": 0}, "attack_hosts must be from 1 to 2"),
        ({"attack_hosts": 3}, "attack_hosts must be from 1 to 2, not 3"),
    ],
)
def test_bad_arguments(arguments: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"hosts": 2, "days": 1.0, "end": FRIDAY}
    with pytest.raises(ValueError, match=message):
        simulate(**{**base, **arguments})


# -- result lines and the ingest API -------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> Simulation:
    return simulate(hosts=3, days=3 / 24, end=FRIDAY - 10 * 3600, seed=4)


def test_result_lines_parse_back_to_the_rows(small: Simulation) -> None:
    lines = result_lines(small)
    assert set(lines) == set(small.hosts)
    assert sum(map(len, lines.values())) == len(small.flows)
    for host, host_lines in lines.items():
        rows = small.flows[small.flows["host_identifier"] == host]
        items = [json.loads(line) for line in host_lines]
        assert [item["counter"] for item in items] == list(range(len(items)))
        assert {(item["name"], item["action"], item["hostIdentifier"]) for item in items} <= {
            (FLOWS_QUERY, "added", host)
        }
        assert [item["unixTime"] for item in items] == (rows["window_start"] + small.window_seconds).tolist()
        expected = rows[list(FLOW_COLUMNS)].astype(str).to_dict("records")
        assert [item["columns"] for item in items] == expected
    fixed = result_lines(small, unix_time=1234)
    assert {json.loads(line)["unixTime"] for lines_ in fixed.values() for line in lines_} == {1234}


class Recorder:
    """A `post` callable answering like the service, recording the requests."""

    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    def __call__(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        self.requests.append((path, headers, body))
        if self.fail and path.endswith(self.fail):
            return 503, {"error": "PostgreSQL is unavailable", "retry_after": 30}
        if path.endswith("/enroll"):
            return 200, {"node_key": "k-" + json.loads(body)["host_identifier"], "node_invalid": False}
        data = json.loads(gzip.decompress(body))["data"]
        return 200, {"node_invalid": False, "stored": True, "flow_rows": len(data), "quarantined": 0}


def test_feed_sends_batches_with_stable_keys(small: Simulation) -> None:
    first, again = Recorder(), Recorder()
    report = feed(small, first, enroll_secret="s3cret", batch_rows=250)
    feed(small, again, enroll_secret="s3cret", batch_rows=250)
    logs = [(headers, body) for path, headers, body in first.requests if path == "/api/v1/osquery/log"]
    counts = small.flows["host_identifier"].value_counts()
    expected_batches = sum(-(-int(counts.get(host, 0)) // 250) for host in small.hosts)
    assert report.requests == len(small.hosts) + expected_batches == len(first.requests)
    assert (report.hosts, report.rows, report.stored) == (3, len(small.flows), len(small.flows))
    keys = [headers["X-Idempotency-Key"] for headers, _ in logs]
    assert len(set(keys)) == len(keys)
    assert keys == [h["X-Idempotency-Key"] for p, h, _ in again.requests if p == "/api/v1/osquery/log"]
    for headers, body in logs:
        assert headers["Content-Encoding"] == "gzip" and headers["Content-Type"] == "application/json"
        document = json.loads(gzip.decompress(body))
        assert document["log_type"] == "result" and document["node_key"].startswith("k-")
        assert 0 < len(document["data"]) <= 250
        starts = [int(item["columns"]["window_start"]) for item in document["data"]]
        assert starts == sorted(starts)
    enroll = json.loads(first.requests[0][2])
    assert enroll["enroll_secret"] == "s3cret" and enroll["host_identifier"] == small.hosts[0]
    assert enroll["host_details"]["system_info"]["hostname"] == small.hosts[0].split(".")[0]
    assert enroll["host_details"]["os_version"]["name"] in ("Ubuntu", "Debian GNU/Linux")


@pytest.mark.parametrize("failing", ["/enroll", "/log"])
def test_feed_names_the_host_when_the_service_refuses(small: Simulation, failing: str) -> None:
    with pytest.raises(RuntimeError, match=f"{small.hosts[0]} failed: HTTP 503 .*PostgreSQL is unavailable"):
        feed(small, Recorder(fail=failing), enroll_secret="s3cret")
    with pytest.raises(ValueError, match="batch_rows"):
        feed(small, Recorder(), enroll_secret="s3cret", batch_rows=0)
    with pytest.raises(ValueError, match="enroll_secret"):
        feed(small, Recorder(), enroll_secret="")


def flask_post(client: FlaskClient) -> Callable[[str, dict[str, str], bytes], tuple[int, dict[str, Any]]]:
    def post(path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        answer = client.post(path, data=body, headers=headers)
        document = answer.get_json(silent=True)
        return answer.status_code, document if isinstance(document, dict) else {}

    return post


def test_feeding_the_real_ingest_api_stores_every_row_once(fleet_dsn: str) -> None:
    sim = simulate(hosts=3, days=2 / 24, seed=5)  # ending now: the service refuses old windows
    assert (sim.flows["scenario"] != "").any()
    app = create_app({"database_url": fleet_dsn, "enroll_secret": SECRET})
    try:
        post = flask_post(app.test_client())
        report = feed(sim, post, enroll_secret=SECRET, batch_rows=700)
        assert isinstance(report, FeedReport) and report.seconds > 0
        assert (report.rows, report.stored, report.duplicates, report.quarantined) == (
            len(sim.flows),
            len(sim.flows),
            0,
            0,
        )
        stored = dict(
            query(
                fleet_dsn,
                "SELECT h.host_identifier, count(*) FROM flows f JOIN hosts h ON h.id = f.host_id GROUP BY 1",
            )
        )
        expected = sim.flows["host_identifier"].value_counts().to_dict()
        assert stored == expected
        assert query(fleet_dsn, "SELECT count(*) FROM quarantine") == [(0,)]
        (total,) = query(
            fleet_dsn, "SELECT sum(bytes_sent), sum(bytes_received), count(DISTINCT community_id) FROM flows"
        )
        assert total == (
            int(sim.flows["bytes_sent"].sum()),
            int(sim.flows["bytes_received"].sum()),
            sim.flows["community_id"].nunique(),
        )
        batches = query(fleet_dsn, "SELECT count(*) FROM ingest_batches")
        # again: every batch is recognised by its key, nothing new is written
        again = feed(sim, post, enroll_secret=SECRET, batch_rows=700)
        assert again.replayed == again.requests - len(sim.hosts) and again.stored == 0
        assert query(fleet_dsn, "SELECT count(*) FROM flows") == [(len(sim.flows),)]
        assert query(fleet_dsn, "SELECT count(*) FROM ingest_batches") == batches
        assert query(fleet_dsn, "SELECT count(*) FROM hosts") == [(3,)]
    finally:
        app.extensions["fleet"].close()


# -- http_post -----------------------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections: set[int] = set()  # noqa: RUF012 - shared by the test server's handlers

    def do_POST(self) -> None:
        Handler.connections.add(id(self.connection))
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path.endswith("/text"):
            answer, status, kind = b"not json", 502, "text/plain"
        else:
            status, kind = (200 if self.path.endswith("/log") else 401), "application/json"
            answer = json.dumps({"path": self.path, "got": json.loads(body)}).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/prefix/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_http_post_over_a_keep_alive_connection(http_server: str) -> None:
    Handler.connections.clear()
    with http_post(http_server, timeout=5) as post:
        exchange(post)
    assert post.connection is None
    assert len(Handler.connections) == 1
    with pytest.raises(ValueError, match="http:// or https://"):
        http_post("ftp://example.net")
    with pytest.raises(ValueError, match="cafile"):
        http_post("http://example.net", cafile="/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(ConnectionError, match="failed"), http_post("http://127.0.0.1:9", timeout=2) as post:
        post("/x", {}, b"{}")


def exchange(post: Callable[[str, dict[str, str], bytes], tuple[int, dict[str, Any]]]) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    for n in range(3):
        status, answer = post("/api/v1/osquery/log", headers, gzip.compress(json.dumps({"n": n}).encode()))
        assert (status, answer) == (200, {"path": "/prefix/api/v1/osquery/log", "got": {"n": n}})
    status, answer = post("/api/v1/osquery/enroll", {"Content-Type": "application/json"}, b"{}")
    assert status == 401 and answer["got"] == {}
    assert post("/text", {}, b"{}") == (502, {"error": "not json"})
