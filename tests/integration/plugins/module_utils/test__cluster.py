"""The cluster reader and the status writer against a real API server, as k8router's own identity."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest

from ansible_collections.k8router.edge.plugins.module_utils import _lb
from ansible_collections.k8router.edge.plugins.module_utils._cluster import ClusterSource, publish_address, read_cluster
from ansible_collections.k8router.edge.plugins.module_utils._errors import StatusConflictError
from ansible_collections.k8router.edge.plugins.module_utils._lb import LbOptions, plan_lb, publish
from ansible_collections.k8router.edge.plugins.module_utils._model import ClusterSettings
from ansible_collections.k8router.edge.plugins.module_utils._services import LbService, LbSettings, ServicePortSpec
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
        resource_version=dns.resource_version,
    )
    assert len(dns.uid) == 36 and re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ", dns.created), dns
    assert dns.cluster_ip.startswith(beta.service_cidr.split(".")[0])
    assert dns.resource_version.isdigit(), dns
    publish_address(source(path), NS, "dns", "192.0.2.5", dns.resource_version)
    with beta.api_client() as api:
        status = k8s.CoreV1Api(api).read_namespaced_service_status("dns", NS).status
    assert status is not None and status.load_balancer is not None
    assert [i.ip for i in status.load_balancer.ingress or []] == ["192.0.2.5"]
    again = {s.name: s for s in read_cluster(source(path)).services if s.namespace == NS}
    assert again["dns"].status == ("192.0.2.5",)


RACE_NS = "lb-race"
RACE_OPTS = LbOptions(LbSettings(("192.0.2.0/28",)), classes=("edge",), write_status=True)


def status_ips(beta: kubelab.Cluster, name: str) -> list[str | None]:
    with beta.api_client() as api:
        status = k8s.CoreV1Api(api).read_namespaced_service_status(name, RACE_NS).status
    assert status is not None and status.load_balancer is not None
    return [i.ip for i in status.load_balancer.ingress or []]


def test_a_status_changed_between_read_and_write_is_never_overwritten(
    router_kubeconfig: tuple[kubelab.Cluster, Path],
) -> None:
    """Router set A reads and plans; before it writes, another set that claims the same class publishes its own
    address, and someone labels a second Service. A's writes carry the resourceVersion it read: the first is
    refused by the API server and, read again, left alone and reported by name; the second is written again
    once (only a label changed). Nothing fails."""
    beta, path = router_kubeconfig
    with beta.api_client() as api:
        kubeobjects.ensure_namespace(api, RACE_NS)
        for name in ("taken", "labelled"):
            kubeobjects.create_load_balancer_service(
                api, RACE_NS, name, [ServicePort("http", 80)], load_balancer_class="edge"
            )
    try:
        snap = read_cluster(source(path))
        snap.services = [s for s in snap.services if s.namespace == RACE_NS]
        lb, _rows = plan_lb(RACE_OPTS, [ClusterSettings("beta")], {"beta": snap})
        assert sorted(lb.status_writes) == ["beta/lb-race/labelled", "beta/lb-race/taken"]
        ours = lb.status_writes["beta/lb-race/taken"]
        # between A's read and A's write
        with beta.api_client() as api:
            kubeobjects.set_load_balancer_ingress(api, RACE_NS, "taken", ["198.51.100.9"])
            k8s.CoreV1Api(api).patch_namespaced_service("labelled", RACE_NS, {"metadata": {"labels": {"team": "blue"}}})
        # the precondition itself: the version A read is refused, nothing written
        taken = next(s for s in snap.services if s.name == "taken")
        with pytest.raises(
            StatusConflictError, match=r"cluster beta: service lb-race/taken: status not written: HTTP 409"
        ):
            publish_address(source(path), RACE_NS, "taken", ours, taken.resource_version)
        assert status_ips(beta, "taken") == ["198.51.100.9"]
        assert publish(lb, [source(path)]) == [
            f"service beta/lb-race/taken: status.loadBalancer.ingress changed since it was read (now '198.51.100.9'): "
            f"{ours} not written, the status is left alone; the next run decides again"
        ]
        assert status_ips(beta, "taken") == ["198.51.100.9"]
        assert status_ips(beta, "labelled") == [lb.status_writes["beta/lb-race/labelled"]]
        # the next run: the other set's Service is reported and not served, its status still left alone
        again = read_cluster(source(path))
        again.services = [s for s in again.services if s.namespace == RACE_NS]
        lb, _rows = plan_lb(RACE_OPTS, [ClusterSettings("beta")], {"beta": again})
        assert lb.status_writes == {} and list(lb.addresses) == ["beta/lb-race/labelled"]
        assert any(p.startswith("service beta/lb-race/taken: status.loadBalancer.ingress holds '198.51.100.9'")
                   for p in lb.problems), lb.problems  # fmt: skip
    finally:
        with beta.api_client() as api:
            k8s.CoreV1Api(api).delete_namespace(RACE_NS)


@pytest.fixture
def race(router_kubeconfig: tuple[kubelab.Cluster, Path]) -> Iterator[tuple[kubelab.Cluster, Path, str]]:
    """A namespace of the test's own with one LoadBalancer Service, web, of the set's class."""
    beta, path = router_kubeconfig
    ns = f"lb-pub-{uuid.uuid4().hex[:6]}"
    with beta.api_client() as api:
        kubeobjects.ensure_namespace(api, ns)
        kubeobjects.create_load_balancer_service(api, ns, "web", [ServicePort("http", 80)], load_balancer_class="edge")
    try:
        yield beta, path, ns
    finally:
        with beta.api_client() as api:
            k8s.CoreV1Api(api).delete_namespace(ns)


def planned(path: Path, ns: str) -> tuple[Any, LbService]:
    snap = read_cluster(source(path))
    snap.services = [s for s in snap.services if s.namespace == ns]
    lb, _rows = plan_lb(RACE_OPTS, [ClusterSettings("beta")], {"beta": snap})
    return lb, next(s for s in snap.services if s.name == "web")


def web_status(beta: kubelab.Cluster, ns: str) -> list[str | None]:
    with beta.api_client() as api:
        status = k8s.CoreV1Api(api).read_namespaced_service_status("web", ns).status
    assert status is not None and status.load_balancer is not None
    return [i.ip for i in status.load_balancer.ingress or []]


def test_a_service_changed_during_both_writes_is_reported_never_written_a_third_time(
    race: tuple[kubelab.Cluster, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone labels the Service just before each of the set's writes: the real API server refuses both
    (409); the second time the Service is reported by name, never written a third time, and nothing fails."""
    beta, path, ns = race
    lb, _web = planned(path, ns)
    writes: list[str] = []

    def labelled_first(src: ClusterSource, namespace: str, name: str, address: str, version: str) -> None:
        writes.append(version)
        with beta.api_client() as api:
            patch = {"metadata": {"labels": {"n": str(len(writes))}}}
            k8s.CoreV1Api(api).patch_namespaced_service(name, namespace, patch)
        publish_address(src, namespace, name, address, version)

    monkeypatch.setattr(_lb, "publish_address", labelled_first)
    assert publish(lb, [source(path)]) == [
        f"cluster beta: service {ns}/web: status not written: HTTP 409: Conflict; it changed again while being "
        "written (twice in one run), the next run decides again"
    ]
    assert len(writes) == 2 and writes[0] != writes[1]
    assert web_status(beta, ns) == []


