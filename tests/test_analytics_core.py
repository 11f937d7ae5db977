"""The pure detection core: features, detectors, models, explanations and alert decisions, on frames
built here (no database)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.utils.data import generate_data
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from fleet_analytics.analytics import model as models
from fleet_analytics.analytics.alerts import AlertPolicy, RecentAlert, draft_alerts, triage_drafts
from fleet_analytics.analytics.detectors import (
    DEFAULT_DETECTOR,
    DETECTORS,
    DetectorError,
    FrozenTails,
    make_detector,
)
from fleet_analytics.analytics.explain import explain, human_bytes
from fleet_analytics.analytics.features import (
    CONTEXT,
    FEATURES,
    ROW_COLUMNS,
    FeatureError,
    KeyCounts,
    app_key,
    beacon_scores,
    binary_key,
    contacts_of,
    featurize,
    fit_profile,
    flow_windows,
)
from fleet_analytics.config import DETECTOR_NAMES, SETTINGS

DAY = 86400
START = 1_790_000_000 // DAY * DAY


def rows(records: list[dict[str, object]]) -> pd.DataFrame:
    base: dict[str, object] = {
        "host": 1,
        "window_start": START,
        "window_seconds": 60,
        "process_name": "firefox",
        "process_path": "/usr/lib/firefox/firefox",
        "process_sha256": "aa" * 32,
        "username": "alice",
        "protocol": "tcp",
        "direction": "outbound",
        "local_port": 50000,
        "remote_address": "93.184.216.34",
        "remote_port": 443,
        "remote_hostname": "example.com",
        "bytes_sent": 1000,
        "bytes_received": 50_000,
        "connections": 1,
        "first_seen": START + 1,
        "last_seen": START + 30,
    }
    frame = pd.DataFrame([{**base, **record} for record in records])
    return frame[list(ROW_COLUMNS)]


def fleet(hosts: int = 12, days: int = 3, seed: int = 3) -> pd.DataFrame:
    """A small regular fleet: every host browses a shared pool, resolves DNS, syncs every 5 minutes."""
    rng = np.random.default_rng(seed)
    windows = np.arange(START, START + days * DAY, 300)
    pool = [f"151.101.{i}.{j}" for i in range(4) for j in range(1, 11)]
    parts = []
    for host in range(1, hosts + 1):
        count = len(windows)
        browse = pd.DataFrame(
            {
                "host": host,
                "window_start": windows,
                "process_name": "firefox",
                "process_path": "/usr/lib/firefox/firefox",
                "process_sha256": "aa" * 32,
                "protocol": "tcp",
                "remote_address": rng.choice(pool, size=count),
                "remote_port": 443,
                "bytes_sent": rng.integers(500, 5000, size=count),
                "bytes_received": rng.integers(20_000, 400_000, size=count),
            }
        )
        dns = pd.DataFrame(
            {
                "host": host,
                "window_start": windows,
                "process_name": "systemd-resolved",
                "process_path": "/usr/lib/systemd/systemd-resolved",
                "process_sha256": "bb" * 32,
                "protocol": "udp",
                "remote_address": "10.0.0.53",
                "remote_port": 53,
                "bytes_sent": rng.integers(60, 400, size=count),
                "bytes_received": rng.integers(100, 900, size=count),
            }
        )
        sync = pd.DataFrame(
            {
                "host": host,
                "window_start": windows,
                "process_name": "rclone",
                "process_path": "/usr/bin/rclone",
                "process_sha256": "cc" * 32,
                "protocol": "tcp",
                "remote_address": "52.1.1.1",
                "remote_port": 443,
                "bytes_sent": rng.integers(2000, 3000, size=count),
                "bytes_received": rng.integers(1000, 1500, size=count),
            }
        )
        parts.extend([browse, dns, sync])
    frame = pd.concat(parts, ignore_index=True)
    frame["window_seconds"] = 60
    frame["username"] = "user"
    frame["direction"] = "outbound"
    frame["remote_hostname"] = ""
    frame["local_port"] = rng.integers(32768, 61000, size=len(frame))
    frame["connections"] = 1
    frame["first_seen"] = frame["window_start"] + rng.integers(0, 60, size=len(frame))
    frame["last_seen"] = frame["first_seen"]
    return frame[list(ROW_COLUMNS)]


def test_flow_windows_sum_rows_of_one_destination() -> None:
    frame = rows(
        [
            {"bytes_sent": 100, "bytes_received": 10, "first_seen": START + 5, "last_seen": START + 9},
            {"bytes_sent": 200, "bytes_received": 20, "first_seen": START + 2, "last_seen": START + 40},
            {"remote_port": 80, "bytes_sent": 7},
            {"process_sha256": "", "process_path": "/tmp/x", "bytes_sent": 1},
        ]
    )
    windows = flow_windows(frame)
    assert len(windows) == 3
    pair = windows[(windows["service_port"] == 443) & (windows["app"] == "/usr/lib/firefox/firefox")].iloc[0]
    assert (pair["bytes_sent"], pair["bytes_received"], pair["rows"]) == (300, 30, 2)
    assert (pair["first_seen"], pair["last_seen"]) == (START + 2, START + 40)
    assert set(windows["app"]) == {"/usr/lib/firefox/firefox", "/tmp/x"}


def test_an_application_keeps_its_identity_across_versions_and_users() -> None:
    paths = pd.Series(
        [
            "/snap/firefox/6015/usr/lib/firefox/firefox",
            "/snap/firefox/5751/usr/lib/firefox/firefox",
            "/home/ann/.dropbox-dist/dropbox-lnx.x86_64-195.4.4995/dropbox",
            "/home/bob/.dropbox-dist/dropbox-lnx.x86_64-201.3.7512/dropbox",
            "C:\\Users\\eve\\AppData\\Local\\Slack\\app-4.41.105\\slack.exe",
            "/tmp/tool1",
            "/tmp/tool2",
            "",
            "",
        ]
    )
    hashes = pd.Series(["a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64, "1" * 64, "2" * 64, "f" * 64, ""])
    apps = app_key(hashes, paths).tolist()
    assert apps[0] == apps[1] == "/snap/firefox/*/usr/lib/firefox/firefox"
    assert apps[2] == apps[3] == "~/.dropbox-dist/dropbox-lnx.x86_64-*/dropbox"
    assert apps[4] == "~\\AppData\\Local\\Slack\\app-*\\slack.exe"
    assert apps[5:7] == ["/tmp/tool1", "/tmp/tool2"]  # digits that are no version stay
    assert apps[7:] == ["f" * 64, "unknown"]  # no path: the hash, else unknown
    binaries = binary_key(hashes, paths).tolist()
    assert binaries[0] != binaries[1]  # the binaries stay apart
    assert binaries[8] == "unknown"


def test_a_new_version_of_a_known_application_is_a_new_binary_but_no_new_pair() -> None:
    training = flow_windows(
        rows(
            [
                {"host": host, "process_path": "/snap/firefox/5751/usr/lib/firefox/firefox"}
                for host in range(1, 11)
            ]
        )
    )
    profile = fit_profile(training)
    update = flow_windows(
        rows(
            [
                {
                    "host": 3,
                    "process_path": "/snap/firefox/6015/usr/lib/firefox/firefox",
                    "process_sha256": "9" * 64,
                }
            ]
        )
    )
    features = featurize(update, profile)
    assert features["pair_rarity"].iloc[0] < 0.1  # the application talked to it on every host
    assert features["process_rarity"].iloc[0] == pytest.approx(1.0)  # the binary is new


def test_inbound_flows_are_keyed_by_the_local_service_port() -> None:
    clients = rows(
        [
            {
                "direction": "inbound",
                "local_port": 22,
                "remote_port": 40000 + i,
                "remote_address": "10.20.0.7",
            }
            for i in range(5)
        ]
        + [{"direction": "outbound", "local_port": 51000, "remote_port": 22, "remote_address": "10.20.0.7"}]
    )
    windows = flow_windows(clients)
    assert sorted(zip(windows["direction"], windows["service_port"], windows["rows"], strict=True)) == [
        ("inbound", 22, 5),  # five client ports: one window of the ssh service
        ("outbound", 22, 1),
    ]


def test_missing_columns_are_named() -> None:
    with pytest.raises(FeatureError, match="bytes_sent"):
        flow_windows(rows([{}]).drop(columns=["bytes_sent"]))


def test_profile_rarity_and_host_novelty() -> None:
    train = flow_windows(fleet(hosts=10, days=1))
    profile = fit_profile(train)
    assert profile.hosts == 10
    probe = flow_windows(
        rows(
            [
                {"host": 1, "remote_address": "151.101.0.1"},  # shared pool, every host
                {"host": 1, "remote_address": "203.0.113.77"},  # never seen
                {"host": 99, "remote_address": "203.0.113.77"},  # new host: no host history
            ]
        )
    )
    features = featurize(probe, profile)
    assert list(features.columns) == [*FEATURES, *CONTEXT]
    assert not features.isna().any().any()
    common, new, new_host = features.itertuples(index=False)
    assert common.destination_rarity == pytest.approx(0.0, abs=0.1)
    assert new.destination_rarity == pytest.approx(1.0)  # never seen, whatever the number of hosts
    assert new.new_for_host == 1.0 and common.new_for_host == 0.0
    assert new_host.new_for_host == 0.0  # unknown host: neutral, not "everything is new"
    assert new.external == 1.0
    # the scale does not depend on the fleet's size: training spans may see fewer hosts than scoring
    small = featurize(probe, fit_profile(flow_windows(fleet(hosts=3, days=1))))
    assert small["destination_rarity"].iloc[1] == pytest.approx(new.destination_rarity)


def test_fanout_counts_distinct_destinations_per_process_window() -> None:
    scan = rows(
        [{"remote_address": f"10.20.0.{i}", "remote_port": 445, "bytes_sent": 60} for i in range(1, 41)]
    )
    features = featurize(flow_windows(scan), fit_profile(flow_windows(fleet(days=1))))
    assert (features["fanout_address_count"] == 40).all()
    assert features["fanout_addresses"].iloc[0] == pytest.approx(math.log1p(40))
    assert (features["external"] == 0).all()


def beacon_frame(times: np.ndarray, sizes: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "host": 1,
            "app": "x",
            "remote_address": "198.51.100.1",
            "first_seen": times,
            "bytes": sizes,
            "sent": sizes // 2,
        }
    )


def test_beacon_score_regular_versus_random() -> None:
    rng = np.random.default_rng(0)
    regular = np.cumsum(rng.uniform(108, 132, size=60)).astype(int)  # 120 s, +-10 % jitter
    beacon = beacon_scores(beacon_frame(regular, rng.integers(300, 320, size=60)))
    irregular = np.cumsum(rng.exponential(120, size=60)).astype(int)
    noise = beacon_scores(beacon_frame(irregular, rng.integers(100, 90_000, size=60)))
    few = beacon_scores(beacon_frame(regular[:4], np.full(4, 300)))
    assert beacon["beacon_score"].iloc[0] > 0.8
    assert beacon["beacon_interval"].iloc[0] == pytest.approx(120, abs=6)
    assert noise["beacon_score"].iloc[0] < 0.55
    assert few["beacon_score"].iloc[0] == 0.0  # 3 intervals: too few to say
    assert few["sent_total"].iloc[0] == 600 and few["beacon_contacts"].iloc[0] == 4


def _bowley_reference(q1: pd.Series, q2: pd.Series, q3: pd.Series) -> pd.Series:
    spread = q3 - q1
    return ((q1 + q3 - 2.0 * q2) / spread.where(spread > 0, np.nan)).fillna(0.0).abs().clip(upper=1.0)


def beacon_reference(contacts: pd.DataFrame) -> pd.DataFrame:
    """The beacon score written plainly with pandas groupby quantiles (what beacon_scores replaced)."""
    keys = ["host", "app", "remote_address"]
    ordered = contacts.sort_values([*keys, "first_seen"], kind="stable").copy()
    ordered["interval"] = ordered.groupby(keys)["first_seen"].diff()
    ordered["size"] = ordered["bytes"].astype("float64")
    grouped = ordered.groupby(keys)
    count = grouped["interval"].count()
    iq = grouped["interval"].quantile([0.25, 0.5, 0.75]).unstack()
    sq = grouped["size"].quantile([0.25, 0.5, 0.75]).unstack()
    index = pd.MultiIndex.from_frame(ordered[keys])
    ordered["interval_dev"] = (ordered["interval"] - iq[0.5].reindex(index).to_numpy()).abs()
    ordered["size_dev"] = (ordered["size"] - sq[0.5].reindex(index).to_numpy()).abs()
    grouped = ordered.groupby(keys)
    interval_mad, size_mad = grouped["interval_dev"].median(), grouped["size_dev"].median()
    timing = (
        (1.0 - (2.0 * interval_mad / iq[0.5].clip(lower=1.0)).clip(upper=1.0))
        * ((1.0 - _bowley_reference(iq[0.25], iq[0.5], iq[0.75])) + (count / 20).clip(upper=1.0))
        / 2.0
    )
    sizing = (
        (1.0 - (size_mad / sq[0.5].clip(lower=1.0)).clip(upper=1.0))
        * (
            (1.0 - _bowley_reference(sq[0.25], sq[0.5], sq[0.75]))
            + (1.0 - (sq[0.5] / 65535.0).clip(upper=1.0))
        )
        / 2.0
    )
    score = ((timing + sizing) / 2.0).where(count >= 4, 0.0).fillna(0.0)
    return pd.DataFrame(
        {"beacon_score": score, "beacon_interval": iq[0.5].fillna(0.0), "contacts": count + 1}
    )


@pytest.mark.parametrize("huge", [False, True])
def test_beacon_statistics_equal_pandas_groupby_quantiles(huge: bool) -> None:
    """The vectorised statistics (packed-key sorts) give exactly what pandas' linear-interpolation
    quantiles and medians of absolute deviations give, with pairs of one contact; ``huge``: byte
    counts past the packed sort's range (its lexsort fallback)."""
    rng = np.random.default_rng(3)
    n = 6000
    contacts = pd.DataFrame(
        {
            "host": rng.integers(0, 6, n),
            "app": rng.choice(["a", "b", "c"], n),
            "remote_address": rng.choice([f"10.0.0.{k}" for k in range(60)], n),
            "first_seen": np.where(
                rng.random(n) < 0.5, rng.integers(0, 86400, n), (rng.integers(0, 700, n) * 120)
            ),
            "bytes": np.where(rng.random(n) < (0.002 if huge else 0.0), 2**45, rng.integers(200, 260, n)),
            "sent": rng.integers(0, 100, n),
        }
    )
    ours = beacon_scores(contacts)
    reference = beacon_reference(contacts).reindex(ours.index)
    assert (ours["beacon_contacts"] == reference["contacts"]).all()
    assert np.allclose(ours["beacon_interval"], reference["beacon_interval"], rtol=0, atol=1e-9)
    assert np.allclose(ours["beacon_score"], reference["beacon_score"], rtol=0, atol=1e-12)
    assert (ours["beacon_score"] > 0.3).any()  # the comparison covers scoring pairs, not only zeros


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detectors_rank_outliers_first(name: str) -> None:
    X_train, X_test, _y_train, y_test = generate_data(
        n_train=1000, n_test=500, n_features=6, contamination=0.1, random_state=7
    )
    if name in ("tailmax", "ensemble"):  # right-tailed: it expects features oriented so high is unusual
        centre = np.median(X_train, axis=0)
        X_train, X_test = np.abs(X_train - centre), np.abs(X_test - centre)
    detector = make_detector(name, contamination=0.1).fit(X_train)
    scores = detector.decision_function(X_test)
    assert roc_auc_score(y_test, scores) >= 0.9  # as PyOD's own tests assert on generated data
    assert detector.threshold_ == pytest.approx(np.quantile(detector.decision_scores_, 0.9))
    # a row's score does not depend on what it is scored with
    alone = np.array([detector.decision_function(X_test[i : i + 1])[0] for i in range(5)])
    assert np.allclose(alone, scores[:5])
    assert detector.predict(X_test).mean() == pytest.approx((scores > detector.threshold_).mean())


