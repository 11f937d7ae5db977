"""The labelled public datasets in our vocabulary (fleet_analytics.analytics.datasets).

Tests that read the shared datasets skip, with the reason, only when the datasets directory is absent;
the mapping and windowing rules are also checked on small frames and files built here.
"""

from __future__ import annotations

import ipaddress
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fleet_analytics.analytics import datasets
from fleet_analytics.ingest.filters import (
    ACTIVITIES,
    DIRECTIONS,
    FLOW_COLUMNS,
    INTEGER_COLUMNS,
    FilterContext,
    Rejection,
    sanitise_row,
)

TEXT_COLUMNS = tuple(column for column in FLOW_COLUMNS if column not in INTEGER_COLUMNS)
CAPTURES = (
    "stratosphere-001-njrat",
    "stratosphere-002-nmap",
    "stratosphere-003-android-rat",
    "stratosphere-005-simda",
    "stratosphere-008-mixed",
    "cicids2017",
)
# name: (records in the source, TCP/UDP records kept, positives). Source counts are the READMEs'
# (003: the README's "370 flows" are the file's lines; it has 361 records); positives of 001 (244 C&C)
# and KDD (2,211 and 30) are the READMEs'; those of 002/003/005 come from our documented rules; 008 has
# 4,201 Malicious, 20 of them ICMP (dropped); CIC's are the attack classes' file counts less 1 ICMP.
EXPECTED = {
    "stratosphere-001-njrat": (992, 669, 244),
    "stratosphere-002-nmap": (4504, 4121, 4113),
    "stratosphere-003-android-rat": (361, 342, 12),
    "stratosphere-005-simda": (992, 873, 274),
    "stratosphere-008-mixed": (5663, 5643, 4181),
    "cicids2017": (18733, 18726, 13732),
    "kdd99-http": (567498, 567498, 2211),
    "kdd99-smtp": (95156, 95156, 30),
}


@pytest.fixture(scope="module")
def data_dir() -> Path:
    path = datasets.dataset_dir()
    if not path.is_dir():
        pytest.skip(f"the shared datasets directory {path} is absent (set {datasets.ENV_VAR} to it)")
    return path


@cache
def _load(name: str) -> datasets.LabelledFlows:
    return datasets.load(name)


def loaded(data_dir: Path, name: str) -> datasets.LabelledFlows:
    if name not in datasets.available(data_dir):
        pytest.fail(f"{name} is not available in {data_dir}, though the directory is there")
    return _load(name)


# -------------------------------------------------------------------------------------------------
# the shared datasets


def test_every_dataset_is_available(data_dir: Path) -> None:
    assert datasets.available() == list(datasets.DATASETS)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_columns_dtypes_and_counts(data_dir: Path, name: str) -> None:
    flows = loaded(data_dir, name)
    frame = flows.flows
    assert flows.name == name
    assert list(frame.columns) == [*FLOW_COLUMNS, *datasets.EXTRA_COLUMNS]
    for column in (*INTEGER_COLUMNS, "label"):
        assert frame[column].dtype == np.int64, column
    for column in (*TEXT_COLUMNS, "host_identifier", "label_detail"):
        assert isinstance(frame[column].dtype, pd.StringDtype), column
        assert not frame[column].isna().any(), column
    for column in ("ts", "duration"):
        assert frame[column].dtype == np.float64
        assert np.isfinite(frame[column]).all()
    source, kept, positives = EXPECTED[name]
    assert (flows.source_rows, len(frame), int(frame["label"].sum())) == (source, kept, positives)
    assert set(frame["label"].unique()) <= {0, 1}
    assert set(flows.real_columns) <= set(FLOW_COLUMNS)
    assert flows.citation


