# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""LoadBalancer services: which ones this router set serves, their addresses, their virtual services. Pure.

Engine-neutral: the IPVS and nftables drivers take :class:`Virtual` values from here and nothing else.

Everything about a Service comes from a cluster user and is hostile until checked. :func:`check_service`
turns one :class:`LbService` (the raw values as read) into a :class:`CheckedService` (parsed addresses,
ports, a scheduler of the allowed list) or refuses it with a warning naming ``cluster/namespace/name`` and
why; a refused Service is left out and nothing else is affected.

Addresses. The router set agrees on them without talking to itself:

1. A requested address (see :data:`ADDRESS_SOURCES`), when valid, of the Service's IP family and in the pool.
2. Otherwise the address published in the Service's ``status.loadBalancer.ingress``, when it is in this set's
   pool: the pool identifies the router set, so an address inside it was written by this set (or is one it
   may adopt); an address outside it was written by another owner, and such a Service is reported and not
   served by this set (its status is never written: never a second writer).
3. Otherwise the lowest free address of the pool, Services taken in a stable order (creation time, then
   ``cluster/namespace/name``, then uid), so every router computes the same answer from the clusters' data
   alone, whatever it remembers locally.

Two claims on one address: the Service whose status already holds it keeps it (else the first in the stable
order). Services of other clusters that request the same address with the same ports join it (one virtual
service served by every cluster offering it); any other claimant is reported and not served, or keeps its
own published address when it has one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

# module_utils may run on targets older than Python 3.10: no `X | Y` at run time.
_IP = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]  # noqa: UP007

REQUEST_ANNOTATION = "k8router.edge/address"
SCHEDULER_ANNOTATION = "k8router.edge/scheduler"
# Annotations users bring from other bare-metal load balancers: comma-separated, at most one address per family.
MIGRATION_ANNOTATIONS = (
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
    "kube-vip.io/loadbalancerIPs",
    "lbipam.cilium.io/ips",
)
SPEC_FIELD = "spec.loadBalancerIP"
# Where a requested address is read from, highest precedence first: the first one set decides.
ADDRESS_SOURCES = (REQUEST_ANNOTATION, *MIGRATION_ANNOTATIONS, SPEC_FIELD)
PROTOCOLS = ("tcp", "udp", "sctp")
MAX_WEIGHT = 65535
_MAX_VALUE = 256  # longest annotation value looked at (two IPv6 addresses need under 100)
_MAX_SHOWN = 64
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_UNORDERED = "\uffff"  # sorts after every RFC 3339 time: Services without a creation time come last


def shown(value: object) -> str:
    """A hostile value for a warning: quoted, cut at 64 characters, control and non-ASCII characters escaped."""
    if not isinstance(value, str):
        return ascii(value)[:_MAX_SHOWN]
    return ascii(value[:_MAX_SHOWN] + "..." if len(value) > _MAX_SHOWN else value)


@dataclass(frozen=True)
class ServicePortSpec:
    protocol: str  # tcp, udp, sctp (anything as read; checked by check_service)
    port: int


@dataclass(frozen=True)
class LbService:
    """A Service of type LoadBalancer as read from one cluster: raw values, nothing checked yet."""

    cluster: str
    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[ServicePortSpec, ...]
    load_balancer_class: str | None = None
    requested: str | None = None  # the k8router.edge/address annotation
    scheduler: str | None = None  # the k8router.edge/scheduler annotation
    status: tuple[str, ...] = ()  # status.loadBalancer.ingress as read (ip, or hostname when it has none)
    load_balancer_ip: str | None = None  # spec.loadBalancerIP
    address_annotations: tuple[tuple[str, str], ...] = ()  # the MIGRATION_ANNOTATIONS present, as read
    cluster_ips: tuple[str, ...] = ()  # spec.clusterIPs, primary first (empty: cluster_ip alone)
    uid: str = ""
    created: str = ""  # metadata.creationTimestamp, RFC 3339 in UTC
    resource_version: str = ""  # metadata.resourceVersion: the precondition of a status write

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
            "load_balancer_ip": self.load_balancer_ip,
            "address_annotations": [list(pair) for pair in self.address_annotations],
            "cluster_ips": list(self.cluster_ips),
            "uid": self.uid,
            "created": self.created,
            "resource_version": self.resource_version,
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
            status=tuple(str(s) for s in data.get("status") or ()),
            load_balancer_ip=data.get("load_balancer_ip"),
            address_annotations=tuple((str(k), str(v)) for k, v in data.get("address_annotations") or ()),
            cluster_ips=tuple(str(a) for a in data.get("cluster_ips") or ()),
            uid=str(data.get("uid") or ""),
            created=str(data.get("created") or ""),
            resource_version=str(data.get("resource_version") or ""),
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
    status_read: dict[str, LbService] = field(default_factory=dict)  # each status write's Service as read


