from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.k8router.edge.plugins.module_utils._routerset import (
    group_members,
    resolve_clusters,
    router_set_errors,
)

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
NETWORKS = ["10.213.7.0/24", "fd00:7::/64"]


def cluster(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "alpha",
        "api_vip": "10.213.7.250",
        "api_port": 6443,
        "ca_cert": CA,
        "bgp_as": 64512,
        "pod_cidrs": ["10.244.0.0/16"],
        "service_cidrs": ["10.96.0.0/12"],
        "control_plane": [{"name": "cp1", "address": "10.213.7.30"}],
        "workers": [{"name": "w1", "address": "10.213.7.20"}],
    }
    base.update(over)
    return base


def beta(**over: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": "beta",
        "api_vip": "10.213.7.249",
        "pod_cidrs": ["10.245.0.0/16"],
        "service_cidrs": ["10.112.0.0/12"],
        "control_plane": [{"name": "bcp1", "address": "10.213.7.40"}],
        "workers": [{"name": "bw1", "address": "10.213.7.41"}],
    }
    return cluster(**{**fields, **over})


def errors(
    clusters: list[dict[str, Any]], vips: list[object] | None = None, pool: list[object] | None = None
) -> list[str]:
    return router_set_errors(clusters, vips or [], pool or [], NETWORKS, "r1")


def test_consistent_set_has_no_errors() -> None:
    assert errors([cluster(), beta()], ["10.213.7.251", "fd00:7::251"], ["10.213.7.240/30", "10.213.7.236"]) == []


def test_empty_set_has_no_errors() -> None:
    assert router_set_errors([], [], [], [], "r1") == []


CASES: list[tuple[str, list[dict[str, Any]], list[object], list[object], str]] = [
    (
        "vip outside",
        [cluster(api_vip="192.0.2.10")],
        [],
        [],
        "router_clusters[alpha].api_vip: VIP 192.0.2.10 is outside every interface network of r1"
        " (10.213.7.0/24, fd00:7::/64)",
    ),
    (
        "vip not an address",
        [cluster(api_vip="10.213.7.999")],
        [],
        [],
        "router_clusters[alpha].api_vip: '10.213.7.999' is not an IP address",
    ),
    ("ingress vip outside", [], ["10.9.9.9"], [], "router_ingress_vips[0]: VIP 10.9.9.9 is outside"),
    ("ingress vip junk", [], ["x"], [], "router_ingress_vips[0]: 'x' is not an IP address"),
    ("pool outside", [], [], ["10.213.8.0/30"], "router_lb_pool[0]: 10.213.8.0/30 is outside"),
    ("pool straddles", [], [], ["10.213.6.0/23"], "router_lb_pool[0]: 10.213.6.0/23 is outside"),
    ("pool host bits", [], [], ["10.213.7.1/30"], "router_lb_pool[0]: '10.213.7.1/30' is not an address or a CIDR"),
    ("as zero", [cluster(bgp_as=0)], [], [], "router_clusters[alpha].bgp_as: 0 is not a usable AS number"),
    ("as too big", [cluster(bgp_as=4294967296)], [], [], "router_clusters[alpha].bgp_as: 4294967296 is not a usable"),
    ("as trans", [cluster(bgp_as=23456)], [], [], "router_clusters[alpha].bgp_as: 23456 is not a usable"),
    ("as string", [cluster(bgp_as="64512")], [], [], "router_clusters[alpha].bgp_as: '64512' is not a usable"),
    ("as bool", [cluster(bgp_as=True)], [], [], "router_clusters[alpha].bgp_as: True is not a usable"),
    (
        "pod overlaps service",
        [cluster(service_cidrs=["10.244.128.0/17"])],
        [],
        [],
        "router_clusters[alpha].service_cidrs[0]: 10.244.128.0/17 overlaps 10.244.0.0/16"
        " of router_clusters[alpha].pod_cidrs[0]",
    ),
    (
        "clusters overlap",
        [cluster(), beta(pod_cidrs=["10.0.0.0/8"])],
        [],
        [],
        "router_clusters[beta].pod_cidrs[0]: 10.0.0.0/8 overlaps 10.244.0.0/16 of router_clusters[alpha].pod_cidrs[0]",
    ),
    (
        "cidr host bits",
        [cluster(pod_cidrs=["10.244.0.1/16"])],
        [],
        [],
        "router_clusters[alpha].pod_cidrs[0]: '10.244.0.1/16' has host bits set",
    ),
    (
        "worker in two clusters",
        [cluster(), beta(workers=[{"name": "w9", "address": "10.213.7.20"}])],
        [],
        [],
        "router_clusters[beta].workers[0]: worker 10.213.7.20 is also a worker of router_clusters[alpha]",
    ),
    (
        "worker name in two clusters",
        [cluster(), beta(workers=[{"name": "w1", "address": "10.213.7.42"}])],
        [],
        [],
        "router_clusters[beta].workers[0]: worker w1 is also a worker of router_clusters[alpha]",
    ),
    (
        "worker without address",
        [cluster(workers=[{"name": "w1", "address": "w1"}])],
        [],
        [],
        "router_clusters[alpha].workers[0].address: 'w1' is not an IP address",
    ),
    (
        "member not a mapping",
        [cluster(control_plane=["10.0.0.1"])],
        [],
        [],
        "router_clusters[alpha].control_plane[0]: expected a mapping",
    ),
    (
        "name not a label",
        [cluster(name="Alpha_1")],
        [],
        [],
        "router_clusters[Alpha_1].name: 'Alpha_1' must be a DNS label",
    ),
    ("name missing", [cluster(name=None)], [], [], "router_clusters[0].name: None must be a DNS label"),
    (
        "name twice",
        [cluster(), cluster(api_vip="10.213.7.248", pod_cidrs=[], service_cidrs=[], workers=[])],
        [],
        [],
        "router_clusters[alpha].name: cluster 'alpha' is listed twice",
    ),
    (
        "api endpoint twice",
        [cluster(), beta(api_vip="10.213.7.250")],
        [],
        [],
        "router_clusters[beta].api_vip: 10.213.7.250:6443 is also the API endpoint of router_clusters[alpha]",
    ),
    ("no ca", [cluster(ca_cert="")], [], [], "router_clusters[alpha].ca_cert: a PEM CA certificate is needed"),
    ("password quote", [cluster(bgp_password='a"b')], [], [], "router_clusters[alpha].bgp_password: must not contain"),
    (
        "api check certificate without its key",
        [cluster(api_check_certificate="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")],
        [],
        [],
        "router_clusters[alpha].api_check_certificate: a PEM client certificate followed by its key is needed",
    ),
    (
        "password newline",
        [cluster(bgp_password="a\nb")],
        [],
        [],
        "router_clusters[alpha].bgp_password: must not contain",
    ),
]