@pytest.mark.parametrize(("name", "reference"), [("ecod", ECOD), ("copod", COPOD)])
def test_frozen_tail_detectors_rank_as_pyod_does(name: str, reference: type) -> None:
    X_train, _x, _y, _yt = generate_data(
        n_train=2000, n_test=10, n_features=8, contamination=0.1, random_state=3
    )
    ours = make_detector(name, contamination=0.1).fit(X_train)
    theirs = reference().fit(X_train)
    assert spearmanr(ours.decision_scores_, theirs.decision_scores_).statistic > 0.999


def test_detector_errors_say_what_is_accepted() -> None:
    with pytest.raises(DetectorError, match="choose one of"):
        make_detector("lof", contamination=0.1)
    with pytest.raises(DetectorError, match="contamination"):
        make_detector("iforest", contamination=0.7)
    with pytest.raises(DetectorError, match="NaN"):
        make_detector("hbos", contamination=0.1).fit(np.array([[1.0, np.nan]] * 20))
    with pytest.raises(DetectorError, match="at least 10"):
        make_detector("iforest", contamination=0.1).fit(np.ones((3, 2)))


@pytest.fixture(scope="module")
def trained() -> tuple[models.Model, pd.DataFrame]:
    windows = flow_windows(fleet(hosts=12, days=3))
    return models.train(windows, contamination=0.01, folds=3), windows


