"""The lab's Kubernetes clusters: real API servers, independent, loadable, and k8router's RBAC holds."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.fixtures import kubelab, kubeobjects
from tests.fixtures.kubeobjects import BackendPod, IngressRule, ServicePort

pytestmark = pytest.mark.integration

INGRESS_NS = "ingress-nginx"
_SERIALIZER = k8s.ApiClient()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _eventually[T](fetch: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Poll ``fetch`` until it returns something (for what the API server creates asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing after {timeout}s")
        time.sleep(0.05)


def wire(obj: object) -> Any:
    """The object as the API server sent it (JSON field names, unset fields absent)."""
    return _SERIALIZER.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]


def _names(listing: object) -> set[str]:
    return {item["metadata"]["name"] for item in wire(listing)["items"]}


def _status(call: Callable[[], object]) -> int:
    try:
        call()
    except ApiException as exc:
        return int(exc.status or 0)
    return 200


@pytest.fixture(scope="module")
def alpha(clusters: list[kubelab.Cluster]) -> kubelab.Cluster:
    return clusters[0]


@pytest.fixture(scope="module")
def admin(alpha: kubelab.Cluster) -> Iterator[k8s.ApiClient]:
    with alpha.api_client() as api:
        yield api


# ----------------------------------------------------------------------------------------------------------------
# the clusters


def test_start_is_fast(clusters: list[kubelab.Cluster], record_property: Callable[[str, object], None]) -> None:
    for c in clusters:
        record_property(f"startup_seconds_{c.name}", round(c.startup_seconds, 2))
        assert c.startup_seconds < 30, f"{c.name} took {c.startup_seconds:.1f}s to become ready"


def test_every_cluster_answers(clusters: list[kubelab.Cluster]) -> None:
    assert [c.name for c in clusters] == ["alpha", "beta"]
    for c in clusters:
        assert c.alive()
        assert c.readyz()
        with c.api_client() as api:
            version = k8s.VersionApi(api).get_code()
            assert version.major == "1"
            assert version.git_version.startswith("v1.")
            assert "default" in _names(k8s.CoreV1Api(api).list_namespace())

            # The apiserver itself creates default/kubernetes on the first address of this cluster's service CIDR.
            def kubernetes_service(api: k8s.ApiClient = api) -> Any:
                try:
                    return wire(k8s.CoreV1Api(api).read_namespaced_service("kubernetes", "default"))
                except ApiException as exc:
                    if exc.status == 404:
                        return None
                    raise

            svc = _eventually(kubernetes_service)
            assert svc["spec"]["clusterIP"] == c.kubernetes_service_ip
            assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in ipaddress.ip_network(c.service_cidr)
    assert clusters[0].service_cidr != clusters[1].service_cidr


def test_serving_certificate_names(clusters: list[kubelab.Cluster]) -> None:
    for c in clusters:
        cert = x509.load_pem_x509_certificate(ssl.get_server_certificate(("127.0.0.1", c.api_port)).encode())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"localhost", "kubernetes.default.svc"} <= set(sans.get_values_for_type(x509.DNSName))
        ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
        assert ips == {"127.0.0.1", c.kubernetes_service_ip}


def test_clusters_are_independent(clusters: list[kubelab.Cluster]) -> None:
    alpha, beta = clusters
    name = _unique("only-in-alpha")
    with alpha.api_client() as a, beta.api_client() as b:
        body = k8s.V1ConfigMap.from_dict({"metadata": {"name": name}, "data": {"cluster": "alpha"}})
        assert body is not None
        k8s.CoreV1Api(a).create_namespaced_config_map("default", body)
        assert k8s.CoreV1Api(a).read_namespaced_config_map(name, "default").data == {"cluster": "alpha"}
        assert _status(lambda: k8s.CoreV1Api(b).read_namespaced_config_map(name, "default")) == 404

    # Each cluster has its own CA: alpha's CA does not vouch for beta's API server.
    ctx = ssl.create_default_context(cafile=str(alpha.ca))
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection(("127.0.0.1", beta.api_port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname="127.0.0.1"),
    ):
        pass


def test_kubectl_reads_the_kubeconfig(clusters: list[kubelab.Cluster], kube_binaries: kubelab.Binaries) -> None:
    for c in clusters:
        out = subprocess.run(
            [str(kube_binaries.kubectl), "--kubeconfig", str(c.kubeconfig), "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert out.stdout.strip() == "ok"


def test_detached_clusters_are_found_paused_and_stopped(kube_binaries: kubelab.Binaries, tmp_path: Path) -> None:
    """What the lab does from its own processes: start clusters that outlive the caller, find them again, freeze an
    API server for a while, stop them all."""
    workdir, log = tmp_path / "detached", tmp_path / "kubelab.log"
    assert kubelab.running(workdir) == []
    started = kubelab.start_detached(["solo"], workdir, log, service_cidrs=["10.99.0.0/16"])
    try:
        (found,) = kubelab.running(workdir)
        assert (found.name, found.api_url, found.service_cidr) == ("solo", started[0].api_url, "10.99.0.0/16")
        assert found.readyz()
        with found.paused("kube-apiserver"):
            assert not found.readyz()
        assert _eventually(lambda: True if found.readyz() else None)
    finally:
        assert kubelab.stop_detached(workdir)
    assert kubelab.running(workdir) == []
    assert not kubelab.stop_detached(workdir)
    with pytest.raises(OSError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", found.api_port), timeout=2).close()


# ----------------------------------------------------------------------------------------------------------------
# loaders


@dataclass(frozen=True)
class Loaded:
    nodes: dict[str, str]
    pods: list[BackendPod]
    controller: kubeobjects.IngressController
    app_ns: str
    ingress: str
    default_class_ingress: str
    lb_service: str


@pytest.fixture(scope="module")
def loaded(admin: k8s.ApiClient) -> Loaded:
    nodes = {"worker-1": "10.200.0.11", "worker-2": "10.200.0.12"}
    for i, (name, ip) in enumerate(nodes.items()):
        kubeobjects.create_node(admin, name, ip, f"10.244.{i}.0/24")
    pods = [
        BackendPod("ingress-nginx-controller-a", "10.244.0.5", "worker-1"),
        BackendPod("ingress-nginx-controller-b", "10.244.1.7", "worker-2", ready=False),
    ]
    controller = kubeobjects.create_ingress_controller(admin, INGRESS_NS, pods)
    kubeobjects.create_ingress_class(admin, "nginx", default=True)
    kubeobjects.create_ingress_class(admin, "internal", controller="example.com/internal")
    app_ns = "shop"
    kubeobjects.ensure_namespace(admin, app_ns)
    kubeobjects.create_service(admin, app_ns, "web", [ServicePort("http", 8080)], selector={"app": "web"})
    kubeobjects.create_ingress(
        admin,
        app_ns,
        "web",
        [IngressRule("shop.example.com", "web", 8080), IngressRule("shop.example.com", "web", "http", path="/api")],
        class_name="nginx",
        tls_hosts=["shop.example.com"],
    )
    kubeobjects.create_ingress(admin, app_ns, "web-default", [IngressRule("www.example.com", "web", 8080)])
    kubeobjects.create_load_balancer_service(
        admin,
        app_ns,
        "dns",
        [ServicePort("dns-udp", 53, protocol="UDP"), ServicePort("dns-tcp", 53, protocol="TCP")],
        load_balancer_class="k8router.example/edge",
        selector={"app": "dns"},
    )
    return Loaded(nodes, pods, controller, app_ns, "web", "web-default", "dns")


def test_nodes_have_addresses_and_pod_cidrs(admin: k8s.ApiClient, loaded: Loaded) -> None:
    core = k8s.CoreV1Api(admin)
    for i, (name, ip) in enumerate(loaded.nodes.items()):
        node = wire(core.read_node(name))
        assert node["spec"]["podCIDR"] == f"10.244.{i}.0/24"
        assert node["spec"].get("taints") is None
        assert node["status"]["addresses"] == [
            {"type": "InternalIP", "address": ip},
            {"type": "Hostname", "address": name},
        ]
        assert [(c["type"], c["status"]) for c in node["status"]["conditions"]] == [("Ready", "True")]


def test_pods_report_ip_and_readiness(admin: k8s.ApiClient, loaded: Loaded) -> None:
    core = k8s.CoreV1Api(admin)
    for want in loaded.pods:
        pod = wire(core.read_namespaced_pod(want.name, INGRESS_NS))
        assert pod["spec"]["nodeName"] == want.node
        status = pod["status"]
        assert status["phase"] == "Running"
        assert status["podIP"] == want.ip
        assert status["podIPs"] == [{"ip": want.ip}]
        assert status["hostIP"] == loaded.nodes[want.node]
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions["Ready"] == ("True" if want.ready else "False")


def test_endpoint_slice_lists_the_controller_pods(admin: k8s.ApiClient, loaded: Loaded, alpha: kubelab.Cluster) -> None:
    service = wire(loaded.controller.service)
    slices = k8s.DiscoveryV1Api(admin).list_namespaced_endpoint_slice(
        INGRESS_NS, label_selector=f"kubernetes.io/service-name={service['metadata']['name']}"
    )
    (eps,) = wire(slices)["items"]
    got = {
        (e["addresses"][0], e["conditions"]["ready"], e["nodeName"], e["targetRef"]["name"]) for e in eps["endpoints"]
    }
    assert got == {(p.ip, p.ready, p.node, p.name) for p in loaded.pods}
    assert {(p["name"], p["port"]) for p in eps["ports"]} == {("http", 80), ("https", 443)}
    assert ipaddress.ip_address(service["spec"]["clusterIP"]) in ipaddress.ip_network(alpha.service_cidr)


def test_ingresses_and_classes(admin: k8s.ApiClient, loaded: Loaded) -> None:
    net = k8s.NetworkingV1Api(admin)
    classes = {c["metadata"]["name"]: c["spec"]["controller"] for c in wire(net.list_ingress_class())["items"]}
    # other tests of the session add classes of their own to these clusters
    assert classes.items() >= {"nginx": "k8s.io/ingress-nginx", "internal": "example.com/internal"}.items()
    spec = wire(net.read_namespaced_ingress(loaded.ingress, loaded.app_ns))["spec"]
    assert spec["ingressClassName"] == "nginx"
    (rule,) = spec["rules"]
    assert rule["host"] == "shop.example.com"
    assert [(p["path"], p["pathType"], p["backend"]["service"]["port"]) for p in rule["http"]["paths"]] == [
        ("/", "Prefix", {"number": 8080}),
        ("/api", "Prefix", {"name": "http"}),
    ]
    assert spec["tls"] == [{"hosts": ["shop.example.com"]}]
    # The DefaultIngressClass admission plugin fills in the class marked default.
    default = wire(net.read_namespaced_ingress(loaded.default_class_ingress, loaded.app_ns))
    assert default["spec"]["ingressClassName"] == "nginx"


def test_load_balancer_service(admin: k8s.ApiClient, loaded: Loaded, alpha: kubelab.Cluster) -> None:
    spec = wire(k8s.CoreV1Api(admin).read_namespaced_service(loaded.lb_service, loaded.app_ns))["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["loadBalancerClass"] == "k8router.example/edge"
    assert ipaddress.ip_address(spec["clusterIP"]) in ipaddress.ip_network(alpha.service_cidr)
    assert {(p["name"], p["protocol"], p["port"]) for p in spec["ports"]} == {
        ("dns-udp", "UDP", 53),
        ("dns-tcp", "TCP", 53),
    }
    assert all("nodePort" not in p for p in spec["ports"])


# ----------------------------------------------------------------------------------------------------------------
# k8router's RBAC


@pytest.fixture(scope="module")
def rbac_applied(admin: k8s.ApiClient, loaded: Loaded) -> None:
    kubeobjects.apply_k8router_rbac(admin, pod_namespaces=[INGRESS_NS])
    secret = k8s.V1Secret.from_dict({"metadata": {"name": "tls-shop"}, "stringData": {"tls.key": "not-a-real-key"}})
    assert secret is not None
    k8s.CoreV1Api(admin).create_namespaced_secret(loaded.app_ns, secret)


@pytest.fixture(params=["token", "client-cert"])
def router(
    request: pytest.FixtureRequest, alpha: kubelab.Cluster, rbac_applied: None, tmp_path: Path
) -> Iterator[k8s.ApiClient]:
    """k8router's identity: a TokenRequest token for its ServiceAccount, or a client cert with its user name."""
    ns, sa = kubeobjects.K8ROUTER_NAMESPACE, kubeobjects.K8ROUTER_SERVICE_ACCOUNT
    if request.param == "token":
        client = alpha.api_client(token=kubelab.mint_token(alpha, ns, sa, expiration_seconds=600))
    else:
        cert, key = kubelab.issue_client_cert(alpha, f"system:serviceaccount:{ns}:{sa}", out_dir=tmp_path)
        client = alpha.cert_api_client(cert, key)
    with client:
        yield client


