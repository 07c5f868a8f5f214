"""The k8router.edge.clusters inventory plugin against real API servers, through ansible-inventory."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml

from tests.fixtures import kubelab, kubeobjects

REPO = Path(__file__).resolve().parents[4]
SELECT = "k8router-inventory-test"
NODES = {
    "alpha": [
        ("inv-a-cp1", "10.201.0.10", "10.244.100.0/24", True),
        ("inv-a-w1", "10.201.0.21", "10.244.101.0/24", False),
        ("inv-a-w2", "10.201.0.22", "10.244.102.0/24", False),
    ],
    "beta": [
        ("inv-b-cp1", "10.202.0.10", "10.245.100.0/24", True),
        ("inv-b-w1", "10.202.0.21", "10.245.101.0/24", False),
    ],
}


@pytest.fixture(scope="module")
def nodes(clusters: list[kubelab.Cluster]) -> Iterator[dict[str, kubelab.Cluster]]:
    by_name = {c.name: c for c in clusters}
    for cluster_name, nodes in NODES.items():
        with by_name[cluster_name].api_client() as api:
            for name, ip, pod_cidr, control_plane in nodes:
                role = "cp" if control_plane else "worker"
                labels = {SELECT: role, "topology.kubernetes.io/zone": f"z-{cluster_name}"}
                kubeobjects.create_node(api, name, ip, pod_cidr, labels=labels)
    yield by_name
    for cluster_name, nodes in NODES.items():
        with by_name[cluster_name].api_client() as api:
            for name, *_rest in nodes:
                k8s.CoreV1Api(api).delete_node(name)


def cluster_entry(cluster: kubelab.Cluster, **extra: Any) -> dict[str, Any]:
    return {
        "name": cluster.name,
        "kubeconfig": str(cluster.kubeconfig),
        "control_plane_selector": f"{SELECT}=cp",
        "worker_selector": f"{SELECT}=worker",
        **extra,
    }


def write_config(tmp_path: Path, clusters: list[dict[str, Any]], **options: Any) -> Path:
    path = tmp_path / "lab.clusters.yml"
    path.write_text(yaml.safe_dump({"plugin": "k8router.edge.clusters", "clusters": clusters, **options}))
    return path


def ansible_inventory(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_INVENTORY_ENABLED": "k8router.edge.clusters",
    }
    return subprocess.run(
        ["ansible-inventory", "-i", str(config), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


UNSAFE = "__ansible_unsafe"


def plain(value: Any) -> Any:
    """``value`` with ansible-inventory's unsafe markers taken off (each marked string asserted)."""
    if isinstance(value, dict):
        if set(value) == {UNSAFE}:
            return value[UNSAFE]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def evaluate(config: Path, expression: str, *extra: str) -> Any:
    """``expression`` templated on localhost with this inventory (and ``extra`` arguments of ``ansible``)."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    result = subprocess.run(
        ["ansible", "-i", str(config), "-i", "localhost,", "localhost", "-c", "local", "-m", "ansible.builtin.debug",
         "-a", f"msg={expression}", *extra],
        capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    value = json.loads(result.stdout.split("=>", 1)[1])["msg"]
    return json.loads(value) if isinstance(value, str) else value


def listing(config: Path) -> dict[str, Any]:
    result = ansible_inventory(config, "--list")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_nodes_become_hosts_grouped_per_cluster_and_role(nodes: dict[str, kubelab.Cluster], tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        [
            cluster_entry(nodes["alpha"], bgp_as=64512, api_vip="192.0.2.250", pod_cidrs=["10.244.0.0/16"]),
            cluster_entry(nodes["beta"], service_cidrs=["10.111.0.0/16"]),
        ],
        keyed_groups=[{"key": "k8router_labels['topology.kubernetes.io/zone']", "prefix": "zone"}],
        compose={"bgp_peer": "k8router_node_role == 'workers'"},
        groups={"big_pods": "k8router_pod_cidrs | length > 0"},
    )
    inv = listing(config)
    assert sorted(inv["alpha_control_plane"]["hosts"]) == ["inv-a-cp1"]
    assert sorted(inv["alpha_workers"]["hosts"]) == ["inv-a-w1", "inv-a-w2"]
    assert sorted(inv["beta_workers"]["hosts"]) == ["inv-b-w1"]
    assert sorted(inv["workers"]["hosts"]) == ["inv-a-w1", "inv-a-w2", "inv-b-w1"]
    assert sorted(inv["control_plane"]["hosts"]) == ["inv-a-cp1", "inv-b-cp1"]
    assert sorted(inv["zone_z_alpha"]["hosts"]) == ["inv-a-cp1", "inv-a-w1", "inv-a-w2"]
    assert len(inv["big_pods"]["hosts"]) == 5

    # every string read from a cluster is marked unsafe: never templated
    raw = inv["_meta"]["hostvars"]["inv-a-w1"]
    assert raw["ansible_host"] == {UNSAFE: "10.201.0.21"}
    assert raw["k8router_labels"][SELECT] == {UNSAFE: "worker"}
    hostvars = plain(inv["_meta"]["hostvars"])
    w1 = hostvars["inv-a-w1"]
    assert w1["ansible_host"] == w1["k8router_node_ip"] == "10.201.0.21"
    assert w1["k8router_cluster"] == "alpha"
    assert w1["k8router_pod_cidrs"] == ["10.244.101.0/24"]
    assert w1["k8router_labels"][SELECT] == "worker"
    assert w1["bgp_peer"] is True
    assert hostvars["inv-a-cp1"]["bgp_peer"] is False
    # group variables of each cluster reach its hosts
    assert w1["k8router_cluster_bgp_as"] == 64512
    assert w1["k8router_cluster_api_vip"] == "192.0.2.250"
    assert w1["k8router_cluster_pod_cidrs"] == ["10.244.0.0/16"]
    # beta: pod CIDRs from its nodes; alpha: service CIDR read from the cluster's ServiceCIDR objects
    b1 = hostvars["inv-b-w1"]
    assert b1["k8router_cluster_pod_cidrs"] == ["10.245.100.0/24", "10.245.101.0/24"]
    assert b1["k8router_cluster_service_cidrs"] == ["10.111.0.0/16"]
    assert w1["k8router_cluster_service_cidrs"] == [nodes["alpha"].service_cidr]


def test_graph(nodes: dict[str, kubelab.Cluster], tmp_path: Path) -> None:
    config = write_config(tmp_path, [cluster_entry(nodes["alpha"]), cluster_entry(nodes["beta"])])
    result = ansible_inventory(config, "--graph")
    assert result.returncode == 0, result.stderr
    graph = result.stdout
    for expected in ("@alpha:", "@alpha_control_plane:", "@alpha_workers:", "@beta_workers:", "@workers:"):
        assert expected in graph, graph
    assert "|--inv-b-w1" in graph


def test_unreachable_cluster_warns_and_the_others_are_inventoried(
    nodes: dict[str, kubelab.Cluster], tmp_path: Path
) -> None:
    dead = tmp_path / "dead.kubeconfig"
    config_dict = yaml.safe_load(nodes["beta"].kubeconfig.read_text())
    port = kubelab.free_ports(1, "127.0.0.1")[0]
    config_dict["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    dead.write_text(yaml.safe_dump(config_dict))
    entries = [
        cluster_entry(nodes["alpha"]),
        {**cluster_entry(nodes["beta"]), "name": "gamma", "kubeconfig": str(dead)},
    ]
    config = write_config(tmp_path, entries, request_timeout=3)
    result = ansible_inventory(config, "--list")
    assert result.returncode == 0, result.stderr
    assert "cluster gamma: not inventoried" in " ".join(result.stderr.split()), result.stderr
    inv = json.loads(result.stdout)
    assert sorted(inv["alpha_workers"]["hosts"]) == ["inv-a-w1", "inv-a-w2"]
    assert "gamma_workers" not in inv

    strict = write_config(tmp_path, entries, request_timeout=3, strict=True)
    result = ansible_inventory(strict, "--list")
    assert result.returncode != 0
    assert "cluster gamma could not be read" in " ".join(result.stderr.split()), result.stderr


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "alpha"}, "clusters[alpha].kubeconfig: required"),
        ({"name": "Alpha", "kubeconfig": "/x"}, "clusters[0].name: 'Alpha' must be a DNS label"),
        ({"name": "alpha", "kubeconfig": "/x", "pod_cidrs": ["10.0.0.1/8"]}, "clusters[alpha].pod_cidrs: '10.0.0.1/8'"),
        ({"name": "alpha", "kubeconfig": "/x", "kubeconfg": "/y"}, "clusters[0]: unknown field(s) kubeconfg"),
    ],
)
def test_malformed_config_names_the_field(tmp_path: Path, entry: dict[str, Any], message: str) -> None:
    result = ansible_inventory(write_config(tmp_path, [entry]), "--list")
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr


def test_cache_serves_when_the_cluster_is_gone(nodes: dict[str, kubelab.Cluster], tmp_path: Path) -> None:
    kubeconfig = tmp_path / "alpha.kubeconfig"
    kubeconfig.write_text(nodes["alpha"].kubeconfig.read_text())
    options = {"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(tmp_path / "cache")}
    config = write_config(tmp_path, [{**cluster_entry(nodes["alpha"]), "kubeconfig": str(kubeconfig)}], **options)
    assert sorted(listing(config)["alpha_workers"]["hosts"]) == ["inv-a-w1", "inv-a-w2"]
    kubeconfig.write_text("not: a kubeconfig\n")
    assert sorted(listing(config)["alpha_workers"]["hosts"]) == ["inv-a-w1", "inv-a-w2"]


def test_router_role_takes_neighbours_and_api_backends_from_the_groups(
    nodes: dict[str, kubelab.Cluster], tmp_path: Path
) -> None:
    """The router role's resolve_clusters filter reads what the plugin produced, with no glue."""
    config = write_config(
        tmp_path, [cluster_entry(nodes["alpha"], bgp_as=64512, api_vip="192.0.2.250", pod_cidrs=["10.244.0.0/16"])]
    )
    (alpha,) = evaluate(
        config, "{{ [{'name': 'alpha'}] | k8router.edge.resolve_clusters(groups, hostvars) | to_json }}"
    )
    assert alpha["workers"] == [
        {"name": "inv-a-w1", "address": "10.201.0.21"},
        {"name": "inv-a-w2", "address": "10.201.0.22"},
    ]
    assert alpha["control_plane"] == [{"name": "inv-a-cp1", "address": "10.201.0.10"}]
    assert alpha["bgp_as"] == 64512
    assert alpha["api_vip"] == "192.0.2.250"
    assert alpha["pod_cidrs"] == ["10.244.0.0/16"]