@pytest.mark.parametrize("name", list(EXPECTED))
def test_values_are_in_range(data_dir: Path, name: str) -> None:
    frame = loaded(data_dir, name).flows
    assert set(frame["protocol"]) <= {"tcp", "udp"}
    assert set(frame["direction"]) <= DIRECTIONS
    assert set(frame["activity"]) <= ACTIVITIES
    for column in ("local_port", "remote_port"):
        assert frame[column].between(0, 65535).all(), column
    for column in ("bytes_sent", "bytes_received", "sends", "receives", "connections"):
        assert (frame[column] >= 0).all(), column
    assert (frame["connections"] == 1).all()
    assert (frame["first_seen"] <= frame["last_seen"]).all()
    assert (frame["duration"] >= 0).all()
    assert (frame["window_start"] % frame["window_seconds"] == 0).all()
    # unknown fillers
    for column in datasets.PROCESS_COLUMNS:
        assert (frame[column] == (0 if column in INTEGER_COLUMNS else "")).all(), column


@pytest.mark.parametrize("name", CAPTURES)
def test_addresses_are_canonical_and_local_is_the_monitored_host(data_dir: Path, name: str) -> None:
    frame = loaded(data_dir, name).flows
    for column in ("local_address", "remote_address"):
        for text in frame[column].unique():
            assert str(ipaddress.ip_address(text)) == text, (column, text)
    versions = frame["local_address"].map(lambda text: ipaddress.ip_address(text).version)
    assert (versions == frame["family"]).all()
    assert (frame["host_identifier"] == frame["local_address"]).all()


def test_local_side_per_capture(data_dir: Path) -> None:
    # 002: the scanner is the monitored host; 008: the Windows host, public address, inbound scans
    assert set(loaded(data_dir, "stratosphere-002-nmap").flows["host_identifier"]) == {"172.16.1.11"}
    mixed = loaded(data_dir, "stratosphere-008-mixed").flows
    assert set(mixed["host_identifier"]) == {"147.32.81.167"}
    assert (mixed.loc[mixed["label"] == 1, "direction"] == "inbound").all()
    # CIC: always the internal 192.168.10.0/24 side; the attackers (172.16.0.1) are remote
    cic = loaded(data_dir, "cicids2017").flows
    assert cic["host_identifier"].str.startswith("192.168.10.").all()
    attacks = cic["label_detail"].isin(["DDoS", "Portscan", "SSH-Patator"])
    assert (cic.loc[attacks, "remote_address"] == "172.16.0.1").all()
    assert (cic.loc[attacks, "direction"] == "inbound").all()
    assert (cic.loc[cic["label_detail"] == "SSH-Patator", "local_port"] == 22).all()
    assert (cic.loc[cic["label_detail"] == "Botnet", "direction"] == "outbound").all()


def _row(frame: pd.DataFrame, **match: Any) -> dict[str, Any]:
    selected = frame
    for column, value in match.items():
        selected = selected.loc[selected[column] == value]
    assert len(selected) == 1, match
    row: dict[str, Any] = selected.iloc[0].to_dict()
    return row


def test_inbound_record_swaps_sides(data_dir: Path) -> None:
    # 008, line 2: 193.201.9.232:46563 -> 147.32.81.167:3933 tcp S0, 2 packets, Malicious
    row = _row(
        loaded(data_dir, "stratosphere-008-mixed").flows, remote_address="193.201.9.232", local_port=3933
    )
    assert row["direction"] == "inbound"
    assert row["remote_port"] == 46563
    assert row["activity"] == "connect_failed"
    assert (row["bytes_sent"], row["bytes_received"], row["sends"], row["receives"]) == (0, 0, 0, 2)
    assert (row["label"], row["label_detail"]) == (1, "Malicious/External-Attack-to-Device")
    assert row["ts"] == pytest.approx(1655071231.749548)
    assert row["first_seen"] == 1655071231


def test_outbound_record(data_dir: Path) -> None:
    # 003: 10.8.0.61:39404 -> 195.113.214.206:443 tcp RSTR 1.138356 s, 1188 / 1633463 bytes, 661 / 1230 pkts
    row = _row(loaded(data_dir, "stratosphere-003-android-rat").flows, local_port=39404)
    assert (row["direction"], row["activity"], row["remote_address"], row["remote_port"]) == (
        "outbound",
        "connect",
        "195.113.214.206",
        443,
    )
    assert (row["bytes_sent"], row["bytes_received"], row["sends"], row["receives"]) == (
        1188,
        1633463,
        661,
        1230,
    )
    assert row["duration"] == pytest.approx(1.138356)
    assert (row["label"], row["label_detail"]) == (0, "unlabelled")