def test_router_identity_is_who_we_think(router: k8s.ApiClient) -> None:
    review = k8s.V1SelfSubjectReview.from_dict({})
    assert review is not None
    got = wire(k8s.AuthenticationV1Api(router).create_self_subject_review(review))
    assert got["status"]["userInfo"]["username"] == "system:serviceaccount:k8router-system:k8router"


def test_router_reads_what_it_serves_from(router: k8s.ApiClient, loaded: Loaded) -> None:
    core, net, disc = k8s.CoreV1Api(router), k8s.NetworkingV1Api(router), k8s.DiscoveryV1Api(router)
    assert _names(core.list_node()) >= set(loaded.nodes)
    assert loaded.lb_service in _names(core.list_service_for_all_namespaces())
    assert loaded.ingress in _names(net.list_ingress_for_all_namespaces())
    assert "nginx" in _names(net.list_ingress_class())
    slices = wire(disc.list_endpoint_slice_for_all_namespaces())["items"]
    assert any(s["metadata"]["namespace"] == INGRESS_NS for s in slices)
    assert _names(core.list_namespaced_pod(INGRESS_NS)) == {p.name for p in loaded.pods}


def test_router_is_denied_secrets_spec_writes_and_other_pods(router: k8s.ApiClient, loaded: Loaded) -> None:
    core = k8s.CoreV1Api(router)
    ns, name = loaded.app_ns, loaded.lb_service
    assert _status(lambda: core.read_namespaced_secret("tls-shop", ns)) == 403
    assert _status(core.list_secret_for_all_namespaces) == 403
    assert _status(lambda: core.list_namespaced_pod(ns)) == 403
    assert _status(core.list_pod_for_all_namespaces) == 403

    svc = core.read_namespaced_service(name, ns)
    changed = wire(svc)
    changed["spec"]["externalIPs"] = ["192.0.2.10"]
    body = k8s.V1Service.from_dict(changed)
    assert body is not None
    assert _status(lambda: core.replace_namespaced_service(name, ns, body)) == 403
    patch = {"spec": {"externalIPs": ["192.0.2.10"]}}
    merge = "application/merge-patch+json"
    assert _status(lambda: core.patch_namespaced_service(name, ns, patch, _content_type=merge)) == 403
    assert _status(lambda: core.delete_namespaced_service(name, ns)) == 403


def test_router_may_publish_service_status(router: k8s.ApiClient, admin: k8s.ApiClient, loaded: Loaded) -> None:
    ns, name = loaded.app_ns, loaded.lb_service
    svc = wire(kubeobjects.set_load_balancer_ingress(router, ns, name, ["192.0.2.53"]))
    assert [i["ip"] for i in svc["status"]["loadBalancer"]["ingress"]] == ["192.0.2.53"]
    # ... and with update (PUT) on the status subresource too; the spec stays as the admin wrote it.
    core = k8s.CoreV1Api(router)
    current = wire(core.read_namespaced_service(name, ns))
    current["status"]["loadBalancer"]["ingress"] = [{"ip": "192.0.2.54"}]
    body = k8s.V1Service.from_dict(current)
    assert body is not None
    core.replace_namespaced_service_status(name, ns, body)
    stored = wire(k8s.CoreV1Api(admin).read_namespaced_service(name, ns))
    assert [i["ip"] for i in stored["status"]["loadBalancer"]["ingress"]] == ["192.0.2.54"]
    assert stored["spec"]["loadBalancerClass"] == "k8router.example/edge"
    assert "externalIPs" not in stored["spec"]
