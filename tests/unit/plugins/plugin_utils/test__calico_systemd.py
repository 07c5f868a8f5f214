from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.k8router.edge.plugins.plugin_utils._calico_systemd import (
    CalicoConfigError,
    calico_environment,
    calico_resources,
    calico_systemd_errors,
    calico_units,
    environment_file,
    stale_peers,
    systemd_quote,
    unit_binaries,
)

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

UNITS: list[dict[str, Any]] = [
    {"name": "calico-startup", "binaries": ["calico-node"], "after": ["network-online.target"]},
    {
        "name": "calico-felix",
        "binaries": ["calico-node"],
        "needs": ["calico-startup"],
        "requires": ["calico-startup"],
        "after": ["calico-startup"],
    },
    {
        "name": "calico-felix-liveness",
        "binaries": ["calico-node"],
        "needs": ["calico-felix"],
        "after": ["calico-felix"],
    },
    {"name": "calico-confd", "binaries": ["calico-node"], "needs": ["calico-startup"], "after": ["calico-startup"]},
    {"name": "calico-bird", "started_by": "calico-api-watchdog", "after": ["calico-confd", "network-online.target"]},
    {"name": "calico-api-watchdog", "after": ["network-online.target"]},
]


# ---- environment -----------------------------------------------------------------------------------------------


def test_environment_derives_felix_aliases_and_sorts() -> None:
    env = calico_environment({"NODENAME": "w1", "DATASTORE_TYPE": "kubernetes", "IP": "autodetect"})
    assert env == {
        "DATASTORE_TYPE": "kubernetes",
        "FELIX_DATASTORETYPE": "kubernetes",
        "FELIX_FELIXHOSTNAME": "w1",
        "IP": "autodetect",
        "NODENAME": "w1",
    }
    assert list(env) == sorted(env)


def test_environment_overrides_remove_and_keep_explicit_aliases() -> None:
    env = calico_environment(
        {"NODENAME": "w1", "IP": "autodetect", "PORT": 6443, "FLAG": True},
        {"IP": "10.0.0.5", "FELIX_FELIXHOSTNAME": "other", "PORT": None, "EXTRA": False},
    )
    assert env == {
        "EXTRA": "false",
        "FELIX_FELIXHOSTNAME": "other",
        "FLAG": "true",
        "IP": "10.0.0.5",
        "NODENAME": "w1",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"BAD-NAME": "x"}, "'BAD-NAME' is not a variable name"),
        ({"X": "two\nlines"}, "calico_systemd_environment.X: must be one line"),
        ({"X": ["a"]}, "calico_systemd_environment.X: must be a string, number or boolean"),
    ],
)
def test_environment_rejects(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(CalicoConfigError, match=message.replace(".", r"\.")):
        calico_environment({}, overrides)


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", '"plain"'),
        ("with space", '"with space"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\path", '"C:\\\\path"'),
        ("$HOME and `cmd`", '"\\$HOME and \\`cmd\\`"'),
        ("", '""'),
    ],
)
def test_systemd_quote(value: str, quoted: str) -> None:
    assert systemd_quote(value) == quoted


def test_environment_file() -> None:
    assert environment_file({"B": "two words", "A": 1}) == 'A="1"\nB="two words"\n'
    assert environment_file({}) == ""
    with pytest.raises(CalicoConfigError):
        environment_file({"A": "x\ry"})


# ---- units -----------------------------------------------------------------------------------------------------


def test_units_all_active() -> None:
    units = calico_units(UNITS)
    by_name = {u["name"]: u for u in units}
    assert [u["file"] for u in units] == [f"{u['name']}.service" for u in UNITS]
    assert by_name["calico-bird"]["start"] is False
    assert by_name["calico-bird"]["enabled"] is False
    assert by_name["calico-bird"]["wanted_by"] == []
    assert by_name["calico-bird"]["after"] == ["calico-confd.service", "network-online.target"]
    assert by_name["calico-felix"]["requires"] == ["calico-startup.service"]
    assert by_name["calico-felix"]["wanted_by"] == ["multi-user.target"]
    assert all(u["start"] for u in units if u["name"] != "calico-bird")
    assert unit_binaries(units) == ["calico-node"]