def test_labels_follow_the_documented_rules(data_dir: Path) -> None:
    njrat = loaded(data_dir, "stratosphere-001-njrat").flows
    malicious = njrat.loc[njrat["label"] == 1]
    assert set(malicious["label_detail"]) == {"Malicious/CC"}
    # all from the infected host: 237 to the NjRAT C&C 41.108.179.197:1177, 7 HTTPS flows also labelled CC
    assert set(malicious["host_identifier"]) == {"192.168.1.115"}
    assert (malicious["remote_address"] == "41.108.179.197").sum() == 237
    assert set(njrat.loc[njrat["label"] == 0, "label_detail"]) == {"Background", "Benign/Google"}
    rat = loaded(data_dir, "stratosphere-003-android-rat").flows
    assert set(rat.loc[rat["label"] == 1, "remote_port"]) == {1337}
    assert set(rat.loc[rat["label"] == 1, "remote_address"]) == {"147.32.83.234"}
    simda = loaded(data_dir, "stratosphere-005-simda").flows
    counts = simda.loc[simda["label"] == 1, "label_detail"].value_counts().to_dict()
    assert counts == {"Simda C&C check-in": 206, "Simda DGA lookup": 68}
    assert (simda.loc[simda["label"] == 1, "host_identifier"] == "192.168.1.116").all()
    nmap = loaded(data_dir, "stratosphere-002-nmap").flows
    assert set(nmap.loc[nmap["label"] == 0, "remote_port"]) == {53}


def test_cicids2017_counts_match_the_class_files(data_dir: Path) -> None:
    flows = loaded(data_dir, "cicids2017")
    files = sorted((data_dir / "cicids2017_improved_sampled").glob("*.csv"))
    counts = {m.group(1): int(m.group(2)) for f in files if (m := re.fullmatch(r"(.+)_(\d+)\.csv", f.name))}
    assert sum(counts.values()) == flows.source_rows
    details = flows.flows["label_detail"].value_counts().to_dict()
    assert details == counts | {"BENIGN": counts["BENIGN"] - 6, "Portscan": counts["Portscan"] - 1}
    assert not flows.flows["label_detail"].str.contains("Attempted").any()


def test_kdd_bytes_are_inverted(data_dir: Path) -> None:
    http = loaded(data_dir, "kdd99-http").flows
    first = http.iloc[0]
    assert (first["bytes_sent"], first["bytes_received"], first["duration"]) == (215, 45076, 0.0)
    assert (first["remote_port"], first["protocol"], first["host_identifier"]) == (80, "tcp", "kdd99")
    assert (http["local_address"] == "").all()
    assert (http["ts"] == np.arange(len(http))).all()
    smtp = loaded(data_dir, "kdd99-smtp").flows.iloc[0]
    assert (smtp["bytes_sent"], smtp["bytes_received"], smtp["duration"], smtp["remote_port"]) == (
        1207,
        329,
        1.0,
        25,
    )


@pytest.mark.parametrize("name", CAPTURES)
def test_records_pass_the_ingest_filters(data_dir: Path, name: str) -> None:
    frame = loaded(data_dir, name).flows
    ctx = FilterContext(now=int(frame["last_seen"].max()) + 1, max_row_age_seconds=2**40)
    rows = frame[list(FLOW_COLUMNS)].to_dict("records")
    rejected = [
        result for result in (sanitise_row(row, ctx) for row in rows) if isinstance(result, Rejection)
    ]
    assert rejected == []