@dataclass(frozen=True)
class LbSettings:
    """The router set's load-balancer settings."""

    pool: tuple[str, ...]
    schedulers: tuple[str, ...] = ("rr", "wrr", "lc", "wlc", "sh", "mh")
    default_scheduler: str = "wrr"


@dataclass(frozen=True)
class CheckedService:
    """A Service that passed :func:`check_service`: every value parsed and within its bounds."""

    key: str
    cluster: str
    cluster_ips: tuple[str, ...]  # compressed, one per family, primary first
    ports: tuple[ServicePortSpec, ...]  # protocol in PROTOCOLS, port 1..65535; sorted, unique
    scheduler: str  # one of the router set's schedulers
    requested: str | None  # compressed, in the pool, of a family of cluster_ips
    request_refused: bool  # a request was made and refused (reported): no allocation of a new address
    status: str | None  # the published address of this set's pool it may keep (of a family of cluster_ips)
    status_raw: tuple[str, ...]
    order: tuple[str, str, str]

    def cluster_ip(self, version: int) -> str | None:
        return next((a for a in self.cluster_ips if ipaddress.ip_address(a).version == version), None)


def _parse_ip(value: object) -> _IP | None:
    """An address, strictly: text only, no scope, no surrounding junk (ipaddress itself refuses leading zeros)."""
    if not isinstance(value, str) or len(value) > 45 or "%" in value:
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _networks(pool: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(net, strict=False) for net in pool]


def pool_contains(pool: Sequence[str], address: str) -> bool:
    ip = _parse_ip(address)
    return ip is not None and any(ip in net for net in _networks(pool))


def _pool_addresses(pool: Sequence[str], version: int) -> Iterator[str]:
    for net in _networks(pool):
        if net.version != version:
            continue
        hosts = net.hosts() if net.num_addresses > 2 else iter(net)
        for ip in hosts:
            yield str(ip)


def served(
    services: Iterable[LbService],
    classes: Sequence[str],
    include_unclassed: bool,
    cluster_classes: Mapping[str, Sequence[str]] | None = None,
) -> list[LbService]:
    """The services of this router set: a served loadBalancerClass, or no class when asked for.

    ``cluster_classes`` maps a cluster to the classes served in it (its ``load_balancer_classes``); a cluster
    missing from it is served the router set's ``classes``. Services without a class follow
    ``include_unclassed`` in every cluster.
    """
    per_cluster = cluster_classes or {}
    return [
        s
        for s in services
        if (s.load_balancer_class is None and include_unclassed)
        or (s.load_balancer_class is not None and s.load_balancer_class in per_cluster.get(s.cluster, classes))
    ]


def _family(version: int) -> str:
    return f"IPv{version}"


def _parse_request(value: str) -> tuple[dict[int, str], str | None]:
    """A comma-separated list of at most one address per family: {version: address}, or why not."""
    if len(value) > _MAX_VALUE:
        return {}, f"is longer than {_MAX_VALUE} characters"
    found: dict[int, str] = {}
    for item in value.split(","):
        text = item.strip(" \t")
        if not text:
            continue
        ip = _parse_ip(text)
        if ip is None:
            return {}, f"{shown(text)} is not an IP address"
        if ip.version in found and found[ip.version] != ip.compressed:
            return {}, f"names two {_family(ip.version)} addresses (at most one per family)"
        found[ip.version] = ip.compressed
    if not found:
        return {}, "names no address"
    return found, None


def _sources(svc: LbService) -> list[tuple[str, str]]:
    """The requested-address sources that are set, in ADDRESS_SOURCES order."""
    values: dict[str, object] = {REQUEST_ANNOTATION: svc.requested, SPEC_FIELD: svc.load_balancer_ip}
    for pair in svc.address_annotations:
        if isinstance(pair, tuple) and len(pair) == 2 and pair[0] in MIGRATION_ANNOTATIONS:
            values.setdefault(pair[0], pair[1])
    found = []
    for source in ADDRESS_SOURCES:
        value = values.get(source)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        found.append((source, value if isinstance(value, str) else repr(value)))
    return found