def test_training_is_out_of_sample_and_reports_validation(trained: tuple[models.Model, pd.DataFrame]) -> None:
    model, windows = trained
    assert model.training["windows"] == len(windows)
    assert 0 < model.training["fitted_windows"] < len(windows)
    validation = model.validation
    assert validation["windows"] > 0 and validation["host_days"] == pytest.approx(12, rel=0.05)
    assert sum(validation["histogram"]["counts"]) > 0
    # held out, the alert rate is near the contamination asked for, not zero and not wild
    assert validation["above_threshold"] <= 0.05 * validation["windows"]


def test_exfiltration_scores_above_threshold_and_is_explained(
    trained: tuple[models.Model, pd.DataFrame],
) -> None:
    model, _ = trained
    attack = rows(
        [
            {
                "host": 3,
                "window_start": START + 3 * DAY,
                "process_name": "rclone",
                "process_path": "/usr/bin/rclone",
                "process_sha256": "cc" * 32,
                "remote_address": "203.0.113.9",
                "remote_hostname": "",
                "bytes_sent": 48_000_000,
                "bytes_received": 20_000,
            }
        ]
    )
    normal = flow_windows(fleet(hosts=12, days=1, seed=11)).assign(
        window_start=lambda f: f["window_start"] + 3 * DAY
    )
    scored = model.score(pd.concat([normal, flow_windows(attack)], ignore_index=True))
    top = scored.loc[scored["score"].idxmax()]
    assert top["remote_address"] == "203.0.113.9" and bool(top["anomalous"])
    assert scored["anomalous"].mean() < 0.05
    surprise = model.surprise(scored.loc[[top.name]]).iloc[0].to_dict()
    sentence, reasons = explain(top.to_dict(), surprise, model.profile)
    assert "sent 48.0 MB" in sentence
    assert "this application's fleet median" in sentence
    assert "never seen before on any of 12 hosts" in sentence
    assert reasons[0].surprise >= reasons[-1].surprise