def test_limit(data_dir: Path) -> None:
    full = loaded(data_dir, "stratosphere-008-mixed").flows
    first = datasets.load("stratosphere-008-mixed", limit=100).flows
    pd.testing.assert_frame_equal(first, full.head(100))
    sample = datasets.load("cicids2017", limit=500).flows
    assert len(sample) == 500
    assert sample["label_detail"].nunique() >= 3  # a seeded sample, not the first (benign) rows
    pd.testing.assert_frame_equal(sample, datasets.load("cicids2017", limit=500).flows)
    kdd = datasets.load("kdd99-http", limit=20_000)
    assert len(kdd.flows) == 20_000
    assert kdd.source_rows == 567498
    assert kdd.flows["ts"].is_monotonic_increasing
    assert len(datasets.load("stratosphere-003-android-rat", limit=10_000).flows) == 342
    with pytest.raises(ValueError, match="limit"):
        datasets.load("kdd99-smtp", limit=0)


@pytest.mark.parametrize("name", [*CAPTURES, "kdd99-smtp"])
def test_windows_preserve_sums_and_labels(data_dir: Path, name: str) -> None:
    flows = loaded(data_dir, name).flows
    windows = datasets.to_windows(flows)
    assert list(windows.columns) == [*FLOW_COLUMNS, *datasets.WINDOW_EXTRA_COLUMNS]
    for column in ("bytes_sent", "bytes_received", "sends", "receives"):
        assert windows[column].sum() == flows[column].sum(), column
    assert windows["connections"].sum() == len(flows)
    assert len(windows) <= len(flows)
    assert (windows["window_start"] % 60 == 0).all()
    assert (windows["last_seen"] < windows["window_start"] + 60).all()
    assert (windows["first_seen"] >= windows["window_start"]).all()
    assert windows["label"].sum() <= flows["label"].sum()
    assert (windows["label"] == 1).any() == (flows["label"] == 1).any()
    assert ((windows["label"] == 0) == (windows["label_detail"] == "benign")).all()
    # every malicious record's window is malicious (outbound records: keyed by remote address and port)
    outbound = flows.loc[(flows["label"] == 1) & (flows["direction"] != "inbound")]
    key = ["host_identifier", "window_start", "remote_address", "remote_port"]
    malicious_windows = windows.loc[windows["label"] == 1, key].drop_duplicates()
    joined = outbound[key].merge(malicious_windows, on=key, how="left", indicator=True)
    assert (joined["_merge"] == "both").all()


def test_windows_of_inbound_attacks_collapse_ephemeral_ports(data_dir: Path) -> None:
    cic = loaded(data_dir, "cicids2017").flows
    ssh = cic.loc[cic["label_detail"] == "SSH-Patator"]
    windows = datasets.to_windows(ssh)
    assert set(windows["local_port"]) == {22}
    assert (windows["remote_port"] == 0).sum() > 0  # several attacker ports in a window
    assert len(windows) < len(ssh) / 5


# -------------------------------------------------------------------------------------------------
# rules on frames and files built here


def _records(rows: list[dict[str, Any]]) -> pd.DataFrame:
    defaults: dict[str, Any] = dict.fromkeys(INTEGER_COLUMNS, 0) | dict.fromkeys(TEXT_COLUMNS, "")
    defaults |= {"protocol": "tcp", "family": 4, "direction": "outbound", "activity": "connect"}
    defaults |= {"local_address": "10.0.0.1", "host_identifier": "10.0.0.1", "remote_address": "1.2.3.4"}
    defaults |= {"remote_port": 443, "connections": 1, "label": 0, "label_detail": "Benign", "duration": 1.0}
    frame = pd.DataFrame([defaults | row for row in rows])
    frame["first_seen"] = np.floor(frame["ts"]).astype("int64")
    frame["last_seen"] = np.floor(frame["ts"] + frame["duration"]).astype("int64")
    return frame