def _requested(
    svc: LbService, where: str, cluster_ips: Sequence[str], pool: Sequence[str], warnings: list[str]
) -> tuple[str | None, bool]:
    """The requested address, checked: (address, refused).

    The first source set (ADDRESS_SOURCES order) decides; the others that say something else are reported.
    """
    sources = _sources(svc)
    if not sources:
        return None, False
    (source, value), others = sources[0], sources[1:]
    parsed, why = _parse_request(value)
    if why is not None:
        warnings.append(f"{where}: requested address in {source} {why}; request ignored")
        return None, True
    for other, other_value in others:
        if _parse_request(other_value)[0] != parsed:
            warnings.append(
                f"{where}: {other} ({shown(other_value)}) disagrees with {source} ({shown(value)}); using {source}"
            )
    versions = [ipaddress.ip_address(a).version for a in cluster_ips]
    matching = [v for v in versions if v in parsed]
    if not matching:
        wanted = ", ".join(parsed[v] for v in sorted(parsed))
        warnings.append(
            f"{where}: requested address {wanted} ({source}) is not of the Service's IP family "
            f"({'/'.join(_family(v) for v in versions)}, cluster IP {', '.join(cluster_ips)}); request ignored"
        )
        return None, True
    address = parsed[matching[0]]
    left = [parsed[v] for v in sorted(parsed) if v != matching[0]]
    if left:
        warnings.append(
            f"{where}: requested address {', '.join(left)} ({source}) not served: one address per Service "
            f"({address} is)"
        )
    if not pool_contains(pool, address):
        warnings.append(f"{where}: requested address {address} ({source}) is not in the pool; request ignored")
        return None, True
    return address, False


def _status(
    svc: LbService, where: str, cluster_ips: Sequence[str], pool: Sequence[str], warnings: list[str]
) -> tuple[str | None, bool]:
    """The published address this set may keep: (address, foreign). Anything outside the pool is another owner's."""
    raw = svc.status if isinstance(svc.status, tuple) else ()
    parsed = [_parse_ip(s) for s in raw]
    foreign = [raw[i] for i, ip in enumerate(parsed) if ip is None or not pool_contains(pool, ip.compressed)]
    if foreign:
        warnings.append(
            f"{where}: status.loadBalancer.ingress holds {', '.join(shown(s) for s in foreign)}, outside this router "
            "set's pool (published by another owner): not served by this set, status left alone"
        )
        return None, True
    ours = [ip for ip in parsed if ip is not None]
    for version in (ipaddress.ip_address(a).version for a in cluster_ips):
        match = next((ip for ip in ours if ip.version == version), None)
        if match is not None:
            return match.compressed, False
    if ours:
        warnings.append(
            f"{where}: published address {ours[0].compressed} is not of the Service's IP family; a new one is chosen"
        )
    return None, False


