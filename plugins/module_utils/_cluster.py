# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a cluster: its Ingresses (by class) and its ingress controller's pods.

The only module here that talks to Kubernetes. A list is complete or the cluster counts as
failed (ClusterReadError): never a partial picture.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._errors import ClusterReadError, StatusConflictError
from ansible_collections.k8router.edge.plugins.module_utils._hosts import host_problem
from ansible_collections.k8router.edge.plugins.module_utils._model import Backend, ClusterSnapshot
from ansible_collections.k8router.edge.plugins.module_utils._services import (
    MIGRATION_ANNOTATIONS,
    REQUEST_ANNOTATION,
    SCHEDULER_ANNOTATION,
    LbService,
    ServicePortSpec,
    shown,
)

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    HAS_KUBERNETES = True
except ImportError:  # reported by the module through missing_required_lib
    HAS_KUBERNETES = False

PAGE = 500
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"


@dataclass(frozen=True)
class ClusterSource:
    """Where and how to read one cluster."""

    name: str
    kubeconfig: str
    context: str | None
    controller_namespace: str
    controller_service: str
    controller_port: str  # a port name, or a number as text
    ingress_classes: tuple[str, ...]
    timeout: float = 10.0
    read_services: bool = False  # LoadBalancer services (only when the router set serves them)


def _paged(call: Callable[..., Any], **kwargs: Any) -> list[Any]:
    """Every item of a list call, following continue tokens; an error anywhere fails the whole list."""
    items: list[Any] = []
    token: str | None = None
    while True:
        page = call(limit=PAGE, _continue=token, **kwargs) if token else call(limit=PAGE, **kwargs)
        items.extend(page.items or [])
        token = page.metadata._continue if page.metadata else None
        if not token:
            return items


def _port_matches(port: Any, wanted: str) -> bool:
    return bool(port.name == wanted or (wanted.isdigit() and port.port == int(wanted)))


