# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A router set's clusters: resolved from inventory groups, and checked for consistency.

Pure functions; the router role calls them through ``plugins/filter/router.py``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._net import (
    IPAddress,
    IPNetwork,
    parse_address,
    parse_network,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
AS_TRANS = 23456
AS_MAX = 4294967295
CLUSTER_DEFAULTS: Mapping[str, Any] = {
    "api_port": 6443,
    "pod_cidrs": [],
    "service_cidrs": [],
    "control_plane": [],
    "workers": [],
    "ca_cert": "",
    "bgp_password": None,
    "bgp_multihop": False,
    "api_check_certificate": "",
}


def group_name(cluster: str, role: str) -> str:
    """The inventory group holding ``role`` nodes of ``cluster`` (as the clusters inventory names it)."""
    return f"{cluster.replace('-', '_')}_{role}"


def group_members(hosts: Iterable[str], addresses: Mapping[str, object]) -> list[dict[str, str]]:
    """``[{name, address}]`` for inventory ``hosts``; ``addresses`` maps a host to its node address.

    A host without an address is addressed by its name, as Ansible itself would.
    """
    members: list[dict[str, str]] = []
    for host in hosts:
        address = addresses.get(host)
        members.append({"name": str(host), "address": str(address) if address else str(host)})
    return members


# Cluster fields the clusters inventory plugin provides as variables of the group <cluster>.
INVENTORY_FIELDS = ("api_vip", "bgp_as", "pod_cidrs", "service_cidrs")


def resolve_clusters(
    clusters: Sequence[Mapping[str, Any]],
    groups: Mapping[str, Sequence[str]],
    addresses: Mapping[str, object],
    inventory_vars: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """``clusters`` with defaults filled in, and what they leave out taken from the inventory.

    Member lists: ``<cluster>_control_plane`` and ``<cluster>_workers`` (``-`` in the name becomes
    ``_``) when the cluster gives no explicit ``control_plane`` or ``workers``. ``api_vip``,
    ``bgp_as``, ``pod_cidrs`` and ``service_cidrs``: the ``k8router_cluster_<field>`` variables of
    the cluster's group (``inventory_vars`` maps a cluster name to them).
    """
    resolved: list[dict[str, Any]] = []
    for cluster in clusters:
        given = {k: v for k, v in cluster.items() if v is not None and v != []}
        name = str(given.get("name", ""))
        known = (inventory_vars or {}).get(name, {})
        from_inventory = {
            f: known[f"k8router_cluster_{f}"] for f in INVENTORY_FIELDS if f"k8router_cluster_{f}" in known
        }
        item: dict[str, Any] = {**CLUSTER_DEFAULTS, **from_inventory, **given}
        for role in ("control_plane", "workers"):
            if not item[role]:
                item[role] = group_members(groups.get(group_name(name, role), []), addresses)
        resolved.append(item)
    return resolved


def _where(cluster: Mapping[str, Any], index: int) -> str:
    name = cluster.get("name")
    return f"router_clusters[{name}]" if isinstance(name, str) and name else f"router_clusters[{index}]"


def _in_any(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


class _Checker:
    """Collects the errors of one router set; each message starts with the variable it is about."""

    def __init__(self, networks: Sequence[str], host: str) -> None:
        self.errors: list[str] = []
        self.nets: list[IPNetwork] = []
        for text in networks:
            try:
                self.nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                continue
        self.shown_nets = ", ".join(networks) or "none"
        self.host = host
        self.api_endpoints: dict[tuple[str, int], str] = {}
        self.cidr_owner: list[tuple[IPNetwork, str]] = []
        self.worker_owner: dict[str, str] = {}
        self.names: set[str] = set()

    def vip(self, label: str, value: object) -> None:
        try:
            address = parse_address(value)
        except ValueError as exc:
            self.errors.append(f"{label}: {exc}")
            return
        if not _in_any(address, self.nets):
            self.errors.append(
                f"{label}: VIP {address} is outside every interface network of {self.host} ({self.shown_nets})"
            )

    def pool(self, label: str, value: object) -> None:
        try:
            net = ipaddress.ip_network(str(value), strict=True)
        except ValueError:
            self.errors.append(f"{label}: {value!r} is not an address or a CIDR without host bits")
            return
        if not (_in_any(net.network_address, self.nets) and _in_any(net.broadcast_address, self.nets)):
            self.errors.append(f"{label}: {net} is outside every interface network of {self.host} ({self.shown_nets})")

    def secrets(self, where: str, cluster: Mapping[str, Any]) -> None:
        """The BGP password and the API check certificate: checked, never quoted back."""
        check_cert = cluster.get("api_check_certificate") or ""
        if check_cert and (
            not isinstance(check_cert, str)
            or "-----BEGIN CERTIFICATE-----" not in check_cert
            or "PRIVATE KEY-----" not in check_cert
        ):
            self.errors.append(f"{where}.api_check_certificate: a PEM client certificate followed by its key is needed")
        password = cluster.get("bgp_password")
        if password is not None and (not isinstance(password, str) or re.search(r'["\\\x00-\x1f]', password)):
            self.errors.append(f"{where}.bgp_password: must not contain quotes, backslashes or control characters")

    def cluster(self, where: str, cluster: Mapping[str, Any]) -> None:
        name = cluster.get("name")
        if not isinstance(name, str) or not DNS_LABEL.match(name):
            self.errors.append(f"{where}.name: {name!r} must be a DNS label (a-z, 0-9, '-', at most 63 characters)")
        elif name in self.names:
            self.errors.append(f"{where}.name: cluster {name!r} is listed twice")
        else:
            self.names.add(name)
        if cluster.get("api_vip") is not None:
            self.vip(f"{where}.api_vip", cluster["api_vip"])
            key = (str(cluster["api_vip"]), int(cluster.get("api_port") or 6443))
            if key in self.api_endpoints:
                self.errors.append(
                    f"{where}.api_vip: {key[0]}:{key[1]} is also the API endpoint of {self.api_endpoints[key]}"
                )
            self.api_endpoints[key] = where
            ca_cert = cluster.get("ca_cert")
            if not isinstance(ca_cert, str) or "-----BEGIN CERTIFICATE-----" not in ca_cert:
                self.errors.append(f"{where}.ca_cert: a PEM CA certificate is needed to health-check the API servers")
        asn = cluster.get("bgp_as")
        if asn is not None and (
            isinstance(asn, bool) or not isinstance(asn, int) or not 1 <= asn <= AS_MAX or asn == AS_TRANS
        ):
            self.errors.append(f"{where}.bgp_as: {asn!r} is not a usable AS number (1 to {AS_MAX}, not {AS_TRANS})")
        self.secrets(where, cluster)
        for field in ("pod_cidrs", "service_cidrs"):
            for j, value in enumerate(cluster.get(field) or []):
                self.cidr(f"{where}.{field}[{j}]", value)
        for field in ("control_plane", "workers"):
            for j, member in enumerate(cluster.get(field) or []):
                self.member(where, f"{where}.{field}[{j}]", member, is_worker=field == "workers")

    def cidr(self, label: str, value: object) -> None:
        try:
            net = parse_network(value)
        except ValueError as exc:
            self.errors.append(f"{label}: {exc}")
            return
        for other, owner in self.cidr_owner:
            if net.version == other.version and net.overlaps(other):
                self.errors.append(f"{label}: {net} overlaps {other} of {owner}")
        self.cidr_owner.append((net, label))

    def member(self, where: str, label: str, member: object, *, is_worker: bool) -> None:
        if not isinstance(member, Mapping):
            self.errors.append(f"{label}: expected a mapping with name and address")
            return
        try:
            address = parse_address(member.get("address"))
        except ValueError as exc:
            self.errors.append(f"{label}.address: {exc}")
            return
        if not is_worker:
            return
        for key in sorted({str(address), str(member.get("name") or address)}):
            owner = self.worker_owner.get(key)
            if owner is not None and owner != where:
                self.errors.append(f"{label}: worker {key} is also a worker of {owner}; a worker serves one cluster")
            self.worker_owner.setdefault(key, where)


def router_set_errors(
    clusters: Sequence[Mapping[str, Any]],
    ingress_vips: Sequence[object],
    lb_pool: Sequence[object],
    networks: Sequence[str],
    host: str = "this router",
) -> list[str]:
    """Every inconsistency of a router set's variables; an empty list means it is consistent.

    ``clusters`` are resolved (see ``resolve_clusters``); ``networks`` are the router's interface
    networks (see ``_net.interface_networks``).
    """
    check = _Checker(networks, host)
    for i, vip in enumerate(ingress_vips):
        check.vip(f"router_ingress_vips[{i}]", vip)
    for i, entry in enumerate(lb_pool):
        check.pool(f"router_lb_pool[{i}]", entry)
    for index, cluster in enumerate(clusters):
        check.cluster(_where(cluster, index), cluster)
    return check.errors