def check_service(svc: LbService, lb: LbSettings) -> tuple[CheckedService | None, list[str]]:
    """``svc`` checked into typed values, or None; and the warnings (each names the Service and why)."""
    warnings: list[str] = []
    names = (svc.cluster, svc.namespace, svc.name)
    if not all(isinstance(n, str) and _LABEL.fullmatch(n) for n in names):
        return None, [f"service {'/'.join(shown(n) for n in names)}: names are not DNS labels; not served"]
    where = f"service {svc.key}"
    raw_ips = svc.cluster_ips if isinstance(svc.cluster_ips, tuple) and svc.cluster_ips else (svc.cluster_ip,)
    ips: list[_IP] = []
    for raw in raw_ips:
        ip = _parse_ip(raw)
        if ip is None or ip.version in {i.version for i in ips}:
            return None, [f"{where}: cluster IP {shown(raw)} is not an IP address (one per family); not served"]
        ips.append(ip)
    cluster_ips = tuple(ip.compressed for ip in ips)
    ports: dict[tuple[str, int], ServicePortSpec] = {}
    for spec in svc.ports if isinstance(svc.ports, tuple) else ():
        protocol = spec.protocol.lower() if isinstance(spec.protocol, str) else None
        port = spec.port
        if protocol not in PROTOCOLS or isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            warnings.append(f"{where}: port {shown(spec.port)}/{shown(spec.protocol)} is not a port; left out")
            continue
        ports.setdefault((protocol, port), ServicePortSpec(protocol, port))
    if not ports:
        return None, [*warnings, f"{where}: no usable port; not served"]
    scheduler = lb.default_scheduler
    if svc.scheduler is not None:
        if isinstance(svc.scheduler, str) and svc.scheduler in lb.schedulers:
            scheduler = svc.scheduler
        else:
            warnings.append(
                f"{where}: scheduler {shown(svc.scheduler)} ({SCHEDULER_ANNOTATION}) is not one of "
                f"{', '.join(lb.schedulers)}; using {lb.default_scheduler}"
            )
    status, foreign = _status(svc, where, cluster_ips, lb.pool, warnings)
    if foreign:
        return None, warnings
    requested, refused = _requested(svc, where, cluster_ips, lb.pool, warnings)
    if refused and status:
        warnings[-1] += f"; keeps its published address {status}"
    elif refused:
        warnings[-1] += "; not served"
    created = svc.created if isinstance(svc.created, str) and svc.created else _UNORDERED
    return (
        CheckedService(
            key=svc.key,
            cluster=svc.cluster,
            cluster_ips=cluster_ips,
            ports=tuple(sorted(ports.values(), key=lambda p: (p.protocol, p.port))),
            scheduler=scheduler,
            requested=requested,
            request_refused=refused,
            status=status,
            status_raw=tuple(svc.status),
            order=(created, svc.key, svc.uid if isinstance(svc.uid, str) else ""),
        ),
        warnings,
    )


def _address_inputs(svc: LbService) -> tuple[object, ...]:
    """What a Service's address is decided from (besides the other Services)."""
    return (
        svc.load_balancer_class,
        svc.cluster_ip,
        svc.cluster_ips,
        svc.ports,
        svc.requested,
        svc.load_balancer_ip,
        svc.address_annotations,
        svc.status,
    )


def recheck_status_write(read: LbService, fresh: LbService | None, address: str) -> tuple[bool, str | None]:
    """After a status write met a newer resourceVersion: write ``address`` again, and why not (a warning, or None).

    ``read`` is the Service the address was planned from, ``fresh`` the same Service read again (None: deleted, or
    no longer of type LoadBalancer). The write is repeated only when nothing the address was decided from has
    changed; a status written meanwhile (by another router set or another router of this one) is never
    overwritten; the next run decides again from what it reads.
    """
    if fresh is None:
        return False, None  # gone: nothing to publish
    where = f"service {read.key}"
    if fresh.status == (address,):
        return False, None  # already published (another router of the set)
    if fresh.status != read.status:
        now = ", ".join(shown(s) for s in fresh.status) or "nothing"
        return False, (
            f"{where}: status.loadBalancer.ingress changed since it was read (now {now}): {address} not written, "
            "the status is left alone; the next run decides again"
        )
    if _address_inputs(fresh) != _address_inputs(read):
        return False, (
            f"{where}: changed since it was read (class, addresses or ports): {address} not written; "
            "the next run decides again"
        )
    return True, None


