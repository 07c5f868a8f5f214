from __future__ import annotations

import pytest

from ansible_collections.k8router.edge.plugins.module_utils._net import (
    bird_name,
    interface_networks,
    parse_address,
    parse_network,
    pool_addresses,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10.0.0.1", "10.0.0.1"), (" 10.0.0.1 ", "10.0.0.1"), ("fd00::1", "fd00::1")],
)
def test_parse_address(value: str, expected: str) -> None:
    assert str(parse_address(value)) == expected


@pytest.mark.parametrize("value", ["", "10.0.0.256", "10.0.0.0/24", "host.example", None, 3])
def test_parse_address_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="is not an IP address"):
        parse_address(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [("10.0.0.1/24", "has host bits set"), ("10.0.0.0/33", "is not a CIDR"), ("nope", "is not a CIDR"), (None, "CIDR")],
)
def test_parse_network_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_network(value)


def test_interface_networks_from_gathered_facts() -> None:
    facts = {
        "interfaces": ["lo", "eth0", "br-ex"],
        "lo": {"ipv4": {"address": "127.0.0.1", "netmask": "255.0.0.0"}},
        "eth0": {
            "ipv4": {"address": "10.213.7.11", "netmask": "255.255.255.0"},
            "ipv4_secondaries": [
                {"address": "10.213.7.250", "netmask": "255.255.255.255"},
                {"address": "172.16.5.1", "netmask": "255.255.255.128"},
            ],
            "ipv6": [
                {"address": "fe80::1", "prefix": "64"},
                {"address": "fd00:1::11", "prefix": "64"},
            ],
        },
        "br_ex": {"ipv4": {"address": "192.168.9.1", "netmask": "255.255.255.0"}},
    }
    assert interface_networks(facts) == ["10.213.7.0/24", "172.16.5.0/25", "fd00:1::/64", "192.168.9.0/24"]


def test_interface_networks_tolerates_missing_parts() -> None:
    assert (
        interface_networks({"interfaces": ["eth0", "eth1"], "eth0": "junk", "eth1": {"ipv4": {"address": "x"}}}) == []
    )
    assert interface_networks({}) == []


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("alpha",), "alpha"),
        (("my-cluster", "w-1"), "my_cluster_w_1"),
        (("10.0.0.1",), "p_10_0_0_1"),
        (("fd00::1",), "fd00__1"),
        (('a b"c;d\n',), "a_b_c_d_"),
        ((), "p_"),
    ],
)
def test_bird_name(parts: tuple[str, ...], expected: str) -> None:
    assert bird_name(*parts) == expected


def test_pool_addresses_expands_and_deduplicates() -> None:
    assert pool_addresses(["10.0.0.8/30", "10.0.0.9", "10.0.0.20", "10.0.0.30/31"]) == [
        "10.0.0.9",
        "10.0.0.10",
        "10.0.0.20",
        "10.0.0.30",
        "10.0.0.31",
    ]
    assert pool_addresses(["fd00::/127"]) == ["fd00::", "fd00::1"]


def test_pool_addresses_limits_and_rejects() -> None:
    with pytest.raises(ValueError, match="more than 16 addresses"):
        pool_addresses(["10.0.0.0/24"], limit=16)
    with pytest.raises(ValueError, match="is not"):
        pool_addresses(["10.0.0.x"])
    with pytest.raises(ValueError, match="host bits"):
        pool_addresses(["10.0.0.1/30"])