def test_an_explanation_says_a_thing_once(trained: tuple[models.Model, pd.DataFrame]) -> None:
    model, _ = trained
    window = flow_windows(
        rows(
            [
                {
                    "host": 3,
                    "process_name": "kdev-sync",
                    "process_path": "/home/ann/.local/bin/kdev-sync",
                    "process_sha256": "9" * 64,
                    "remote_address": "176.97.83.217",
                    "remote_hostname": "",
                }
            ]
        )
    ).iloc[0]
    surprise = {
        "joint_rarity": 5.0,
        "process_rarity": 4.9,
        "destination_rarity": 4.8,
        "port_external_rarity": 3.0,
        "port_rarity": 2.9,
        "pair_rarity": 2.8,
    }
    sentence, reasons = explain(window.to_dict(), surprise, model.profile)
    assert [reason.feature for reason in reasons] == ["joint_rarity", "port_external_rarity"]
    assert (
        "a new executable /home/ann/.local/bin/kdev-sync (sha256 999999999999…, seen on none of 12 hosts)"
        in sentence
    )
    assert "talking to a new destination (seen on none of 12 hosts)" in sentence


def test_artifact_round_trip_and_refusals(trained: tuple[models.Model, pd.DataFrame]) -> None:
    model, windows = trained
    artifact = models.dumps(model)
    sha, signature = models.sign(artifact, b"k" * 32)
    loaded = models.loads(artifact, sha256=sha, signature=signature, key=b"k" * 32)
    sample = windows.head(200)
    assert np.allclose(loaded.score(sample)["score"], model.score(sample)["score"])
    tampered = artifact[:-1] + bytes([artifact[-1] ^ 1])
    with pytest.raises(models.ModelIntegrityError, match="sha256"):
        models.loads(tampered, sha256=sha, signature=signature, key=b"k" * 32)
    forged_sha, forged_signature = models.sign(tampered, b"attacker-key" * 3)
    with pytest.raises(models.ModelIntegrityError, match="signature"):
        models.loads(tampered, sha256=forged_sha, signature=forged_signature, key=b"k" * 32)