def _address_order(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


def _valid_weight(weight: object) -> bool:
    return isinstance(weight, int) and not isinstance(weight, bool) and 0 <= weight <= MAX_WEIGHT


def _refusal(
    member: CheckedService, holder: CheckedService, group: Sequence[CheckedService], address: str
) -> str | None:
    """Why ``member`` may not join ``holder`` on ``address`` (None: it may)."""
    if holder.requested != address:
        return f"{holder.key} holds it (published) and did not ask to share it"
    if member.cluster in {g.cluster for g in group}:
        return f"{holder.key} holds it and two services of one cluster cannot share an address"
    if member.ports != holder.ports:
        return f"{holder.key} holds it with other ports and protocols"
    version = ipaddress.ip_address(address).version
    same = next((g for g in group if g.cluster_ip(version) == member.cluster_ip(version)), None)
    if same is not None:
        return (
            f"its cluster IP {member.cluster_ip(version)} is also {same.key}'s (the clusters' service ranges overlap)"
        )
    return None


def _groups(
    checked: Sequence[CheckedService], result: LbPlan
) -> tuple[dict[str, list[CheckedService]], list[CheckedService]]:
    """The claimed addresses (requested or published) with the Services holding each, and who must be allocated."""
    claims: dict[str, list[CheckedService]] = {}
    rest: list[CheckedService] = []
    for svc in checked:
        want = svc.requested or svc.status
        if want:
            claims.setdefault(want, []).append(svc)
        elif not svc.request_refused:
            rest.append(svc)
    groups: dict[str, list[CheckedService]] = {}
    fallback: list[CheckedService] = []
    for address in sorted(claims, key=_address_order):
        members = claims[address]  # in the stable order
        holder = next((m for m in members if m.status == address), members[0])
        group = [holder]
        for member in [m for m in members if m is not holder]:
            if member.requested != address:
                result.problems.append(
                    f"service {member.key}: its published address {address} is held by {holder.key}; "
                    "a new one is chosen"
                )
                rest.append(member)
                continue
            why = _refusal(member, holder, group, address)
            if why is None:
                group.append(member)
                continue
            keeps = bool(member.status) and member.status != address
            result.problems.append(
                f"service {member.key}: requested address {address} refused: {why}"
                + (f"; keeps its published address {member.status}" if keeps else "; not served")
            )
            if keeps:
                fallback.append(member)
        groups[address] = group
    for member in fallback:
        if member.status and member.status not in groups:
            groups[member.status] = [member]
        else:
            result.problems.append(f"service {member.key}: its published address {member.status} is taken; not served")
    return groups, sorted(rest, key=lambda s: s.order)


def _allocate(
    rest: Sequence[CheckedService], pool: Sequence[str], groups: dict[str, list[CheckedService]], result: LbPlan
) -> None:
    """The lowest free address of the Service's family (its primary one first), in the stable order."""
    free: dict[int, Iterator[str]] = {}
    for svc in rest:
        address = None
        for version in (ipaddress.ip_address(a).version for a in svc.cluster_ips):
            candidates = free.setdefault(version, (a for a in _pool_addresses(pool, version) if a not in groups))
            address = next(candidates, None)
            if address is not None:
                break
        if address is None:
            families = "/".join(_family(ipaddress.ip_address(a).version) for a in svc.cluster_ips)
            result.problems.append(f"service {svc.key}: no free {families} address in the pool; not served")
            continue
        groups[address] = [svc]


def plan_services(services: Sequence[LbService], lb: LbSettings, weights: Mapping[str, int]) -> LbPlan:
    """Check the services, agree on their addresses, and build the virtual services.

    ``weights`` maps cluster names to the weight of their reals (0 while draining; a cluster missing from
    it is offline). The result depends on ``services``, ``lb`` and ``weights`` only: every router of a set
    computes the same one.
    """
    result = LbPlan()
    checked: list[CheckedService] = []
    read: dict[str, LbService] = {}
    for svc in services:
        if svc.cluster not in weights:
            continue
        if not _valid_weight(weights[svc.cluster]):
            result.problems.append(f"service {svc.key}: cluster weight {shown(weights[svc.cluster])} is out of range")
            continue
        item, warnings = check_service(svc, lb)
        result.problems.extend(warnings)
        if item is not None:
            checked.append(item)
            read.setdefault(item.key, svc)
    keys: dict[str, CheckedService] = {}
    for item in sorted(checked, key=lambda s: s.order):
        if item.key in keys:
            result.problems.append(f"service {item.key}: listed twice; the first is served")
            continue
        keys[item.key] = item
    groups, rest = _groups(list(keys.values()), result)
    _allocate(rest, lb.pool, groups, result)
    for address, members in sorted(groups.items(), key=lambda kv: _address_order(kv[0])):
        version = ipaddress.ip_address(address).version
        for spec in members[0].ports:
            reals = tuple(
                Real(ip, spec.port, weights[m.cluster])
                for m in sorted(members, key=lambda m: m.cluster)
                if (ip := m.cluster_ip(version)) is not None
            )
            result.virtuals.append(Virtual(spec.protocol, address, spec.port, members[0].scheduler, reals))
        for m in members:
            result.addresses[m.key] = address
            if m.status_raw != (address,):
                result.status_writes[m.key] = address
                result.status_read[m.key] = read[m.key]
    result.addresses = dict(sorted(result.addresses.items()))
    return result
