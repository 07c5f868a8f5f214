"""The cluster reader and the status writer against a real API server, as k8router's own identity."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client as k8s
import pytest

from ansible_collections.k8router.edge.plugins.module_utils._cluster import ClusterSource, publish_address, read_cluster
from ansible_collections.k8router.edge.plugins.module_utils._services import LbService, ServicePortSpec
from tests.fixtures import kubelab, kubeobjects
from tests.fixtures.kubeobjects import ServicePort

NS = "lb-read"


@pytest.fixture(scope="module")
def router_kubeconfig(
    clusters: list[kubelab.Cluster], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[kubelab.Cluster, Path]]:
    """beta, with two LoadBalancer services, read through a kubeconfig of k8router's least-privilege identity."""
    beta = {c.name: c for c in clusters}["beta"]
    with beta.api_client() as api:
        kubeobjects.apply_k8router_rbac(api, pod_namespaces=["ingress-nginx"])
        kubeobjects.ensure_namespace(api, NS)
        kubeobjects.create_load_balancer_service(
            api,
            NS,
            "dns",
            [ServicePort("dns-udp", 53, protocol="UDP"), ServicePort("dns-tcp", 53)],
            load_balancer_class="edge",
        )
        kubeobjects.create_load_balancer_service(api, NS, "plain", [ServicePort("http", 80)], load_balancer_class=None)
    token = kubelab.mint_token(beta, "k8router-system", "k8router")
    path = kubelab.write_token_kubeconfig(beta, token, tmp_path_factory.mktemp("router") / "beta.kubeconfig")
    yield beta, path


def source(path: Path) -> ClusterSource:
    return ClusterSource(
        "beta", str(path), None, "ingress-nginx", "ingress-nginx-controller", "http", ("nginx",), 5.0, True
    )


def test_reads_load_balancer_services_and_publishes_an_address(router_kubeconfig: tuple[kubelab.Cluster, Path]) -> None:
    beta, path = router_kubeconfig
    snap = read_cluster(source(path))
    mine = {s.name: s for s in snap.services if s.namespace == NS}
    assert sorted(mine) == ["dns", "plain"]
    dns = mine["dns"]
    assert dns == LbService(
        "beta",
        NS,
        "dns",
        dns.cluster_ip,
        (ServicePortSpec("udp", 53), ServicePortSpec("tcp", 53)),
        "edge",
        cluster_ips=(dns.cluster_ip,),
        uid=dns.uid,
        created=dns.created,
    )
    assert len(dns.uid) == 36 and re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ", dns.created), dns
    assert dns.cluster_ip.startswith(beta.service_cidr.split(".")[0])
    publish_address(source(path), NS, "dns", "192.0.2.5")
    with beta.api_client() as api:
        status = k8s.CoreV1Api(api).read_namespaced_service_status("dns", NS).status
    assert status is not None and status.load_balancer is not None
    assert [i.ip for i in status.load_balancer.ingress or []] == ["192.0.2.5"]
    again = {s.name: s for s in read_cluster(source(path)).services if s.namespace == NS}
    assert again["dns"].status == ("192.0.2.5",)
