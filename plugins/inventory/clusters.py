# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory plugin: the nodes of Kubernetes clusters as hosts, grouped per cluster and role."""

from __future__ import annotations

DOCUMENTATION = r"""
name: clusters
short_description: Nodes of Kubernetes clusters as hosts, grouped per cluster and role
version_added: 0.1.0
description:
  - Reads the Nodes of every configured cluster and adds them as hosts (never pods), with
    C(ansible_host) set to the node's InternalIP.
  - Groups per cluster C(<cluster>), C(<cluster>_control_plane) and C(<cluster>_workers) (C(-) in a
    cluster name becomes C(_)), and the all-cluster groups C(control_plane) and C(workers). These are
    the groups the C(k8router.edge.router) role takes BGP neighbours and API backends from.
  - Host variables C(k8router_node_ip), C(k8router_cluster), C(k8router_node_role),
    C(k8router_pod_cidrs) and C(k8router_labels); group variables of C(<cluster>)
    C(k8router_cluster_pod_cidrs) (given, or covering the nodes' pod CIDRs),
    C(k8router_cluster_service_cidrs) (given, or read from the cluster's ServiceCIDR objects),
    C(k8router_cluster_bgp_as) and C(k8router_cluster_api_vip) (given).
  - Group variable of C(all) C(k8router_inventory_clusters), every configured cluster (read or not) as an
    entry of the C(k8router.edge.router) role's C(router_clusters), which is that role's default, so each
    cluster is described once, here. An entry holds C(name), C(kubeconfig) (the same credential serves the
    periodic run; the RBAC of C(rbac/k8router.yaml) reads nodes), the given C(bgp_as), C(api_vip),
    C(pod_cidrs), C(service_cidrs), C(context) (as C(k8router.context)) and whatever the cluster's
    C(router) mapping holds (C(ca_cert), C(api_port), C(k8router), ...), never templated.
  - Nothing read from a cluster is ever templated. ansible-core (2.19 and later) trusts no string an
    inventory plugin sets, and this plugin marks none as trusted.
  - A cluster that cannot be read is reported with a warning naming it and the reason, and the others
    are still inventoried; with O(strict=true) it is an error.
  - The file name must end in C(.clusters.yml) or C(.clusters.yaml).
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
requirements:
  - kubernetes (Python client)
options:
  plugin:
    description: Marks the file as this plugin's configuration.
    required: true
    type: str
    choices: [k8router.edge.clusters]
  clusters:
    description:
      - The clusters, each a mapping with C(name) (a DNS label, required), C(kubeconfig) (path,
        required), C(context), C(control_plane_selector) (label selector, default
        C(node-role.kubernetes.io/control-plane)), C(worker_selector) (default
        C(!node-role.kubernetes.io/control-plane)), C(pod_cidrs), C(service_cidrs), C(bgp_as),
        C(api_vip) and C(router) (a mapping of the cluster's other C(router_clusters) fields but C(name)).
    type: list
    elements: dict
    required: true
  request_timeout:
    description: Seconds to wait for each request to a cluster.
    type: float
    default: 10
"""

EXAMPLES = r"""
# inventory/lab.clusters.yml
plugin: k8router.edge.clusters
clusters:
  - name: alpha
    kubeconfig: /etc/k8router/alpha.kubeconfig
    bgp_as: 64512
    api_vip: 192.0.2.250
    pod_cidrs: [10.244.0.0/16]
    router:
      api_port: 6443
      ca_cert: |
        -----BEGIN CERTIFICATE-----
        ...
      k8router: {weight: 100, ingress_classes: [nginx]}
  - name: beta
    kubeconfig: /etc/k8router/beta.kubeconfig
    context: k8router@beta
keyed_groups:
  - key: k8router_labels['topology.kubernetes.io/zone'] | default('none')
    prefix: zone
compose:
  bgp_peer: k8router_node_role == 'workers'
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/k8router-inventory
"""

import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.k8router.edge.plugins.plugin_utils._clusters import (
    INVENTORY_CLUSTERS,
    ClusterConfig,
    ClusterRead,
    ConfigError,
    InventoryModel,
    Node,
    build_inventory,
    parse_clusters,
)

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
except ImportError:
    K8S_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    K8S_IMPORT_ERROR = None