@pytest.mark.parametrize(("clusters", "vips", "pool", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_inconsistency_is_named(
    clusters: list[dict[str, Any]], vips: list[object], pool: list[object], message: str
) -> None:
    found = errors(clusters, vips, pool)
    assert any(e.startswith(message) for e in found), found


def test_same_api_vip_on_other_port_is_fine() -> None:
    assert errors([cluster(), beta(api_vip="10.213.7.250", api_port=7443)]) == []


def test_group_members_uses_address_or_name() -> None:
    assert group_members(["w1", "w2"], {"w1": "10.0.0.1"}) == [
        {"name": "w1", "address": "10.0.0.1"},
        {"name": "w2", "address": "w2"},
    ]


def test_resolve_clusters_fills_members_from_groups() -> None:
    groups = {"my_cl_control_plane": ["cp1"], "my_cl_workers": ["w1", "w2"], "other_workers": ["x"]}
    addresses = {"cp1": "10.0.0.10", "w1": "10.0.0.21", "w2": "10.0.0.22"}
    explicit = [{"name": "e1", "address": "10.0.0.99"}]
    resolved = resolve_clusters(
        [{"name": "my-cl", "bgp_as": 65000, "pod_cidrs": None}, {"name": "other", "workers": explicit}],
        groups,
        addresses,
    )
    first, second = resolved
    assert first["control_plane"] == [{"name": "cp1", "address": "10.0.0.10"}]
    assert first["workers"] == [{"name": "w1", "address": "10.0.0.21"}, {"name": "w2", "address": "10.0.0.22"}]
    assert first["api_port"] == 6443
    assert first["pod_cidrs"] == []
    assert second["workers"] == explicit
    assert second["control_plane"] == []


def test_resolve_clusters_takes_what_is_left_out_from_the_inventory() -> None:
    inventory_vars = {
        "alpha": {
            "k8router_cluster_pod_cidrs": ["10.244.0.0/16"],
            "k8router_cluster_service_cidrs": ["10.96.0.0/12"],
            "k8router_cluster_bgp_as": 64512,
            "k8router_cluster_api_vip": "10.0.0.250",
        }
    }
    given = {"name": "alpha", "service_cidrs": ["10.100.0.0/16"], "pod_cidrs": []}
    (item,) = resolve_clusters([given], {}, {}, inventory_vars)
    assert item["pod_cidrs"] == ["10.244.0.0/16"]
    assert item["service_cidrs"] == ["10.100.0.0/16"]
    assert item["bgp_as"] == 64512
    assert item["api_vip"] == "10.0.0.250"