def test_units_disabled_cascade_and_references_dropped() -> None:
    units = calico_units(UNITS, ["calico-startup"])
    names = [u["name"] for u in units]
    # felix and confd need start-up; felix's probe needs felix.
    assert names == ["calico-bird", "calico-api-watchdog"]
    assert units[0]["after"] == ["network-online.target"]
    assert unit_binaries(units) == []


def test_units_without_watchdog_bird_starts_at_boot() -> None:
    bird = next(u for u in calico_units(UNITS, ["calico-api-watchdog"]) if u["name"] == "calico-bird")
    assert bird["start"] is True
    assert bird["enabled"] is True
    assert bird["wanted_by"] == ["multi-user.target"]


def test_units_unknown_and_duplicate() -> None:
    with pytest.raises(CalicoConfigError, match="no such unit calico-typha"):
        calico_units(UNITS, ["calico-typha"])
    with pytest.raises(CalicoConfigError, match="duplicate names"):
        calico_units([{"name": "a"}, {"name": "a"}])


# ---- resources -------------------------------------------------------------------------------------------------


def test_resources() -> None:
    resources = calico_resources(
        as_number=64512,
        peers=[{"address": "10.213.8.11"}, {"address": "fd00::1", "as_number": 65000, "node_selector": "rack == 'a'"}],
        pod_cidrs=["10.244.0.0/16"],
        service_cidrs=["10.96.0.0/16"],
        loadbalancer_cidrs=["192.0.2.240/29"],
    )
    assert resources == [
        {
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {
                "logSeverityScreen": "Info",
                "nodeToNodeMeshEnabled": False,
                "asNumber": 64512,
                "serviceClusterIPs": [{"cidr": "10.96.0.0/16"}],
                "serviceLoadBalancerIPs": [{"cidr": "192.0.2.240/29"}],
            },
        },
        {
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "BGPPeer",
            "metadata": {"name": "k8router-10-213-8-11", "labels": {"k8router.edge/router-set": "routers"}},
            "spec": {"peerIP": "10.213.8.11", "asNumber": 64512},
        },
        {
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "BGPPeer",
            "metadata": {"name": "k8router-fd00-1", "labels": {"k8router.edge/router-set": "routers"}},
            "spec": {"peerIP": "fd00::1", "asNumber": 65000, "nodeSelector": "rack == 'a'"},
        },
        {
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "IPPool",
            "metadata": {"name": "k8router-10-244-0-0-16"},
            "spec": {
                "cidr": "10.244.0.0/16",
                "blockSize": 26,
                "ipipMode": "Never",
                "vxlanMode": "Never",
                "natOutgoing": False,
                "disabled": False,
                "nodeSelector": "all()",
            },
        },
    ]


def test_stale_peers_are_those_of_routers_that_left() -> None:
    desired = calico_resources(
        as_number=1, peers=[{"address": "10.0.0.1"}], pod_cidrs=[], service_cidrs=["10.96.0.0/12"]
    )
    existing = [{"metadata": {"name": "k8router-10-0-0-1"}}, {"metadata": {"name": "k8router-10-0-0-9"}}]
    assert stale_peers(existing, desired) == ["k8router-10-0-0-9"]


@pytest.mark.parametrize("bad", ["", "a b", "x" * 64, "-edge"])
def test_router_set_must_be_a_label_value(bad: str) -> None:
    with pytest.raises(ValueError, match="router_set"):
        calico_resources(as_number=1, peers=[], pod_cidrs=[], service_cidrs=[], router_set=bad)


def test_resources_without_loadbalancer_cidrs() -> None:
    (bgp,) = calico_resources(as_number=1, peers=[], pod_cidrs=[], service_cidrs=["10.96.0.0/12"])
    assert "serviceLoadBalancerIPs" not in bgp["spec"]


# ---- cross-field checks ----------------------------------------------------------------------------------------