def test_a_service_deleted_before_the_write_is_no_warning(race: tuple[kubelab.Cluster, Path, str]) -> None:
    beta, path, ns = race
    lb, _web = planned(path, ns)
    with beta.api_client() as api:
        k8s.CoreV1Api(api).delete_namespaced_service("web", ns)
    assert publish(lb, [source(path)]) == []


def test_a_service_read_without_a_resource_version_is_never_written_blind(
    race: tuple[kubelab.Cluster, Path, str],
) -> None:
    """A last-known-good snapshot from before resourceVersions were kept: the Service is read again first. Here
    another set published its address since: it is left alone and reported. Without it, written with the version
    read."""
    beta, path, ns = race
    lb, web = planned(path, ns)
    key = f"beta/{ns}/web"
    lb.status_read[key] = dataclasses.replace(web, resource_version="")
    with beta.api_client() as api:
        kubeobjects.set_load_balancer_ingress(api, ns, "web", ["198.51.100.9"])
    assert publish(lb, [source(path)]) == [
        f"service {key}: status.loadBalancer.ingress changed since it was read (now '198.51.100.9'): "
        f"{lb.status_writes[key]} not written, the status is left alone; the next run decides again"
    ]
    assert web_status(beta, ns) == ["198.51.100.9"]
    with beta.api_client() as api:
        kubeobjects.set_load_balancer_ingress(api, ns, "web", [])
    lb, web = planned(path, ns)
    lb.status_read[key] = dataclasses.replace(web, resource_version="")
    assert publish(lb, [source(path)]) == []
    assert web_status(beta, ns) == [lb.status_writes[key]]
