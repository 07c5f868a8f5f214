"""Loaders: write the objects k8router reads into a lab cluster, through the real API.

A lab cluster has no kubelet, scheduler or controllers, so what they would write is written here instead:
Nodes with addresses, pod CIDR and a Ready condition; ingress-controller Pods whose status (pod IP, phase
Running, Ready condition) is set through the ``pods/status`` subresource; the EndpointSlices the EndpointSlice
controller would publish for the controller's Service. Plus what users write: Namespaces, IngressClasses,
Ingresses, and Services of type LoadBalancer with a ``loadBalancerClass``.

The API server rejects loopback addresses in EndpointSlices, so pods get pod-network addresses such as
10.244.x.y. They are data only here; the lab (lab/lab.py) puts them on its workers' lo, where stand-in servers
answer on them and kube-proxy reaches them from the Services' cluster IPs.

Every function takes a ``kubernetes.client.ApiClient`` (e.g. ``Cluster.api_client()`` from ``lab/kubelab.py``)
and returns what the API server stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

MANAGED_BY = "kubelab"
RBAC_FILE = Path(__file__).resolve().parent.parent / "rbac" / "k8router.yaml"  # the manifest the collection ships
K8ROUTER_NAMESPACE = "k8router-system"
K8ROUTER_SERVICE_ACCOUNT = "k8router"
K8ROUTER_POD_READER_ROLE = "k8router:pod-reader"


class _FromDict(Protocol):
    @classmethod
    def from_dict(cls, obj: dict[str, Any] | None) -> Self | None: ...


def _model[T: _FromDict](cls: type[T], data: dict[str, Any]) -> T:
    obj = cls.from_dict(data)
    if obj is None:
        raise ValueError(f"could not build {cls.__name__} from {data}")
    return obj


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _meta(
    name: str,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _already_exists(exc: ApiException) -> bool:
    return bool(exc.status == 409)


# --------------------------------------------------------------------------------------------------------------
# namespaces and nodes


def ensure_namespace(api: k8s.ApiClient, name: str, labels: Mapping[str, str] | None = None) -> k8s.V1Namespace:
    core = k8s.CoreV1Api(api)
    try:
        return core.create_namespace(_model(k8s.V1Namespace, {"metadata": _meta(name, labels=labels)}))
    except ApiException as exc:
        if not _already_exists(exc):
            raise
        return core.read_namespace(name)


def create_node(
    api: k8s.ApiClient,
    name: str,
    internal_ip: str,
    pod_cidr: str,
    *,
    labels: Mapping[str, str] | None = None,
    control_plane: bool = False,
    ready: bool = True,
) -> k8s.V1Node:
    """A Node as its kubelet would register it: InternalIP + Hostname addresses, podCIDR, a Ready condition."""
    all_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **(labels or {})}
    if control_plane:
        all_labels["node-role.kubernetes.io/control-plane"] = ""
    now = _now()
    status = {
        "addresses": [{"type": "InternalIP", "address": internal_ip}, {"type": "Hostname", "address": name}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "message": "set by kubelab",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
    }
    core = k8s.CoreV1Api(api)
    node = core.create_node(
        _model(
            k8s.V1Node,
            {"metadata": _meta(name, labels=all_labels), "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}},
        )
    )
    # Status is its own subresource; write it there as a kubelet does.
    node.status = _model(k8s.V1NodeStatus, status)
    return core.replace_node_status(name, node)


def node_internal_ip(api: k8s.ApiClient, name: str) -> str:
    node = k8s.CoreV1Api(api).read_node(name)
    for addr in (node.status.addresses if node.status else None) or []:
        if addr.type == "InternalIP":
            return str(addr.address)
    raise ValueError(f"node {name} has no InternalIP")


# --------------------------------------------------------------------------------------------------------------
# pods, services, endpoint slices


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target_port: int | None = None
    protocol: str = "TCP"

    def service_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.port,
            "targetPort": self.target_port or self.port,
            "protocol": self.protocol,
        }

    def slice_dict(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.target_port or self.port, "protocol": self.protocol}


HTTP_PORTS = (ServicePort("http", 80), ServicePort("https", 443))


@dataclass(frozen=True)
class BackendPod:
    """A pod that is 'running' on ``node`` with ``ip`` (a pod-network address, not loopback)."""

    name: str
    ip: str
    node: str
    ready: bool = True


def create_pod(
    api: k8s.ApiClient,
    namespace: str,
    pod: BackendPod,
    *,
    labels: Mapping[str, str],
    ports: Sequence[ServicePort] = (),
    image: str = "kubelab/placeholder:0",
) -> k8s.V1Pod:
    """Create the pod bound to its node, then set its status (IP, Running, Ready) via ``pods/status``."""
    container = {
        "name": "main",
        "image": image,
        "ports": [{"name": p.name, "containerPort": p.target_port or p.port, "protocol": p.protocol} for p in ports],
    }
    body = {
        "metadata": _meta(pod.name, namespace, labels),
        "spec": {"nodeName": pod.node, "containers": [container]},
    }
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod(namespace, _model(k8s.V1Pod, body))
    return set_pod_status(api, namespace, pod)


def set_pod_status(api: k8s.ApiClient, namespace: str, pod: BackendPod) -> k8s.V1Pod:
    """What the kubelet reports for a started pod: phase Running, pod/host IPs, Ready per ``pod.ready``."""
    core = k8s.CoreV1Api(api)
    current = core.read_namespaced_pod(pod.name, namespace)
    host_ip = node_internal_ip(api, pod.node)
    now = _now()
    ready = "True" if pod.ready else "False"
    conditions = [
        ("PodScheduled", "True"),
        ("Initialized", "True"),
        ("ContainersReady", ready),
        ("Ready", ready),
    ]
    containers = current.spec.containers if current.spec else []
    current.status = _model(
        k8s.V1PodStatus,
        {
            "phase": "Running",
            "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": now,
            "conditions": [{"type": t, "status": s, "lastTransitionTime": now} for t, s in conditions],
            "containerStatuses": [
                {
                    "name": c.name,
                    "image": c.image,
                    "imageID": "",
                    "ready": pod.ready,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                }
                for c in containers
            ],
        },
    )
    return core.replace_namespaced_pod_status(pod.name, namespace, current)


def create_service(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    ports: Sequence[ServicePort],
    *,
    selector: Mapping[str, str] | None = None,
    service_type: str = "ClusterIP",
    load_balancer_class: str | None = None,
    allocate_node_ports: bool | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    internal_traffic_policy: str | None = None,
) -> k8s.V1Service:
    spec: dict[str, Any] = {"type": service_type, "ports": [p.service_dict() for p in ports]}
    if selector:
        spec["selector"] = dict(selector)
    if load_balancer_class is not None:
        spec["loadBalancerClass"] = load_balancer_class
    if allocate_node_ports is not None:
        spec["allocateLoadBalancerNodePorts"] = allocate_node_ports
    if internal_traffic_policy is not None:
        spec["internalTrafficPolicy"] = internal_traffic_policy
    body = {"metadata": _meta(name, namespace, labels, annotations), "spec": spec}
    return k8s.CoreV1Api(api).create_namespaced_service(namespace, _model(k8s.V1Service, body))


def create_load_balancer_service(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    ports: Sequence[ServicePort],
    *,
    load_balancer_class: str | None,
    selector: Mapping[str, str] | None = None,
    allocate_node_ports: bool = False,
    annotations: Mapping[str, str] | None = None,
    internal_traffic_policy: str | None = None,
) -> k8s.V1Service:
    """A ``type: LoadBalancer`` Service; the API server allocates its ClusterIP (and node ports if asked)."""
    return create_service(
        api,
        namespace,
        name,
        ports,
        selector=selector,
        service_type="LoadBalancer",
        load_balancer_class=load_balancer_class,
        allocate_node_ports=allocate_node_ports,
        annotations=annotations,
        internal_traffic_policy=internal_traffic_policy,
    )


def set_load_balancer_ingress(api: k8s.ApiClient, namespace: str, name: str, ips: Sequence[str]) -> k8s.V1Service:
    """Publish ``status.loadBalancer.ingress`` (what k8router does for the services it serves)."""
    body = {"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}
    return k8s.CoreV1Api(api).patch_namespaced_service_status(
        name, namespace, body, _content_type="application/merge-patch+json"
    )


def create_endpoint_slice(
    api: k8s.ApiClient,
    namespace: str,
    service: str,
    pods: Sequence[BackendPod],
    ports: Sequence[ServicePort],
    *,
    name: str | None = None,
) -> k8s.V1EndpointSlice:
    """The EndpointSlice the EndpointSlice controller would publish for ``service`` and these pods."""
    endpoints = [
        {
            "addresses": [p.ip],
            "conditions": {"ready": p.ready, "serving": p.ready, "terminating": False},
            "nodeName": p.node,
            "targetRef": {"kind": "Pod", "namespace": namespace, "name": p.name},
        }
        for p in pods
    ]
    labels = {"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": MANAGED_BY}
    body = {
        "metadata": _meta(name or f"{service}-kubelab", namespace, labels),
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [p.slice_dict() for p in ports],
    }
    return k8s.DiscoveryV1Api(api).create_namespaced_endpoint_slice(namespace, _model(k8s.V1EndpointSlice, body))


@dataclass
class IngressController:
    """What :func:`create_ingress_controller` wrote."""

    namespace: str
    service: k8s.V1Service
    pods: list[k8s.V1Pod] = field(default_factory=list)
    endpoint_slice: k8s.V1EndpointSlice | None = None


def create_ingress_controller(
    api: k8s.ApiClient,
    namespace: str,
    pods: Sequence[BackendPod],
    *,
    name: str = "ingress-nginx-controller",
    ports: Sequence[ServicePort] = HTTP_PORTS,
) -> IngressController:
    """An ingress controller as k8router sees it: its Service, its running Pods, and their EndpointSlice."""
    ensure_namespace(api, namespace)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "controller"}
    service = create_service(api, namespace, name, ports, selector=labels, labels=labels)
    created = [create_pod(api, namespace, p, labels=labels, ports=ports) for p in pods]
    eps = create_endpoint_slice(api, namespace, name, pods, ports)
    return IngressController(namespace, service, created, eps)


# --------------------------------------------------------------------------------------------------------------
# ingress


def create_ingress_class(
    api: k8s.ApiClient, name: str, controller: str = "k8s.io/ingress-nginx", *, default: bool = False
) -> k8s.V1IngressClass:
    meta = _meta(name)
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    body = {"metadata": meta, "spec": {"controller": controller}}
    return k8s.NetworkingV1Api(api).create_ingress_class(_model(k8s.V1IngressClass, body))


@dataclass(frozen=True)
class IngressRule:
    host: str
    service: str
    port: int | str
    path: str = "/"
    path_type: str = "Prefix"


def create_ingress(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    rules: Sequence[IngressRule],
    *,
    class_name: str | None = None,
    tls_hosts: Sequence[str] = (),
    tls_secret: str | None = None,
) -> k8s.V1Ingress:
    """A networking.k8s.io/v1 Ingress; ``class_name=None`` leaves the class to the DefaultIngressClass plugin."""
    spec: dict[str, Any] = {"rules": []}
    by_host: dict[str, list[dict[str, Any]]] = {}
    for rule in rules:
        port = {"number": rule.port} if isinstance(rule.port, int) else {"name": rule.port}
        backend = {"service": {"name": rule.service, "port": port}}
        by_host.setdefault(rule.host, []).append({"path": rule.path, "pathType": rule.path_type, "backend": backend})
    spec["rules"] = [{"host": host, "http": {"paths": paths}} for host, paths in by_host.items()]
    if class_name is not None:
        spec["ingressClassName"] = class_name
    if tls_hosts:
        tls: dict[str, Any] = {"hosts": list(tls_hosts)}
        if tls_secret:
            tls["secretName"] = tls_secret
        spec["tls"] = [tls]
    body = {"metadata": _meta(name, namespace), "spec": spec}
    return k8s.NetworkingV1Api(api).create_namespaced_ingress(namespace, _model(k8s.V1Ingress, body))


# --------------------------------------------------------------------------------------------------------------
# k8router's RBAC


def load_rbac_documents(
    pod_namespaces: Sequence[str] = ("ingress-nginx",), path: Path = RBAC_FILE
) -> list[dict[str, Any]]:
    """``rbac/k8router.yaml``, the shipped manifest, with its pod-reader Role + RoleBinding repeated for each
    ``pod_namespaces``."""
    docs = [d for d in yaml.safe_load(path.read_text())["items"] if d]
    out: list[dict[str, Any]] = []
    for doc in docs:
        if doc["kind"] in ("Role", "RoleBinding") and doc["metadata"]["name"] == K8ROUTER_POD_READER_ROLE:
            for ns in pod_namespaces:
                copy = yaml.safe_load(yaml.safe_dump(doc))
                copy["metadata"]["namespace"] = ns
                out.append(copy)
        else:
            out.append(doc)
    return out


def apply_k8router_rbac(api: k8s.ApiClient, pod_namespaces: Sequence[str] = ("ingress-nginx",)) -> None:
    """Create k8router's Namespace, ServiceAccount, ClusterRole(Binding), per-namespace pod-reader Roles and its
    token-renewer Role; what exists already is left as it is (applying twice is fine)."""
    core = k8s.CoreV1Api(api)
    rbac = k8s.RbacAuthorizationV1Api(api)
    for ns in pod_namespaces:
        ensure_namespace(api, ns)
    for doc in load_rbac_documents(pod_namespaces):
        kind, ns = doc["kind"], doc["metadata"].get("namespace")
        creators: dict[str, Any] = {
            "ServiceAccount": lambda d, n: core.create_namespaced_service_account(n, _model(k8s.V1ServiceAccount, d)),
            "ClusterRole": lambda d, n: rbac.create_cluster_role(_model(k8s.V1ClusterRole, d)),
            "ClusterRoleBinding": lambda d, n: rbac.create_cluster_role_binding(_model(k8s.V1ClusterRoleBinding, d)),
            "Role": lambda d, n: rbac.create_namespaced_role(n, _model(k8s.V1Role, d)),
            "RoleBinding": lambda d, n: rbac.create_namespaced_role_binding(n, _model(k8s.V1RoleBinding, d)),
        }
        if kind == "Namespace":
            ensure_namespace(api, doc["metadata"]["name"], doc["metadata"].get("labels"))
        elif kind in creators:
            try:
                creators[kind](doc, ns)
            except ApiException as exc:
                if not _already_exists(exc):
                    raise
        else:
            raise ValueError(f"{RBAC_FILE}: unexpected kind {kind}")