def test_each_cluster_is_described_once_for_the_roles(nodes: dict[str, kubelab.Cluster], tmp_path: Path) -> None:
    """Every configured cluster, read or not, becomes an entry of router_clusters: the router role's default."""
    dead = tmp_path / "dead.kubeconfig"
    config_dict = yaml.safe_load(nodes["beta"].kubeconfig.read_text())
    config_dict["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{kubelab.free_ports(1, '127.0.0.1')[0]}"
    dead.write_text(yaml.safe_dump(config_dict))
    router = {"ca_cert": "PEM of alpha", "api_port": 16443, "k8router": {"weight": 10, "ingress_classes": ["nginx"]}}
    entries = [
        cluster_entry(nodes["alpha"], bgp_as=64512, api_vip="192.0.2.250", router=router),
        {"name": "gamma", "kubeconfig": str(dead), "bgp_as": 64520, "router": {"k8router": {"state": "drain"}}},
    ]
    config = write_config(tmp_path, entries, request_timeout=3)
    clusters = evaluate(config, "{{ router_clusters | to_json }}", "-e", f"@{REPO / 'roles/router/defaults/main.yml'}")
    assert clusters == [
        {"name": "alpha", "kubeconfig": str(nodes["alpha"].kubeconfig), "bgp_as": 64512, "api_vip": "192.0.2.250",
         **router},
        {"name": "gamma", "kubeconfig": str(dead), "bgp_as": 64520, "k8router": {"state": "drain"}},
    ]  # fmt: skip