def test_known_normal_windows_lower_their_scores() -> None:
    windows = flow_windows(fleet(hosts=12, days=3))
    odd = windows.index[(windows["process_sha256"] == "cc" * 32) & (windows["host"] == 2)][::10]
    windows.loc[odd, "bytes_sent"] = 30_000_000  # an unusual but judged-normal backup pattern
    plain = models.train(windows, contamination=0.01, folds=3)
    judged = models.train(windows, contamination=0.01, folds=3, known_normal=windows.loc[odd])
    probe = windows.loc[odd[-5:]]
    assert judged.score(probe)["score"].mean() < plain.score(probe)["score"].mean()


def test_severity_grows_with_the_score(trained: tuple[models.Model, pd.DataFrame]) -> None:
    model, _ = trained
    top = model.training["score_max"]
    gap = top - model.threshold
    levels = model.severity([model.threshold + 0.1 * gap, top, top + 2.5 * gap])
    assert list(levels) == ["low", "high", "critical"]


def test_alert_grouping_dedup_and_budget(trained: tuple[models.Model, pd.DataFrame]) -> None:
    model, _ = trained
    when = START + 3 * DAY
    scanner = {"host": 5, "window_start": when, "process_name": "nc", "process_path": "/tmp/nc"}
    sweep = rows(
        [
            {**scanner, "process_sha256": "", "remote_address": f"10.20.1.{i}", "remote_port": 445,
             "bytes_sent": 80, "bytes_received": 0}
            for i in range(1, 30)
        ]
        + [
            {"host": 6, "window_start": when + 60 * k, "process_sha256": "dd" * 32,
             "process_path": f"/tmp/x{k}", "remote_address": f"198.51.100.{k}", "bytes_sent": 40_000_000 + k}
            for k in range(1, 8)
        ]
    )  # fmt: skip
    scored = model.score(flow_windows(sweep))
    scored["anomalous"] = True  # decide on every window here: the grouping is what is tested
    drafts = draft_alerts(scored, model, AlertPolicy(fanout_group=8))
    by_host = {host: [d for d in drafts if d.host == host] for host in (5, 6)}
    assert len(by_host[5]) == 1 and by_host[5][0].destinations == 29 and by_host[5][0].remote_address is None
    assert "reached 29 destinations" in by_host[5][0].explanation
    assert len(by_host[6]) == 7  # different executables and destinations: one alert each
    policy = AlertPolicy(budget_per_host_day=3, cooldown_seconds=3600)
    recent = [RecentAlert(41, 5, by_host[5][0].dedup_key, when - 600)]
    outcome = triage_drafts(drafts, recent, {(6, when // DAY): 1}, policy)
    assert [alert_id for alert_id, _ in outcome.merged] == [41]
    assert len(outcome.new) == 2 and len(outcome.suppressed) == 5  # host 6 had 1 of 3 already
    assert min(d.score for d in outcome.new) >= max(d.score for d in outcome.suppressed)
    later = triage_drafts(drafts, [RecentAlert(41, 5, by_host[5][0].dedup_key, when - 7200)], {}, policy)
    assert not later.merged  # past the cooldown: a new alert
    # a critical alert is never suppressed by the budget (it still counts towards it)
    hidden = outcome.suppressed[-1]
    hidden.severity = "critical"
    again = triage_drafts(drafts, recent, {(6, when // DAY): 1}, policy)
    assert hidden in again.new and len(again.new) == 3 and len(again.suppressed) == 4


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (512, 48_000_000, 1_250, 3e12)] == [
        "512 B",
        "48.0 MB",
        "1.2 KB",
        "3.0 TB",
    ]


def test_the_configured_detector_names_are_the_registry() -> None:
    assert set(DETECTOR_NAMES) == set(DETECTORS)
    assert next(setting.default for setting in SETTINGS if setting.name == "detector") == DEFAULT_DETECTOR


def test_isolation_forest_scores_equal_pyods() -> None:
    """Our tree-by-tree scoring gives PyOD's own decision_function, also with feature subsampling
    (the library path)."""
    X_train, X_test, _y, _yt = generate_data(
        n_train=800, n_test=300, n_features=5, contamination=0.1, random_state=4
    )
    for params in ({}, {"max_features": 0.6}):
        detector = make_detector("iforest", contamination=0.1, params=params).fit(X_train)
        ours = detector.decision_function(X_test)
        reference = detector.model_.decision_function(X_test)  # type: ignore[attr-defined]
        assert np.allclose(ours, reference, rtol=0, atol=1e-12)
        assert np.allclose(detector.decision_function(X_train), detector.decision_scores_, rtol=0, atol=1e-12)


def test_frozen_tails_count_training_values_exactly() -> None:
    """One search per cell gives the exact counts of training values at most and at least each value,
    ties and values outside the training range included."""
    rng = np.random.default_rng(8)
    X = rng.integers(0, 12, size=(500, 3)).astype(np.float64)
    X[:, 2] = rng.normal(size=500)
    tails = FrozenTails(X)
    cells = np.vstack([X[:50], rng.integers(-3, 16, size=(50, 3)).astype(np.float64)])
    left, right = tails.left_right(cells)
    for column in range(3):
        at_most = (X[:, column][None, :] <= cells[:, column][:, None]).sum(axis=1)
        at_least = (X[:, column][None, :] >= cells[:, column][:, None]).sum(axis=1)
        assert np.allclose(left[:, column], -np.log((at_most + 1.0) / 501.0))
        assert np.allclose(right[:, column], -np.log((at_least + 1.0) / 501.0))


def test_profile_counts_equal_a_plain_lookup() -> None:
    """The packed-key lookups of the profile's tables give each key's count and 0 for unknown keys
    (unknown values, and known values in an unknown combination); the tables are rebuilt after
    unpickling rather than stored."""
    windows = flow_windows(fleet(hosts=4, days=1))
    profile = fit_profile(windows)
    queries = pd.DataFrame(
        {
            "app": ["/usr/bin/rclone", "/usr/bin/rclone", "/usr/bin/nope", "/usr/lib/firefox/firefox"],
            "remote_address": ["52.1.1.1", "10.0.0.53", "52.1.1.1", "151.101.0.1"],
        }
    )
    expected = [
        float(profile.pair_hosts.get((app, address), 0))
        for app, address in zip(queries["app"], queries["remote_address"], strict=True)
    ]
    assert expected[0] == 4 and expected[1] == 0 and expected[2] == 0 and expected[3] > 0
    got = profile.counts("pair_hosts", [queries["app"], queries["remote_address"]])
    assert got.tolist() == expected
    assert profile.counts("destination_hosts", [queries["remote_address"]]).tolist() == [4.0, 4.0, 4.0, 4.0]
    fallback = KeyCounts(profile.pair_hosts)
    fallback.packable = False  # the path for tables whose packed keys would overflow
    assert fallback([queries["app"], queries["remote_address"]]).tolist() == expected
    with pytest.raises(FeatureError, match="2 key columns"):
        profile.counts("pair_hosts", [queries["app"]])
    assert "_lookups" in profile.__dict__
    assert "_lookups" not in pickle.loads(pickle.dumps(profile)).__dict__


def test_look_back_features_count_only_the_pairs_earlier_contacts() -> None:
    """pair_windows and pair_sent_total of a scored batch, with history holding other pairs, later
    rows and rows past the look-back, equal a plain count over the same pair's windows in
    (window_start - look-back, window_start]; and the beacon score is the one computed over the pair's
    whole look-back."""
    windows = flow_windows(fleet(hosts=3, days=2))
    lookback = 6 * 3600
    cut = START + DAY + 7200
    batch = windows[(windows["window_start"] >= cut) & (windows["window_start"] < cut + 3600)]
    batch = batch[batch["app"] != "/usr/lib/systemd/systemd-resolved"]  # its pairs stay history only
    history = windows.drop(batch.index)  # everything else, later rows included
    profile = fit_profile(windows[windows["window_start"] < START + DAY])
    features = featurize(batch, profile, history=history, lookback_seconds=lookback)
    earlier = pd.concat([history, batch])
    for index, window in batch.iterrows():
        same = earlier[
            (earlier["host"] == window["host"])
            & (earlier["app"] == window["app"])
            & (earlier["remote_address"] == window["remote_address"])
            & (earlier["window_start"] > window["window_start"] - lookback)
            & (earlier["window_start"] <= window["window_start"])
        ]
        assert features.at[index, "pair_windows"] == pytest.approx(math.log1p(len(same)))
        assert features.at[index, "pair_sent_total"] == pytest.approx(math.log1p(same["bytes_sent"].sum()))
    span = earlier[(earlier["window_start"] > cut - lookback) & (earlier["window_start"] < cut + 3600)]
    reference = beacon_scores(contacts_of(span[span["app"] == "/usr/bin/rclone"]))
    synced = batch[batch["app"] == "/usr/bin/rclone"]
    for index, window in synced.iterrows():
        key = (window["host"], window["app"], window["remote_address"])
        assert features.at[index, "beacon_score"] == pytest.approx(reference.at[key, "beacon_score"])
    assert (features.loc[synced.index, "beacon_score"] > 0.5).all()