def _nodes(core: Any, cfg: ClusterConfig, timeout: float) -> list[Node]:
    """Control-plane nodes first; a node matching both selectors counts as control plane."""
    nodes: list[Node] = []
    seen: set[str] = set()
    for role, selector in (("control_plane", cfg.control_plane_selector), ("workers", cfg.worker_selector)):
        for item in core.list_node(label_selector=selector, _request_timeout=timeout).items:
            meta, spec, status = item.metadata, item.spec, item.status
            name = meta.name if meta else None
            if not name or name in seen:
                continue
            seen.add(name)
            addresses = (status.addresses if status else None) or []
            internal = next((a.address for a in addresses if a.type == "InternalIP"), None)
            pod_cidrs = tuple((spec.pod_cidrs or ([spec.pod_cidr] if spec.pod_cidr else [])) if spec else ())
            nodes.append(Node(name, internal, pod_cidrs, dict(meta.labels or {}) if meta else {}, role))
    return nodes


def _service_cidrs(networking: Any, timeout: float) -> list[str]:
    cidrs: list[str] = []
    for item in networking.list_service_cidr(_request_timeout=timeout).items:
        if item.spec and item.spec.cidrs:
            cidrs.extend(item.spec.cidrs)
    return cidrs


def _read_cluster(cfg: ClusterConfig, timeout: float) -> ClusterRead:
    """One cluster's nodes and service CIDRs, or why they could not be read."""
    try:
        api = k8s_config.new_client_from_config(config_file=cfg.kubeconfig, context=cfg.context)  # type: ignore[no-untyped-call]
    except Exception as exc:  # any kubeconfig problem is this cluster's failure
        return ClusterRead(cfg, error=f"kubeconfig {cfg.kubeconfig}: {exc}")
    try:
        nodes = _nodes(k8s_client.CoreV1Api(api), cfg, timeout)
        service_cidrs = [] if cfg.service_cidrs else _service_cidrs(k8s_client.NetworkingV1Api(api), timeout)
        return ClusterRead(cfg, nodes, service_cidrs)
    except Exception as exc:  # unreachable, refused, expired credentials: all count as not read
        reason = getattr(exc, "reason", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        status = getattr(exc, "status", None)
        return ClusterRead(cfg, error=f"HTTP {status}: {reason}" if status else str(reason))
    finally:
        api.close()


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Nodes of Kubernetes clusters as hosts."""

    NAME = "k8router.edge.clusters"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith((".clusters.yml", ".clusters.yaml"))

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        try:
            clusters = parse_clusters(self.get_option("clusters"))
        except ConfigError as exc:
            raise AnsibleParserError(f"{path}: {exc}") from exc

        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        model_data: dict[str, Any] | None = None
        if use_cache:
            try:
                model_data = self._cache[cache_key]
            except KeyError:
                model_data = None
        if model_data is None:
            if K8S_IMPORT_ERROR is not None:
                raise AnsibleParserError(f"{path}: the kubernetes Python client is required:\n{K8S_IMPORT_ERROR}")
            timeout = float(self.get_option("request_timeout"))
            with ThreadPoolExecutor(max_workers=min(8, len(clusters))) as pool:
                reads = list(pool.map(lambda c: _read_cluster(c, timeout), clusters))
            try:
                model = build_inventory(reads)
            except ConfigError as exc:
                raise AnsibleParserError(f"{path}: {exc}") from exc
            failed = [r for r in reads if r.error is not None]
            if failed and self.get_option("strict"):
                raise AnsibleParserError(
                    f"{path}: " + "; ".join(f"cluster {r.config.name} could not be read: {r.error}" for r in failed)
                )
            model_data = {
                "hosts": model.hosts,
                "groups": model.groups,
                "group_vars": model.group_vars,
                "warnings": model.warnings,
            }
            if self.get_option("cache") and not failed:
                self._cache[cache_key] = model_data
        self._populate(InventoryModel(**model_data))

    def _populate(self, model: InventoryModel) -> None:
        for warning in model.warnings:
            self.display.warning(warning)
        for group, members in model.groups.items():
            self.inventory.add_group(group)
            for host in members:
                self.inventory.add_host(host, group=group)
        for group, variables in model.group_vars.items():
            for key, value in variables.items():
                if group == "all" and key == INVENTORY_CLUSTERS:
                    # several files of this plugin: one list, a cluster named twice taken from the last file
                    theirs = self.inventory.groups["all"].get_vars().get(key) or []
                    names = {entry["name"] for entry in value}
                    self.inventory.set_variable(group, key, [e for e in theirs if e.get("name") not in names] + value)
                else:
                    self.inventory.set_variable(group, key, value)
        strict = self.get_option("strict")
        for host, variables in model.hosts.items():
            for key, value in variables.items():
                self.inventory.set_variable(host, key, value)
            hostvars = self.inventory.get_host(host).get_vars()
            self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)