def good_config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "nodename": "worker-1",
        "api_host": "10.213.8.1",
        "api_port": 6443,
        "ca_cert": CA,
        "token": "abc",
        "bgp_as": 64512,
        "pod_cidrs": ["10.244.0.0/16"],
        "service_cidrs": ["10.96.0.0/12"],
        "service_loadbalancer_cidrs": [],
        "ippool_block_size": 26,
        "resources": True,
        "bgp_peers": [{"address": "10.213.8.11"}],
        "units": calico_units(UNITS),
        "binaries": ["calico-node"],
        "binary_entries": [{"name": "calico-node", "src": "/x/calico-node"}],
        "confd_src": "/x/confd",
        "api_watchdog_timeout": 30,
        "api_watchdog_period": 5,
    }
    config.update(changes)
    return config


def test_errors_none_for_a_good_config() -> None:
    assert calico_systemd_errors(good_config()) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"nodename": "Worker_1"}, "calico_systemd_nodename: 'Worker_1' is not a Kubernetes node name"),
        ({"api_host": ""}, "calico_systemd_api_host: must name the Kubernetes API"),
        ({"api_port": 70000}, "calico_systemd_api_port: 70000 is not a TCP port"),
        ({"ca_cert": "nope"}, "calico_systemd_ca_cert: must be the PEM of the cluster CA"),
        ({"token": " "}, "calico_systemd_token: must be calico-node's service-account token"),
        ({"bgp_as": 0}, "calico_systemd_bgp_as: 0 is not an AS number"),
        ({"pod_cidrs": ["10.244.0.1/16"]}, "calico_systemd_pod_cidrs: '10.244.0.1/16' is not a network address"),
        ({"pod_cidrs": []}, "calico_systemd_pod_cidrs: needs at least one CIDR"),
        (
            {"service_cidrs": ["10.244.128.0/20"]},
            "calico_systemd_pod_cidrs 10.244.0.0/16 overlaps calico_systemd_service_cidrs 10.244.128.0/20",
        ),
        (
            {"ippool_block_size": 12},
            "calico_systemd_ippool_block_size: 12 does not fit calico_systemd_pod_cidrs 10.244.0.0/16",
        ),
        ({"bgp_peers": []}, "calico_systemd_bgp_peers: no routers to peer with"),
        (
            {"bgp_peers": [{"address": "router1"}]},
            "calico_systemd_bgp_peers[0].address: {'address': 'router1'} has no IP address",
        ),
        (
            {"bgp_peers": [{"address": "10.0.0.1"}, {"address": "10.0.0.1"}]},
            "calico_systemd_bgp_peers[1].address: 10.0.0.1 is listed twice",
        ),
        (
            {"bgp_peers": [{"address": "10.0.0.1", "as_number": -1}]},
            "calico_systemd_bgp_peers[0].as_number: -1 is not an AS number",
        ),
        (
            {"binaries": [], "binary_entries": []},
            "calico_systemd_binaries: no entry for calico-node (run by calico-startup, calico-felix",
        ),
        (
            {"binary_entries": [{"name": "calico-node", "url": "https://example.invalid/c"}]},
            "calico_systemd_binaries[0] (calico-node): a url needs a checksum",
        ),
        (
            {"binary_entries": [{"name": "calico-node"}]},
            "calico_systemd_binaries[0] (calico-node): give either src or url",
        ),
        ({"confd_src": ""}, "calico_systemd_confd_src: calico-confd needs confd's conf.d/ and templates/"),
        (
            {"api_watchdog_timeout": 2},
            "calico_systemd_api_watchdog_timeout: 2 must be at least calico_systemd_api_watchdog_period (5)",
        ),
    ],
)
def test_errors_name_the_variable(changes: dict[str, Any], expected: str) -> None:
    errors = calico_systemd_errors(good_config(**changes))
    assert any(e.startswith(expected) for e in errors), errors


def test_errors_without_resources_or_calico_node() -> None:
    config = good_config(
        resources=False,
        pod_cidrs=[],
        service_cidrs=[],
        bgp_peers=[],
        units=calico_units(UNITS, ["calico-startup"]),
        binaries=[],
        binary_entries=[],
        confd_src="",
    )
    assert calico_systemd_errors(config) == []