def offered_hosts(
    ingresses: Sequence[Any], classes: Sequence[Any], served: Sequence[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """host -> ["namespace/name", ...] of the Ingresses of the served classes, and warnings.

    An Ingress without a class belongs to the cluster's default IngressClass (or to the legacy
    class annotation). Invalid hosts are dropped with a warning naming the Ingress.
    """
    default = next(
        (c.metadata.name for c in classes if (c.metadata.annotations or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"),
        None,
    )
    hosts: dict[str, list[str]] = {}
    warnings: list[str] = []
    for ing in ingresses:
        meta, spec = ing.metadata, ing.spec
        cls = (
            (spec.ingress_class_name if spec else None)
            or (meta.annotations or {}).get(LEGACY_CLASS_ANNOTATION)
            or default
        )
        if cls not in served:
            continue
        where = f"{meta.namespace}/{meta.name}"
        names = [r.host for r in (spec.rules or []) if r.host] + [h for t in (spec.tls or []) for h in (t.hosts or [])]
        for host in names:
            problem = host_problem(host)
            if problem is not None:
                warnings.append(f"ingress {where}: host {host!r} ignored: {problem}")
                continue
            sources = hosts.setdefault(host, [])
            if where not in sources:
                sources.append(where)
    return hosts, warnings


def endpoint_backends(slices: Sequence[Any], port: str) -> tuple[list[Backend], list[Backend]]:
    """The controller's endpoints on the controller port as kube-proxy reads them: (ready, draining).

    ``ready`` unset counts as ready, ``serving`` unset as ``ready`` (the EndpointSlice API's rules).
    Terminating endpoints that still serve drain: they stay in rotation with weight 0, so what they
    have finishes and new requests go elsewhere. A cluster with no ready endpoint but serving ones
    sends its requests to those (kube-proxy does the same). Sorted, unique.
    """
    ready: set[Backend] = set()
    serving: set[Backend] = set()
    for eps in slices:
        number = next((p.port for p in (eps.ports or []) if _port_matches(p, port)), None)
        if number is None:
            continue
        for endpoint in eps.endpoints or []:
            cond = endpoint.conditions
            is_ready = cond is None or cond.ready is not False
            is_serving = is_ready if cond is None or cond.serving is None else cond.serving is True
            terminating = cond is not None and cond.terminating is True
            for address in endpoint.addresses or []:
                backend = Backend(address, int(number))
                if is_ready and not terminating:
                    ready.add(backend)
                elif is_serving:
                    serving.add(backend)
    serving -= ready
    if not ready:
        return _sorted(serving), []
    return _sorted(ready), _sorted(serving)


def _sorted(backends: set[Backend]) -> list[Backend]:
    return sorted(backends, key=lambda b: (b.address, b.port))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _created(meta: Any) -> str:
    stamp = getattr(meta, "creation_timestamp", None)
    if isinstance(stamp, datetime.datetime):
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    return ""


def load_balancer_services(cluster: str, services: Sequence[Any]) -> tuple[list[LbService], list[str]]:
    """The Services of type LoadBalancer, their values as read (checked by _services.check_service).

    Only what the L4 planner uses is kept: the address and scheduler annotations (ADDRESS_SOURCES),
    cluster IPs, ports, class, status, uid and creation time. A Service without a cluster IP is skipped
    with a warning.
    """
    found: list[LbService] = []
    warnings: list[str] = []
    for svc in services:
        spec, meta = svc.spec, svc.metadata
        if spec is None or meta is None or spec.type != "LoadBalancer":
            continue
        where = f"service {shown(meta.namespace)}/{shown(meta.name)}"
        if not spec.cluster_ip or spec.cluster_ip == "None":
            warnings.append(f"{where}: no cluster IP; not served")
            continue
        annotations = meta.annotations if isinstance(meta.annotations, dict) else {}
        ports = tuple(
            ServicePortSpec(
                str(p.protocol or "TCP").lower(),
                p.port if isinstance(p.port, int) and not isinstance(p.port, bool) else 0,
            )
            for p in spec.ports or []
        )
        ingress = svc.status.load_balancer.ingress if svc.status and svc.status.load_balancer else None
        found.append(
            LbService(
                cluster=cluster,
                namespace=str(meta.namespace),
                name=str(meta.name),
                cluster_ip=str(spec.cluster_ip),
                ports=ports,
                load_balancer_class=spec.load_balancer_class,
                requested=_text(annotations.get(REQUEST_ANNOTATION)),
                scheduler=_text(annotations.get(SCHEDULER_ANNOTATION)),
                status=tuple(str(i.ip or i.hostname) for i in ingress or [] if i.ip or i.hostname),
                load_balancer_ip=_text(spec.load_balancer_ip),
                address_annotations=tuple(
                    (key, annotations[key]) for key in MIGRATION_ANNOTATIONS if _text(annotations.get(key)) is not None
                ),
                cluster_ips=tuple(str(a) for a in spec.cluster_ips or []),
                uid=str(meta.uid or ""),
                created=_created(meta),
                resource_version=_text(meta.resource_version) or "",
            )
        )
    return found, warnings


# Requests to a cluster are retried once: the client's default (urllib3's three retries of a timed-out GET)
# made one run against a cluster that accepts connections but does not answer last four request timeouts.
RETRIES = 1


def api_client(kubeconfig: str, context: str | None) -> Any:
    """An API client for a kubeconfig and context, retrying a failed request at most RETRIES times."""
    conf = k8s_client.Configuration()
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, context=context, client_configuration=conf, persist_config=False
    )
    conf.retries = RETRIES
    return k8s_client.ApiClient(conf)


def api_error(exc: BaseException) -> str:
    """What went wrong with a request, in a few words: ``HTTP 403: Forbidden``, or the error's first line."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"HTTP {status}: {reason}" if status else str(reason)


def read_cluster(source: ClusterSource) -> ClusterSnapshot:
    """One complete snapshot of ``source``, or ClusterReadError saying why not."""
    if not HAS_KUBERNETES:
        raise ClusterReadError("the kubernetes Python client is not installed")
    try:
        api = api_client(source.kubeconfig, source.context)
    except Exception as exc:
        raise ClusterReadError(f"cluster {source.name}: kubeconfig {source.kubeconfig}: {exc}") from exc
    try:
        net = k8s_client.NetworkingV1Api(api)
        discovery = k8s_client.DiscoveryV1Api(api)
        t = source.timeout
        ingresses = _paged(net.list_ingress_for_all_namespaces, _request_timeout=t)
        classes = _paged(net.list_ingress_class, _request_timeout=t)
        slices = _paged(
            discovery.list_namespaced_endpoint_slice,
            namespace=source.controller_namespace,
            label_selector=f"kubernetes.io/service-name={source.controller_service}",
            _request_timeout=t,
        )
        services = (
            _paged(k8s_client.CoreV1Api(api).list_service_for_all_namespaces, _request_timeout=t)
            if source.read_services
            else []
        )
    except Exception as exc:
        raise ClusterReadError(f"cluster {source.name}: {api_error(exc)}") from exc
    finally:
        api.close()
    return snapshot_of(source, ingresses, classes, slices, services, time.time())


def snapshot_of(  # noqa: PLR0917 (the four lists of a cluster, and when they were read)
    source: ClusterSource,
    ingresses: Sequence[Any],
    classes: Sequence[Any],
    slices: Sequence[Any],
    services: Sequence[Any],
    read_at: float,
) -> ClusterSnapshot:
    """The snapshot of a cluster from its objects as listed (a run) or as watched (the agent)."""
    hosts, warnings = offered_hosts(ingresses, classes, source.ingress_classes)
    lb_services, lb_warnings = load_balancer_services(source.name, services)
    backends, draining = endpoint_backends(slices, source.controller_port)
    return ClusterSnapshot(
        name=source.name,
        read_at=read_at,
        hosts=hosts,
        backends=backends,
        draining=draining,
        services=lb_services,
        warnings=[f"cluster {source.name}: {w}" for w in warnings + lb_warnings],
    )


def publish_address(source: ClusterSource, namespace: str, name: str, address: str, resource_version: str) -> None:
    """Write ``address`` into the Service's status.loadBalancer.ingress (services/status only).

    The patch carries ``resource_version`` (the Service as read): the API server applies it only to that
    version of the Service, so a status written by anyone since is never overwritten. A newer version (HTTP 409)
    or a Service deleted since (HTTP 404) raises StatusConflictError; any other failure ClusterReadError.
    """
    if not HAS_KUBERNETES:
        raise ClusterReadError("the kubernetes Python client is not installed")
    where = f"cluster {source.name}: service {namespace}/{name}: status not written"
    if not resource_version:
        raise StatusConflictError(f"{where}: no resourceVersion read")
    api = api_client(source.kubeconfig, source.context)
    try:
        body = {
            "metadata": {"resourceVersion": resource_version},
            "status": {"loadBalancer": {"ingress": [{"ip": address}]}},
        }
        k8s_client.CoreV1Api(api).patch_namespaced_service_status(
            name, namespace, body, _content_type="application/merge-patch+json", _request_timeout=source.timeout
        )
    except Exception as exc:
        if getattr(exc, "status", None) in (404, 409):
            raise StatusConflictError(f"{where}: {api_error(exc)}") from exc
        raise ClusterReadError(f"{where}: {api_error(exc)}") from exc
    finally:
        api.close()


def read_service(source: ClusterSource, namespace: str, name: str) -> LbService | None:
    """The Service as it is now (None: deleted, or no longer of type LoadBalancer); ClusterReadError if unread."""
    if not HAS_KUBERNETES:
        raise ClusterReadError("the kubernetes Python client is not installed")
    api = api_client(source.kubeconfig, source.context)
    try:
        svc = k8s_client.CoreV1Api(api).read_namespaced_service(name, namespace, _request_timeout=source.timeout)
    except Exception as exc:
        if getattr(exc, "status", None) == 404:
            return None
        where = f"cluster {source.name}: service {namespace}/{name}"
        raise ClusterReadError(f"{where}: not read again after a conflict: {api_error(exc)}") from exc
    finally:
        api.close()
    found, _warnings = load_balancer_services(source.name, [svc])
    return found[0] if found else None


def read_clusters(sources: Sequence[ClusterSource]) -> tuple[dict[str, ClusterSnapshot], dict[str, str]]:
    """Read every cluster in parallel: snapshots of those read, and the errors of the others."""
    snapshots: dict[str, ClusterSnapshot] = {}
    errors: dict[str, str] = {}
    if not sources:
        return snapshots, errors
    with ThreadPoolExecutor(max_workers=min(8, len(sources))) as pool:
        futures = {s.name: pool.submit(read_cluster, s) for s in sources}
    for name, future in futures.items():
        try:
            snapshots[name] = future.result()
        except ClusterReadError as exc:
            errors[name] = str(exc)
    return snapshots, errors
