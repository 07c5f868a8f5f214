# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The model: what each cluster offers, and which clusters serve each host. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._hosts import allowed, host_problem
from ansible_collections.k8router.edge.plugins.module_utils._services import LbService

ADMIN_STATES = ("active", "drain", "offline")


@dataclass(frozen=True)
class Backend:
    """One ready ingress-controller pod: its IP and the controller's port."""

    address: str
    port: int


@dataclass
class ClusterSnapshot:
    """What one cluster offered when it was read: host -> the Ingresses naming it, its backends (the
    controller pods that take new requests), the draining ones (terminating but still serving: they
    finish what they have, weight 0), its LoadBalancer services."""

    name: str
    read_at: float
    hosts: dict[str, list[str]] = field(default_factory=dict)
    backends: list[Backend] = field(default_factory=list)
    services: list[LbService] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    draining: list[Backend] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "read_at": self.read_at,
            "hosts": self.hosts,
            "backends": [[b.address, b.port] for b in self.backends],
            "draining": [[b.address, b.port] for b in self.draining],
            "services": [s.to_json() for s in self.services],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterSnapshot:
        return cls(
            name=str(data["name"]),
            read_at=float(data["read_at"]),
            hosts={str(h): [str(s) for s in src] for h, src in data["hosts"].items()},
            backends=[Backend(str(a), int(p)) for a, p in data["backends"]],
            services=[LbService.from_json(s) for s in data.get("services", [])],
            draining=[Backend(str(a), int(p)) for a, p in data.get("draining", [])],
        )


@dataclass(frozen=True)
class HealthCheck:
    """How haproxy checks each controller pod of a cluster: a TCP connect, or an HTTP request."""

    type: str = "tcp"  # tcp | http
    path: str = "/healthz"
    port: int | None = None  # None: the pod's serving port
    status: int = 200
    inter_ms: int = 2000
    fall: int = 2
    rise: int = 2


@dataclass(frozen=True)
class ClusterSettings:
    """A cluster as configured for this router set."""

    name: str
    weight: int = 100
    state: str = "active"
    allowed_hosts: tuple[str, ...] | None = None
    health_check: HealthCheck = HealthCheck()
    load_balancer_classes: tuple[str, ...] | None = None  # None: the router set's load_balancer.classes


@dataclass(frozen=True)
class Serving:
    """One cluster serving a host."""

    cluster: str
    weight: int  # the cluster's share of the host's requests; 0 while the cluster drains
    backends: tuple[Backend, ...]
    draining: tuple[Backend, ...] = ()  # terminating but serving: in rotation with weight 0


@dataclass
class Model:
    """Every host this router set serves, with the clusters serving it (sorted by name)."""

    hosts: dict[str, list[Serving]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)  # per serving cluster


def build_model(settings: Sequence[ClusterSettings], snapshots: Mapping[str, ClusterSnapshot]) -> Model:
    """Dispatch each host to every cluster that offers it and may claim it.

    ``offline`` clusters serve nothing; ``drain`` ones keep their servers with weight 0 (existing
    connections finish, no new ones). A host claimed outside a cluster's allow-list is refused
    and reported; an invalid host never gets this far (the reader drops it).
    """
    model = Model()
    for cfg in sorted(settings, key=lambda s: s.name):
        snap = snapshots.get(cfg.name)
        if snap is None or cfg.state == "offline":
            continue
        model.health_checks[cfg.name] = cfg.health_check
        for host in sorted(snap.hosts):
            if host_problem(host) is not None:
                model.warnings.append(f"cluster {cfg.name}: host {host!r} refused: {host_problem(host)}")
                continue
            if not allowed(host, cfg.allowed_hosts):
                sources = ", ".join(snap.hosts[host])
                model.warnings.append(
                    f"cluster {cfg.name}: host {host} refused: not in the cluster's allowed_hosts"
                    f" (claimed by {sources})"
                )
                continue
            weight = 0 if cfg.state == "drain" else cfg.weight
            model.hosts.setdefault(host, []).append(
                Serving(cfg.name, weight, tuple(snap.backends), tuple(snap.draining))
            )
    for host, servings in model.hosts.items():
        if not any(s.backends and s.weight for s in servings):
            model.warnings.append(f"host {host}: no ready backend in any active cluster")
    model.hosts = dict(sorted(model.hosts.items()))
    return model
