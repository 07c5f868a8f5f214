# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure core of the ``k8router.edge.clusters`` inventory: configuration and inventory model.

No I/O: the plugin reads the clusters and hands the nodes to ``build_inventory``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DEFAULT_CONTROL_PLANE_SELECTOR = "node-role.kubernetes.io/control-plane"
DEFAULT_WORKER_SELECTOR = "!node-role.kubernetes.io/control-plane"
ROLES = ("control_plane", "workers")


# Variable of group ``all``: every configured cluster as an entry of router_clusters (the router role's default).
INVENTORY_CLUSTERS = "k8router_inventory_clusters"


class ConfigError(ValueError):
    """The inventory configuration is malformed; the message names the field."""


@dataclass(frozen=True)
class ClusterConfig:
    """One cluster of the inventory configuration."""

    name: str
    kubeconfig: str
    context: str | None = None
    control_plane_selector: str = DEFAULT_CONTROL_PLANE_SELECTOR
    worker_selector: str = DEFAULT_WORKER_SELECTOR
    pod_cidrs: tuple[str, ...] = ()
    service_cidrs: tuple[str, ...] = ()
    bgp_as: int | None = None
    api_vip: str | None = None
    # The rest of the cluster's description for the roles (router_clusters' fields but name), as given.
    router: Mapping[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        """Group-name form of the cluster name (Ansible group names take no ``-``)."""
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Node:
    """A node as read from a cluster."""

    name: str
    internal_ip: str | None
    pod_cidrs: tuple[str, ...]
    labels: Mapping[str, str]
    role: str  # one of ROLES


@dataclass
class ClusterRead:
    """What one cluster answered: its nodes, or the reason it could not be read."""

    config: ClusterConfig
    nodes: list[Node] = field(default_factory=list)
    service_cidrs: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class InventoryModel:
    """Hosts with their variables, groups with their hosts and variables, and warnings."""

    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    group_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _cidrs(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: must be a list of CIDRs")
    for item in value:
        try:
            ipaddress.ip_network(item, strict=True)
        except ValueError:
            raise ConfigError(f"{where}: {item!r} is not a CIDR without host bits") from None
    return tuple(value)


def _opt_str(entry: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str | None:
    value = entry.get(key, default)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{where}.{key}: must be a non-empty string")
    return value


def parse_clusters(raw: object) -> list[ClusterConfig]:
    """The ``clusters`` option, checked field by field."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError("clusters: must be a non-empty list of clusters")
    known = set(ClusterConfig.__dataclass_fields__)
    seen: set[str] = set()
    clusters: list[ClusterConfig] = []
    for index, entry in enumerate(raw):
        where = f"clusters[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: must be a mapping")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
        name = entry.get("name")
        if not isinstance(name, str) or not DNS_LABEL.match(name):
            raise ConfigError(f"{where}.name: {name!r} must be a DNS label (a-z, 0-9, '-')")
        where = f"clusters[{name}]"
        if name in seen:
            raise ConfigError(f"{where}.name: cluster {name!r} is listed twice")
        seen.add(name)
        kubeconfig = _opt_str(entry, "kubeconfig", where)
        if kubeconfig is None:
            raise ConfigError(f"{where}.kubeconfig: required")
        bgp_as = entry.get("bgp_as")
        if bgp_as is not None and (isinstance(bgp_as, bool) or not isinstance(bgp_as, int) or not 0 < bgp_as < 2**32):
            raise ConfigError(f"{where}.bgp_as: {bgp_as!r} is not an AS number")
        router = entry.get("router", {})
        if not isinstance(router, Mapping) or not all(isinstance(k, str) for k in router):
            raise ConfigError(f"{where}.router: must be a mapping of router_clusters' fields")
        if "name" in router:
            raise ConfigError(f"{where}.router.name: the cluster's name is its entry's name")
        api_vip = _opt_str(entry, "api_vip", where)
        if api_vip is not None:
            try:
                ipaddress.ip_address(api_vip)
            except ValueError:
                raise ConfigError(f"{where}.api_vip: {api_vip!r} is not an IP address") from None
        clusters.append(
            ClusterConfig(
                name=name,
                kubeconfig=kubeconfig,
                context=_opt_str(entry, "context", where),
                control_plane_selector=_opt_str(entry, "control_plane_selector", where, DEFAULT_CONTROL_PLANE_SELECTOR)
                or DEFAULT_CONTROL_PLANE_SELECTOR,
                worker_selector=_opt_str(entry, "worker_selector", where, DEFAULT_WORKER_SELECTOR)
                or DEFAULT_WORKER_SELECTOR,
                pod_cidrs=_cidrs(entry.get("pod_cidrs"), f"{where}.pod_cidrs"),
                service_cidrs=_cidrs(entry.get("service_cidrs"), f"{where}.service_cidrs"),
                bgp_as=bgp_as,
                api_vip=api_vip,
                router=dict(router),
            )
        )
    return clusters


def router_cluster(cfg: ClusterConfig) -> dict[str, Any]:
    """The cluster as an entry of the router role's ``router_clusters``: what the configuration gives, never
    what was read (so a cluster that cannot be read at inventory time keeps its entry, and nothing changes)."""
    entry: dict[str, Any] = {"name": cfg.name, "kubeconfig": cfg.kubeconfig}
    if cfg.context is not None:
        entry["k8router"] = {"context": cfg.context}
    for key in ("pod_cidrs", "service_cidrs"):
        if getattr(cfg, key):
            entry[key] = list(getattr(cfg, key))
    for key in ("bgp_as", "api_vip"):
        if getattr(cfg, key) is not None:
            entry[key] = getattr(cfg, key)
    for key, value in cfg.router.items():
        if key == "k8router" and isinstance(value, Mapping) and "k8router" in entry:
            entry["k8router"] = {**entry["k8router"], **value}
        else:
            entry[key] = value
    return entry


def _covering(cidrs: Sequence[str]) -> list[str]:
    """The smallest list of networks that are not inside another one of ``cidrs``."""
    nets = sorted({ipaddress.ip_network(c, strict=False) for c in cidrs}, key=lambda n: (n.version, n.prefixlen))
    kept: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for net in nets:
        if not any(net.version == k.version and net.subnet_of(k) for k in kept):  # type: ignore[arg-type]
            kept.append(net)
    return [str(n) for n in kept]


def build_inventory(reads: Sequence[ClusterRead]) -> InventoryModel:
    """Hosts (nodes only), per-cluster and all-cluster groups, and their variables.

    Every configured cluster is an entry of the ``all`` group's INVENTORY_CLUSTERS, read or not. A cluster that
    could not be read adds a warning and nothing else. A node name served by two
    clusters is an error: a host is one machine.
    """
    model = InventoryModel()
    model.group_vars["all"] = {INVENTORY_CLUSTERS: [router_cluster(read.config) for read in reads]}
    owner: dict[str, str] = {}
    for read in reads:
        cfg = read.config
        if read.error is not None:
            model.warnings.append(f"cluster {cfg.name}: not inventoried: {read.error}")
            continue
        members: dict[str, list[str]] = {role: [] for role in ROLES}
        node_pod_cidrs: list[str] = []
        for node in read.nodes:
            if node.name in owner and owner[node.name] != cfg.name:
                raise ConfigError(f"node {node.name!r} is in cluster {owner[node.name]} and in cluster {cfg.name}")
            owner[node.name] = cfg.name
            if node.internal_ip is None:
                model.warnings.append(f"cluster {cfg.name}: node {node.name} has no InternalIP; left out")
                continue
            members[node.role].append(node.name)
            node_pod_cidrs.extend(node.pod_cidrs)
            model.hosts[node.name] = {
                "ansible_host": node.internal_ip,
                "k8router_node_ip": node.internal_ip,
                "k8router_cluster": cfg.name,
                "k8router_node_role": node.role,
                "k8router_pod_cidrs": list(node.pod_cidrs),
                "k8router_labels": dict(node.labels),
            }
        service_cidrs = list(cfg.service_cidrs) or list(read.service_cidrs)
        pod_cidrs = list(cfg.pod_cidrs) or _covering(node_pod_cidrs)
        cluster_vars: dict[str, Any] = {
            "k8router_cluster_name": cfg.name,
            "k8router_cluster_pod_cidrs": pod_cidrs,
            "k8router_cluster_service_cidrs": service_cidrs,
        }
        if cfg.bgp_as is not None:
            cluster_vars["k8router_cluster_bgp_as"] = cfg.bgp_as
        if cfg.api_vip is not None:
            cluster_vars["k8router_cluster_api_vip"] = cfg.api_vip
        model.group_vars[cfg.group] = cluster_vars
        model.groups[cfg.group] = members["control_plane"] + members["workers"]
        for role in ROLES:
            model.groups[f"{cfg.group}_{role}"] = members[role]
            model.groups.setdefault(role, []).extend(members[role])
    return model
