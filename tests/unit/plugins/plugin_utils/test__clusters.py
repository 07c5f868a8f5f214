from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.k8router.edge.plugins.plugin_utils._clusters import (
    DEFAULT_CONTROL_PLANE_SELECTOR,
    INVENTORY_CLUSTERS,
    ClusterConfig,
    ClusterRead,
    ConfigError,
    Node,
    build_inventory,
    parse_clusters,
)


def test_parse_fills_defaults() -> None:
    (cfg,) = parse_clusters([{"name": "my-cl", "kubeconfig": "/k", "bgp_as": 65000, "api_vip": "fd00::1"}])
    assert cfg == ClusterConfig(name="my-cl", kubeconfig="/k", bgp_as=65000, api_vip="fd00::1")
    assert cfg.control_plane_selector == DEFAULT_CONTROL_PLANE_SELECTOR
    assert cfg.group == "my_cl"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "clusters: must be a non-empty list"),
        ([], "clusters: must be a non-empty list"),
        (["alpha"], "clusters[0]: must be a mapping"),
        ([{"name": "a", "kubeconfig": "/k", "color": 1}], "clusters[0]: unknown field(s) color"),
        ([{"kubeconfig": "/k"}], "clusters[0].name: None must be a DNS label"),
        ([{"name": "a_b", "kubeconfig": "/k"}], "clusters[0].name: 'a_b' must be a DNS label"),
        ([{"name": "a"}], "clusters[a].kubeconfig: required"),
        ([{"name": "a", "kubeconfig": ""}], "clusters[a].kubeconfig: must be a non-empty string"),
        ([{"name": "a", "kubeconfig": "/k", "context": 3}], "clusters[a].context: must be a non-empty string"),
        ([{"name": "a", "kubeconfig": "/k", "bgp_as": 0}], "clusters[a].bgp_as: 0 is not an AS number"),
        ([{"name": "a", "kubeconfig": "/k", "bgp_as": "1"}], "clusters[a].bgp_as: '1' is not an AS number"),
        ([{"name": "a", "kubeconfig": "/k", "api_vip": "x"}], "clusters[a].api_vip: 'x' is not an IP address"),
        ([{"name": "a", "kubeconfig": "/k", "pod_cidrs": "10.0.0.0/8"}], "clusters[a].pod_cidrs: must be a list"),
        (
            [{"name": "a", "kubeconfig": "/k", "service_cidrs": ["10.0.0.1/8"]}],
            "clusters[a].service_cidrs: '10.0.0.1/8'",
        ),
        (
            [{"name": "a", "kubeconfig": "/k"}, {"name": "a", "kubeconfig": "/j"}],
            "clusters[a].name: cluster 'a' is listed",
        ),
        ([{"name": "a", "kubeconfig": "/k", "router": ["ca_cert"]}], "clusters[a].router: must be a mapping"),
        ([{"name": "a", "kubeconfig": "/k", "router": {"name": "b"}}], "clusters[a].router.name: the cluster's"),
    ],
)
def test_parse_names_the_field(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_clusters(raw)
    assert str(err.value).startswith(message)


def node(name: str, ip: str | None, role: str = "workers", cidrs: tuple[str, ...] = ()) -> Node:
    return Node(name, ip, cidrs, {"zone": "z1"}, role)


ALPHA = ClusterConfig("alpha", "/a", bgp_as=64512)
BETA = ClusterConfig("beta-2", "/b", service_cidrs=("10.112.0.0/12",), pod_cidrs=("10.245.0.0/16",), api_vip="10.0.0.9")


def test_build_groups_hosts_and_vars() -> None:
    reads = [
        ClusterRead(
            ALPHA,
            [
                node("cp1", "10.0.0.10", "control_plane", ("10.244.0.0/24",)),
                node("w1", "10.0.0.21", cidrs=("10.244.1.0/24", "fd00:44:1::/64")),
                node("w2", "10.0.0.22", cidrs=("10.244.1.0/25",)),
            ],
            service_cidrs=["10.96.0.0/12"],
        ),
        ClusterRead(BETA, [node("bw1", "10.0.1.21")], service_cidrs=["10.250.0.0/16"]),
    ]
    model = build_inventory(reads)
    assert model.warnings == []
    assert model.groups == {
        "alpha": ["cp1", "w1", "w2"],
        "alpha_control_plane": ["cp1"],
        "alpha_workers": ["w1", "w2"],
        "control_plane": ["cp1"],
        "workers": ["w1", "w2", "bw1"],
        "beta_2": ["bw1"],
        "beta_2_control_plane": [],
        "beta_2_workers": ["bw1"],
    }
    assert model.hosts["w1"] == {
        "ansible_host": "10.0.0.21",
        "k8router_node_ip": "10.0.0.21",
        "k8router_cluster": "alpha",
        "k8router_node_role": "workers",
        "k8router_pod_cidrs": ["10.244.1.0/24", "fd00:44:1::/64"],
        "k8router_labels": {"zone": "z1"},
    }
    assert model.group_vars["alpha"] == {
        "k8router_cluster_name": "alpha",
        "k8router_cluster_pod_cidrs": ["10.244.0.0/24", "10.244.1.0/24", "fd00:44:1::/64"],
        "k8router_cluster_service_cidrs": ["10.96.0.0/12"],
        "k8router_cluster_bgp_as": 64512,
    }
    assert model.group_vars["beta_2"] == {
        "k8router_cluster_name": "beta-2",
        "k8router_cluster_pod_cidrs": ["10.245.0.0/16"],
        "k8router_cluster_service_cidrs": ["10.112.0.0/12"],
        "k8router_cluster_api_vip": "10.0.0.9",
    }


def test_unread_cluster_and_node_without_address_warn() -> None:
    model = build_inventory([ClusterRead(ALPHA, error="HTTP 401: Unauthorized"), ClusterRead(BETA, [node("x", None)])])
    assert model.warnings == [
        "cluster alpha: not inventoried: HTTP 401: Unauthorized",
        "cluster beta-2: node x has no InternalIP; left out",
    ]
    assert model.hosts == {}
    assert "alpha" not in model.groups


def test_node_in_two_clusters_is_an_error() -> None:
    with pytest.raises(ConfigError, match="node 'w1' is in cluster alpha and in cluster beta-2"):
        build_inventory([ClusterRead(ALPHA, [node("w1", "10.0.0.1")]), ClusterRead(BETA, [node("w1", "10.0.0.2")])])


def test_every_configured_cluster_is_an_entry_of_router_clusters_read_or_not() -> None:
    """One description per cluster: the plugin's entry becomes the router role's, whatever the cluster answered."""
    (gamma,) = parse_clusters(
        [
            {"name": "gamma", "kubeconfig": "/g", "context": "k8router@gamma", "bgp_as": 64520,
             "pod_cidrs": ["10.246.0.0/16"],
             "router": {"ca_cert": "PEM", "api_port": 16443, "k8router": {"weight": 10, "state": "drain"}}},
        ]
    )  # fmt: skip
    model = build_inventory([ClusterRead(ALPHA, [node("w1", "10.0.0.1")]), ClusterRead(gamma, error="HTTP 503")])
    assert model.group_vars["all"][INVENTORY_CLUSTERS] == [
        {"name": "alpha", "kubeconfig": "/a", "bgp_as": 64512},
        {"name": "gamma", "kubeconfig": "/g", "pod_cidrs": ["10.246.0.0/16"], "bgp_as": 64520, "ca_cert": "PEM",
         "api_port": 16443, "k8router": {"context": "k8router@gamma", "weight": 10, "state": "drain"}},
    ]  # fmt: skip