def test_to_windows_rules() -> None:
    records = _records(
        [
            {"ts": 120.5, "local_port": 50000, "bytes_sent": 10, "bytes_received": 100, "sends": 1},
            {
                "ts": 150.0,
                "local_port": 50001,
                "bytes_sent": 5,
                "label": 1,
                "label_detail": "CC",
                "duration": 90.0,
            },
            {
                "ts": 170.0,
                "local_port": 50002,
                "activity": "connect_failed",
                "label": 1,
                "label_detail": "CC",
            },
            {"ts": 175.0, "local_port": 50003, "label": 1, "label_detail": "Scan"},
            {"ts": 180.0, "local_port": 50004, "bytes_sent": 7},  # next window
            # inbound to port 22 from two ephemeral ports: one window keyed by the local (service) port
            {
                "ts": 121.0,
                "direction": "inbound",
                "activity": "accept",
                "local_port": 22,
                "remote_port": 40001,
            },
            {
                "ts": 122.0,
                "direction": "inbound",
                "activity": "accept",
                "local_port": 22,
                "remote_port": 40002,
            },
        ]
    )
    windows = datasets.to_windows(records)
    assert len(windows) == 3
    inbound = windows.loc[windows["direction"] == "inbound"].iloc[0]
    assert (inbound["local_port"], inbound["remote_port"], inbound["connections"]) == (22, 0, 2)
    assert (inbound["label"], inbound["label_detail"], inbound["activity"]) == (0, "benign", "accept")
    first = windows.loc[(windows["direction"] == "outbound") & (windows["window_start"] == 120)].iloc[0]
    assert (first["bytes_sent"], first["bytes_received"], first["sends"], first["connections"]) == (
        15,
        100,
        1,
        4,
    )
    assert (first["local_port"], first["remote_port"], first["window_seconds"]) == (0, 443, 60)
    assert (first["label"], first["label_detail"]) == (1, "CC")  # most common malicious detail
    assert first["activity"] == "connect_failed"  # the most significant activity of the window
    # the 90 s record is cut at the window's end
    assert (first["first_seen"], first["last_seen"]) == (120, 179)
    last = windows.loc[windows["window_start"] == 180].iloc[0]
    assert (last["bytes_sent"], last["local_port"], last["label"], last["label_detail"]) == (
        7,
        50004,
        0,
        "benign",
    )
    five_minutes = datasets.to_windows(records, window_seconds=300)
    assert len(five_minutes) == 2
    assert set(five_minutes["window_start"]) == {0}
    assert five_minutes["bytes_sent"].sum() == 22


def test_to_windows_refuses_bad_input() -> None:
    records = _records([{"ts": 1.0}])
    with pytest.raises(ValueError, match="window_seconds"):
        datasets.to_windows(records, window_seconds=0)
    with pytest.raises(ValueError, match="label"):
        datasets.to_windows(records.drop(columns=["label"]))
    assert datasets.to_windows(records.iloc[:0]).empty


def test_missing_directory_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(datasets.DatasetUnavailable) as caught:
        datasets.load("stratosphere-001-njrat", directory=missing)
    message = str(caught.value)
    assert str(missing) in message
    assert datasets.ENV_VAR in message
    assert "does not exist" in message
    assert isinstance(caught.value, ValueError)
    monkeypatch.setenv(datasets.ENV_VAR, str(missing))
    assert datasets.dataset_dir() == missing
    assert datasets.available() == []
    with pytest.raises(ValueError, match="FLEET_DATASETS_DIR"):
        datasets.load("kdd99-http")


def test_directory_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    assert datasets.dataset_dir() == (datasets.ROOT / "../shared/datasets").resolve()
    monkeypatch.setenv(datasets.ENV_VAR, "elsewhere/data")
    assert datasets.dataset_dir() == datasets.ROOT / "elsewhere/data"


def test_unknown_name() -> None:
    with pytest.raises(KeyError) as caught:
        datasets.load("no-such-dataset")
    assert "no-such-dataset" in str(caught.value)
    assert "kdd99-http" in str(caught.value)


