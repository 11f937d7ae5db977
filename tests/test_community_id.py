"""Community ID v1 against the spec's published baseline.

The vectors are copied from https://github.com/corelight/community-id-spec, ``baseline/README.md``
(the tables) and ``baseline/baseline_deflt.json`` / ``baseline_seed1.json`` (computed by the
reference pycommunityid over the spec's pcaps), commit c4ec2bc40d65ddbcbdd642582bf5609797a80772.
"""

from __future__ import annotations

import pytest

from extension.community_id import community_id, community_id_v1

V6_A = "fe80:0001:0203:0405:0607:0809:0A0B:0C0D"
V6_B = "fe80:1011:1213:1415:1617:1819:1A1B:1C1D"

# (protocol number, src, dst, src port / ICMP type, dst port / ICMP code, seed 0 id, seed 1 id)
TABLE = [
    (6, "1.2.3.4", "5.6.7.8", 1122, 3344, "1:wCb3OG7yAFWelaUydu0D+125CLM=", "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
    (6, "5.6.7.8", "1.2.3.4", 3344, 1122, "1:wCb3OG7yAFWelaUydu0D+125CLM=", "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
    (
        17,
        "1.2.3.4",
        "5.6.7.8",
        1122,
        3344,
        "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=",
        "1:OShq+iKDAMVouh/4bMxB9Sz4amw=",
    ),
    (
        17,
        "5.6.7.8",
        "1.2.3.4",
        3344,
        1122,
        "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=",
        "1:OShq+iKDAMVouh/4bMxB9Sz4amw=",
    ),
    (
        132,
        "1.2.3.4",
        "5.6.7.8",
        1122,
        3344,
        "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=",
        "1:uitchpn5MMGAQKBJh7bIr/bAr7s=",
    ),
    (
        132,
        "5.6.7.8",
        "1.2.3.4",
        3344,
        1122,
        "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=",
        "1:uitchpn5MMGAQKBJh7bIr/bAr7s=",
    ),
    (1, "1.2.3.4", "5.6.7.8", 8, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=", "1:9pr4ZGTICiuZoIh90RRYE2RyXpU="),
    (1, "5.6.7.8", "1.2.3.4", 0, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=", "1:9pr4ZGTICiuZoIh90RRYE2RyXpU="),
    (1, "1.2.3.4", "5.6.7.8", 11, 0, "1:f/YiSyWqczrTgfUCZlBUnvHRcPk=", "1:1DD7cWGC/Yg91YGsQeni8du3pIA="),
    (58, V6_A, V6_B, 128, 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=", "1:IO27GQzPuCtNnwFvjWALMHu5tJE="),
    (58, V6_B, V6_A, 129, 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=", "1:IO27GQzPuCtNnwFvjWALMHu5tJE="),
    (58, V6_A, V6_B, 146, 0, "1:fYC8+pz24E+EhANP1EZhpX0Dw10=", "1:Cv4IKJe56BNkF0MBW2YxQ3Nwc3s="),
    (
        46,
        "1.2.3.4",
        "5.6.7.8",
        None,
        None,
        "1:ikv3kmf89luf73WPz1jOs49S768=",
        "1:/buhqeOmaRCopOZFy9HnoJd5XW8=",
    ),
    (
        46,
        "5.6.7.8",
        "1.2.3.4",
        None,
        None,
        "1:ikv3kmf89luf73WPz1jOs49S768=",
        "1:/buhqeOmaRCopOZFy9HnoJd5XW8=",
    ),
    (46, V6_A, V6_B, None, None, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=", "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM="),
    (46, V6_B, V6_A, None, None, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=", "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM="),
]

# baseline_deflt.json / baseline_seed1.json: flows from the spec's pcaps (ICMP rows carry the type
# and, for request/reply pairs, the counterpart type in the port columns).
V6_LL_1 = "fe80::200:86ff:fe05:80da"
V6_LL_2 = "fe80::260:97ff:fe07:69ea"
V6_SMTP_C = "2001:470:e5bf:dead:4957:2174:e82c:4887"
V6_SMTP_S = "2607:f8b0:400c:c03::1a"
PCAP_FLOWS = [
    (58, V6_LL_1, V6_LL_2, 135, 136, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
    (58, V6_LL_2, V6_LL_1, 136, 135, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
    (58, V6_LL_2, V6_LL_1, 135, 136, "1:zavyT/cezQr1fmImYCwYnMXbgck=", "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM="),
    (58, V6_LL_1, V6_LL_2, 136, 135, "1:zavyT/cezQr1fmImYCwYnMXbgck=", "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM="),
    (
        58,
        "3ffe:501:1800:2345::2",
        "3ffe:507:0:1:200:86ff:fe05:80da",
        3,
        0,
        "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=",
        "1:lVEtCZpYu84Xqaa++3lXFyuu2n4=",
    ),
    (
        58,
        "3ffe:501:410:0:2c0:dfff:fe47:33e",
        "3ffe:507:0:1:200:86ff:fe05:80da",
        1,
        4,
        "1:hLZd0XGWojozrvxqE0dWB1iM6R0=",
        "1:W8MHwXpWzpoSTD+cGcaJr4u0ys8=",
    ),
    (
        58,
        "3ffe:507:0:1:200:86ff:fe05:80da",
        "3ffe:501:0:1001::2",
        128,
        129,
        "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
        "1:GfZxjAkDk2MkegpBYHV6tadtFXQ=",
    ),
    (
        58,
        "3ffe:501:0:1001::2",
        "3ffe:507:0:1:200:86ff:fe05:80da",
        129,
        128,
        "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
        "1:GfZxjAkDk2MkegpBYHV6tadtFXQ=",
    ),
    (58, V6_LL_1, "ff02::2", 133, 134, "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=", "1:L7Ka0ZMYu+J3bL4ulW2PrqyXNo8="),
    (58, V6_LL_2, "ff02::1", 134, 133, "1:pkvHqCL88/tg1k4cPigmZXUtL00=", "1:K/ee5UCqAMAQXDorP5nSa2CGLjc="),
    (
        1,
        "192.168.0.89",
        "192.168.0.1",
        8,
        0,
        "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
        "1:03g6IloqVBdcZlPyX8r0hgoE7kA=",
    ),
    (
        1,
        "192.168.0.1",
        "192.168.0.89",
        0,
        8,
        "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
        "1:03g6IloqVBdcZlPyX8r0hgoE7kA=",
    ),
    (1, "10.0.0.1", "10.0.0.2", 11, 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM=", "1:XjUibYHaafLQ3pxQeiMI8g25q20="),
    (6, V6_SMTP_C, V6_SMTP_S, 63943, 25, "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
    (6, V6_SMTP_S, V6_SMTP_C, 25, 63943, "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
    (
        132,
        "192.168.170.8",
        "192.168.170.56",
        7,
        7,
        "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
        "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg=",
    ),
    (
        132,
        "192.168.170.56",
        "192.168.170.8",
        7,
        7,
        "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
        "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg=",
    ),
    (
        6,
        "128.232.110.120",
        "66.35.250.204",
        34855,
        80,
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
    ),
    (
        6,
        "66.35.250.204",
        "128.232.110.120",
        80,
        34855,
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
    ),
    (
        17,
        "192.168.1.52",
        "8.8.8.8",
        54585,
        53,
        "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
        "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
    ),
    (
        17,
        "8.8.8.8",
        "192.168.1.52",
        53,
        54585,
        "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
        "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
    ),
    (
        46,
        "10.1.12.1",
        "10.1.12.2",
        None,
        None,
        "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
        "1:rYir8gphR31noO9iDRQmF/BteEI=",
    ),
    (
        46,
        "10.1.12.2",
        "10.1.12.1",
        None,
        None,
        "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
        "1:rYir8gphR31noO9iDRQmF/BteEI=",
    ),
]

Vector = tuple[int, str, str, int | None, int | None, str, str]


@pytest.mark.parametrize("vector", TABLE + PCAP_FLOWS)
def test_spec_baseline(vector: Vector) -> None:
    proto, src, dst, sport, dport, seed0, seed1 = vector
    assert community_id_v1(proto, src, dst, sport, dport) == seed0
    assert community_id_v1(proto, src, dst, sport, dport, seed=1) == seed1


def test_by_protocol_name_matches_the_examples_in_the_brief() -> None:
    assert community_id("tcp", "128.232.110.120", 34855, "66.35.250.204", 80) == (
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    )
    assert community_id("udp", "8.8.8.8", 53, "192.168.1.52", 54585) == "1:d/FP5EW3wiY1vCndhwleRRKHowQ="
    assert community_id("UDP", "192.168.1.52", 54585, "8.8.8.8", 53, seed=1) == (
        "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="
    )


def test_both_directions_hash_alike() -> None:
    there = community_id("tcp", "10.0.0.1", 1234, "127.0.0.1", 80)
    back = community_id("tcp", "127.0.0.1", 80, "10.0.0.1", 1234)
    assert there == back
    # same addresses: the ports decide the order
    assert community_id("udp", "10.0.0.1", 5000, "10.0.0.1", 53) == community_id(
        "udp", "10.0.0.1", 53, "10.0.0.1", 5000
    )
    assert community_id("udp", "10.0.0.1", 5000, "10.0.0.1", 53) != community_id(
        "tcp", "10.0.0.1", 5000, "10.0.0.1", 53
    )


def test_v4_mapped_addresses_hash_as_ipv4() -> None:
    assert community_id("tcp", "::ffff:128.232.110.120", 34855, "66.35.250.204", 80) == (
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    )


@pytest.mark.parametrize(
    ("protocol", "src", "sport", "dst", "dport"),
    [
        ("gre", "1.2.3.4", 1, "5.6.7.8", 2),  # no ports for this protocol name
        ("tcp", "1.2.3", 1, "5.6.7.8", 2),  # bad address
        ("tcp", "1.2.3.4", 70000, "5.6.7.8", 2),  # port out of range
        ("udp", "1.2.3.4", -1, "5.6.7.8", 2),
    ],
)
def test_malformed_input_is_rejected(protocol: str, src: str, sport: int, dst: str, dport: int) -> None:
    with pytest.raises(ValueError):
        community_id(protocol, src, sport, dst, dport)


def test_mixed_address_families_have_no_id() -> None:
    # a socket bound to :: talking to an IPv4 peer: the IPv4 source on the wire is unknown here
    assert community_id("udp", "::", 5353, "192.0.2.1", 53) == ""
    assert community_id("tcp", "2001:db8::1", 1, "::ffff:192.0.2.1", 2) == ""


def test_port_protocols_need_ports_and_seed_is_16_bit() -> None:
    with pytest.raises(ValueError):
        community_id_v1(6, "1.2.3.4", "5.6.7.8")
    with pytest.raises(ValueError):
        community_id_v1(6, "1.2.3.4", "5.6.7.8", 1, None)
    with pytest.raises(ValueError):
        community_id("tcp", "1.2.3.4", 1, "5.6.7.8", 2, seed=65536)
