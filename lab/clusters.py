# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's two clusters: real kube-apiserver + etcd (``tests/fixtures/kubelab.py``, started detached on the lab
network's gateway) loaded with what a cluster would hold, and the identities the routers and workers use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import utils as k8s_utils

from lab.parts import Parts
from lab.topology import (
    CLUSTERS,
    GATEWAY,
    HARDENED,
    L4_LABELS,
    L4_NAMESPACE,
    L4_PORTS,
    L4_SERVICE,
    LAB_DIR,
    LB_ADDRESS,
    LB_CLASS,
    REQUEST_ANNOTATION,
    TLS_SECRET,
    ClusterSpec,
)
from tests.fixtures import kubelab
from tests.fixtures import kubeobjects as ko


def clusters_dir() -> Path:
    return LAB_DIR / "clusters"


def running_clusters() -> dict[str, kubelab.Cluster] | None:
    return {c.name: c for c in kubelab.running(clusters_dir())} or None


def start_clusters() -> dict[str, kubelab.Cluster]:
    started = kubelab.start_detached(
        [c.name for c in CLUSTERS],
        clusters_dir(),
        LAB_DIR / "logs" / "kubelab.log",
        service_cidrs=[c.service_cidr for c in CLUSTERS],
        extra_ips=[GATEWAY, *(c.api_vip for c in CLUSTERS)],
        bind_address=GATEWAY,
        hardened=HARDENED,
    )
    return {c.name: c for c in started}


def calico_documents(assets: str) -> list[dict[str, Any]]:
    """calico-node's and the CNI plugin's ServiceAccount + ClusterRole(Binding) from Calico's own manifest."""
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    docs = yaml.safe_load_all((Path(assets) / "manifests" / "calico.yaml").read_text())
    return [
        d
        for d in docs
        if d and d.get("kind") in wanted and d["metadata"]["name"] in ("calico-node", "calico-cni-plugin")
    ]


def load_cluster(cluster: kubelab.Cluster, spec: ClusterSpec, parts: Parts) -> None:
    """What the cluster would hold: a Node per worker, the ingress controller's pods, Ingresses, the L4 Service."""
    with cluster.api_client() as api:
        ko.apply_k8router_rbac(api, pod_namespaces=["ingress-nginx"])
        for doc in calico_documents(parts.calico_assets):
            k8s_utils.create_from_dict(api, doc)  # type: ignore[no-untyped-call]
        for worker in spec.workers:
            ko.create_node(api, worker.name, worker.ip, worker.node_cidr)
        ingress_ips = [(ip, w.name) for w in spec.workers for ip in w.ingress_pod_ips]
        pods = [ko.BackendPod(f"ingress-nginx-controller-{i}", ip, node) for i, (ip, node) in enumerate(ingress_ips)]
        ko.create_ingress_controller(api, "ingress-nginx", pods)
        ko.create_ingress_class(api, "nginx", default=True)
        ko.ensure_namespace(api, "shop")
        for i, host in enumerate(spec.hosts):
            ko.create_ingress(
                api, "shop", f"web-{i}", [ko.IngressRule(host, "web", 80)], tls_hosts=[host], tls_secret=TLS_SECRET
            )
        load_l4_service(api, spec)
    tokens = LAB_DIR / "tokens"
    tokens.mkdir(mode=0o700, parents=True, exist_ok=True)
    day = 24 * 3600
    k8router_token = kubelab.mint_token(
        cluster, ko.K8ROUTER_NAMESPACE, ko.K8ROUTER_SERVICE_ACCOUNT, expiration_seconds=30 * day
    )
    kubelab.write_token_kubeconfig(cluster, k8router_token, tokens / f"{spec.name}-k8router.kubeconfig", "k8router")
    # haproxy's client certificate for its /readyz checks (any authenticated user may read /readyz)
    cert, key = kubelab.issue_client_cert(cluster, "k8router:api-check", out_dir=tokens / spec.name)
    check = tokens / f"{spec.name}-api-check.pem"
    check.write_bytes(cert.read_bytes() + key.read_bytes())
    check.chmod(0o600)
    # kube-proxy's identity, as kubeadm gives it: the user the built-in binding system:node-proxier names.
    cert, key = kubelab.issue_client_cert(cluster, KUBE_PROXY_USER, out_dir=tokens / spec.name)
    kubelab.write_cert_kubeconfig(cluster, cert, key, kube_proxy_kubeconfig(spec.name), KUBE_PROXY_USER)
    calico_token = kubelab.mint_token(cluster, "kube-system", "calico-node", expiration_seconds=30 * day)
    path = tokens / f"{spec.name}-calico-node.token"
    path.write_text(calico_token)
    path.chmod(0o600)


KUBE_PROXY_USER = "system:kube-proxy"


def kube_proxy_kubeconfig(cluster: str) -> Path:
    return LAB_DIR / "tokens" / f"{cluster}-kube-proxy.kubeconfig"


def load_l4_service(api: k8s.ApiClient, spec: ClusterSpec) -> None:
    """The L4 Service (TCP and UDP), the same in every cluster and requesting the same address, so both clusters
    offer it: its pods on each worker and their EndpointSlice (what the kubelet and the EndpointSlice controller
    would write). internalTrafficPolicy Local: the stand-in workers have no pod network between them, so each
    worker's kube-proxy sends what reaches the cluster IP to that worker's own pods, and every answer shows which
    of the routers' next hops carried it."""
    pods = [
        ko.BackendPod(f"echo-{w.name.rsplit('-', 1)[-1]}-{i}", ip, w.name)
        for w in spec.workers
        for i, ip in enumerate(w.echo_pod_ips)
    ]
    for pod in pods:
        ko.create_pod(api, L4_NAMESPACE, pod, labels=L4_LABELS, ports=L4_PORTS)
    ko.create_load_balancer_service(
        api,
        L4_NAMESPACE,
        L4_SERVICE,
        L4_PORTS,
        load_balancer_class=LB_CLASS,
        selector=L4_LABELS,
        annotations={REQUEST_ANNOTATION: LB_ADDRESS},
        internal_traffic_policy="Local",
    )
    ko.create_endpoint_slice(api, L4_NAMESPACE, L4_SERVICE, pods, L4_PORTS)
