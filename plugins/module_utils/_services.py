# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""LoadBalancer services: which ones this router set serves, their addresses, their IPVS table. Pure.

A service keeps its address across runs. Services in several clusters that request the same
address form one virtual service served by all of them, but only when their ports and protocols
agree; otherwise each is reported and keeps what it had.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REQUEST_ANNOTATION = "k8router.edge/address"
SCHEDULER_ANNOTATION = "k8router.edge/scheduler"


@dataclass(frozen=True)
class ServicePortSpec:
    protocol: str  # tcp, udp, sctp
    port: int


@dataclass(frozen=True)
class LbService:
    """A Service of type LoadBalancer as read from one cluster."""

    cluster: str
    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[ServicePortSpec, ...]
    load_balancer_class: str | None = None
    requested: str | None = None  # spec.loadBalancerIP or the k8router.edge/address annotation
    scheduler: str | None = None  # the k8router.edge/scheduler annotation
    status: tuple[str, ...] = ()  # status.loadBalancer.ingress IPs as read

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "namespace": self.namespace,
            "name": self.name,
            "cluster_ip": self.cluster_ip,
            "ports": [[p.protocol, p.port] for p in self.ports],
            "load_balancer_class": self.load_balancer_class,
            "requested": self.requested,
            "scheduler": self.scheduler,
            "status": list(self.status),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LbService:
        return cls(
            cluster=str(data["cluster"]),
            namespace=str(data["namespace"]),
            name=str(data["name"]),
            cluster_ip=str(data["cluster_ip"]),
            ports=tuple(ServicePortSpec(str(p), int(n)) for p, n in data["ports"]),
            load_balancer_class=data.get("load_balancer_class"),
            requested=data.get("requested"),
            scheduler=data.get("scheduler"),
            status=tuple(data.get("status") or ()),
        )


@dataclass(frozen=True)
class Real:
    address: str
    port: int
    weight: int


@dataclass(frozen=True)
class Virtual:
    """One virtual service: address:port/protocol -> the service's cluster IP in every cluster offering it."""

    protocol: str
    address: str
    port: int
    scheduler: str
    reals: tuple[Real, ...]


@dataclass
class LbPlan:
    """Addresses per service, the virtual services, the status writes, and what was refused."""

    addresses: dict[str, str] = field(default_factory=dict)  # service key -> address
    virtuals: list[Virtual] = field(default_factory=list)
    status_writes: dict[str, str] = field(default_factory=dict)  # service key -> address to publish
    problems: list[str] = field(default_factory=list)
    frozen: set[str] = field(default_factory=set)  # addresses in conflict: their IPVS entries are left as they are


def pool_contains(pool: Sequence[str], address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in pool)


def _pool_addresses(pool: Sequence[str]) -> Iterable[str]:
    for entry in pool:
        net = ipaddress.ip_network(entry, strict=False)
        hosts = net.hosts() if net.num_addresses > 2 else iter(net)
        for ip in hosts:
            yield str(ip)


def served(services: Iterable[LbService], classes: Sequence[str], include_unclassed: bool) -> list[LbService]:
    """The services of this router set: a served loadBalancerClass, or no class when asked for."""
    return [
        s
        for s in services
        if (s.load_balancer_class in classes) or (s.load_balancer_class is None and include_unclassed)
    ]


@dataclass(frozen=True)
class LbSettings:
    """The router set's load-balancer settings."""

    pool: tuple[str, ...]
    schedulers: tuple[str, ...] = ("rr", "wrr", "lc", "wlc", "sh", "mh")
    default_scheduler: str = "wrr"


def _requested(services: Sequence[LbService], pool: Sequence[str], result: LbPlan) -> dict[str, list[LbService]]:
    """Services that request an address, grouped by it; out-of-pool requests reported."""
    groups: dict[str, list[LbService]] = {}
    for svc in services:
        if not svc.requested:
            continue
        if pool_contains(pool, svc.requested):
            groups.setdefault(svc.requested, []).append(svc)
        else:
            result.problems.append(f"service {svc.key}: requested address {svc.requested} is not in the pool")
    return groups


def _agreed(groups: dict[str, list[LbService]], previous: Mapping[str, str], result: LbPlan) -> None:
    """Keep the groups whose members agree (ports, protocols, one service per cluster); report the others."""
    for address, members in list(groups.items()):
        shapes = {frozenset(m.ports) for m in members}
        one_per_cluster = len({m.cluster for m in members}) == len(members)
        if len(shapes) == 1 and one_per_cluster:
            for m in members:
                result.addresses[m.key] = address
            continue
        why = "their ports and protocols differ" if len(shapes) > 1 else "two services of one cluster"
        names = ", ".join(m.key for m in members)
        result.problems.append(f"address {address}: requested by {names}, but {why}; nothing changes for them")
        for m in members:
            if m.key in previous:
                result.addresses[m.key] = previous[m.key]
                result.frozen.add(previous[m.key])
        del groups[address]


def _allocate(
    rest: Sequence[LbService],
    pool: Sequence[str],
    previous: Mapping[str, str],
    groups: dict[str, list[LbService]],
    result: LbPlan,
) -> None:
    """Addresses for services that request none: the one they had when still free, else the lowest free one."""
    taken = set(groups) | set(result.addresses.values())
    for svc in rest:
        prev = previous.get(svc.key)
        if prev and pool_contains(pool, prev) and prev not in taken:
            result.addresses[svc.key] = prev
            groups[prev] = [svc]
            taken.add(prev)
    free = (a for a in _pool_addresses(pool) if a not in taken)
    for svc in rest:
        if svc.key in result.addresses:
            continue
        address = next(free, None)
        if address is None:
            result.problems.append(f"service {svc.key}: the address pool is exhausted")
            continue
        result.addresses[svc.key] = address
        groups[address] = [svc]


def _virtuals(
    groups: Mapping[str, list[LbService]], weights: Mapping[str, int], lb: LbSettings, result: LbPlan
) -> None:
    """One virtual service per address, port and protocol, with a real per cluster offering it."""
    for address, members in sorted(groups.items()):
        scheduler = next((m.scheduler for m in members if m.scheduler), None) or lb.default_scheduler
        if scheduler not in lb.schedulers:
            allowed = ", ".join(lb.schedulers)
            result.problems.append(
                f"address {address}: scheduler {scheduler!r} is not allowed ({allowed}); using {lb.default_scheduler}"
            )
            scheduler = lb.default_scheduler
        ordered = sorted(members, key=lambda m: m.cluster)
        for spec in sorted(members[0].ports, key=lambda p: (p.protocol, p.port)):
            reals = tuple(Real(m.cluster_ip, spec.port, weights[m.cluster]) for m in ordered)
            result.virtuals.append(Virtual(spec.protocol, address, spec.port, scheduler, reals))
        for m in members:
            if tuple(m.status) != (address,):
                result.status_writes[m.key] = address


def plan_services(
    services: Sequence[LbService], lb: LbSettings, previous: Mapping[str, str], weights: Mapping[str, int]
) -> LbPlan:
    """Allocate addresses and build the virtual services.

    ``previous`` maps service keys to the addresses they had (stability); ``weights`` maps cluster
    names to the weight of their reals (0 while draining; a cluster missing from it is offline).
    """
    result = LbPlan()
    active = [s for s in sorted(services, key=lambda s: s.key) if s.cluster in weights]
    groups = _requested(active, lb.pool, result)
    _agreed(groups, previous, result)
    _allocate([s for s in active if not s.requested], lb.pool, previous, groups, result)
    _virtuals(groups, weights, lb, result)
    return result