def test_cic_attempted_flows_are_not_positives(tmp_path: Path) -> None:
    folder = tmp_path / "cicids2017_improved_sampled"
    folder.mkdir()
    columns = list(datasets.CIC_COLUMNS)
    rows = [
        [
            "192.168.10.5",
            50000,
            "8.8.8.8",
            53,
            17,
            "2017-07-06 12:00:00.5",
            2_000_000,
            1,
            1,
            40,
            80,
            0,
            "BENIGN",
            -1,
        ],
        ["172.16.0.1", 40000, "192.168.10.50", 80, 6, "2017-07-07 19:00:00", 1000, 3, 0, 0, 0, 0, "DDoS", -1],
        [
            "172.16.0.1",
            40001,
            "192.168.10.50",
            80,
            6,
            "2017-07-07 19:00:01",
            10,
            1,
            1,
            0,
            0,
            1,
            "DDoS - Attempted",
            2,
        ],
        [
            "192.168.10.9",
            1025,
            "205.174.165.73",
            8080,
            1,
            "2017-07-07 13:00:00",
            10,
            1,
            0,
            0,
            0,
            0,
            "Botnet",
            -1,
        ],
    ]
    pd.DataFrame(rows, columns=columns).to_csv(folder / "Mixed_4.csv", index=False)
    flows = datasets.load("cicids2017", directory=tmp_path)
    frame = flows.flows
    assert flows.source_rows == 4
    assert list(frame["label"]) == [0, 1, 0]
    assert list(frame["label_detail"]) == ["BENIGN", "DDoS", "DDoS - Attempted"]
    assert list(frame["direction"]) == ["outbound", "inbound", "inbound"]
    assert list(frame["activity"]) == ["connect", "connect_failed", "connect_failed"]  # no reply; a lone RST
    assert list(frame["host_identifier"]) == ["192.168.10.5", "192.168.10.50", "192.168.10.50"]
    assert frame["ts"].iloc[0] == pytest.approx(pd.Timestamp("2017-07-06 12:00:00.5", tz="UTC").timestamp())
    assert frame["duration"].iloc[0] == pytest.approx(2.0)
    assert (frame["bytes_sent"].iloc[0], frame["bytes_received"].iloc[0]) == (40, 80)


def test_zeek_tsv_unset_fields_and_labels(tmp_path: Path) -> None:
    folder = tmp_path / "stratosphere_zeek"
    folder.mkdir()
    fields = [
        *("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration"),
        *("orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp", "missed_bytes", "history"),
        *("orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "tunnel_parents", "label"),
        "detailedlabel",
    ]
    lines = [
        "#separator \\x09",
        "#fields\t" + "\t".join(fields),
        "10.5\tC1\t192.168.1.115\t49200\t41.108.179.197\t1177\ttcp\t-\t-\t-\t-\tS0\tT\tF\t0\tS\t2\t104\t0\t0\t"
        "(empty)\tMalicious\tCC",
        "11.0\tC2\t8.8.8.8\t53\t192.168.1.115\t60000\tudp\tdns\t0.5\t40\t60\tSF\tF\tT\t0\tDd\t1\t68\t1\t88\t"
        "(empty)\tBackground\t(empty)",
        "12.0\tC3\t192.168.1.115\t8\t41.108.179.197\t0\ticmp\t-\t-\t-\t-\tOTH\tT\tF\t0\t-\t1\t84\t0\t0\t"
        "(empty)\tMalicious\tCC",
        "#close\t2017-03-08-13-47-04",
    ]
    (folder / "001-zeek-scenario-malicious_labeled-conn.log").write_text("\n".join(lines) + "\n")
    flows = datasets.load("stratosphere-001-njrat", directory=tmp_path)
    frame = flows.flows
    assert flows.source_rows == 3  # the ICMP record is dropped
    assert list(frame["label"]) == [1, 0]
    assert list(frame["label_detail"]) == ["Malicious/CC", "Background"]
    assert list(frame["activity"]) == ["connect_failed", "accept"]
    assert list(frame["bytes_sent"]) == [0, 60]  # unset "-" is 0; the inbound record's local side sent 60
    assert list(frame["duration"]) == [0.0, 0.5]
