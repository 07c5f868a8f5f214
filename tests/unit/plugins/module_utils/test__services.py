"""LoadBalancer services: selection, allocation, shared addresses, conflicts, virtual services."""

from __future__ import annotations

from ansible_collections.k8router.edge.plugins.module_utils._services import (
    LbService,
    LbSettings,
    Real,
    ServicePortSpec,
    Virtual,
    plan_services,
    served,
)

TCP80 = (ServicePortSpec("tcp", 80),)
DNS = (ServicePortSpec("udp", 53), ServicePortSpec("tcp", 53))
LB = LbSettings(pool=("192.0.2.0/29",))
WEIGHTS = {"alpha": 100, "beta": 100}


def svc(
    cluster: str,
    name: str,
    ports: tuple[ServicePortSpec, ...] = TCP80,
    *,
    cls: str | None = "edge",
    requested: str | None = None,
    scheduler: str | None = None,
    ip: str | None = None,
    status: tuple[str, ...] = (),
) -> LbService:
    return LbService(
        cluster, "ns", name, ip or f"10.96.{len(cluster)}.{len(name)}", ports, cls, requested, scheduler, status
    )


def test_served_by_class() -> None:
    items = [svc("alpha", "a"), svc("alpha", "b", cls=None), svc("alpha", "c", cls="other")]
    assert [s.name for s in served(items, ["edge"], include_unclassed=False)] == ["a"]
    assert [s.name for s in served(items, ["edge"], include_unclassed=True)] == ["a", "b"]


def test_lowest_free_addresses_and_stability() -> None:
    first = plan_services([svc("alpha", "web"), svc("beta", "db")], LB, {}, WEIGHTS)
    assert first.addresses == {"alpha/ns/web": "192.0.2.1", "beta/ns/db": "192.0.2.2"}
    # a new service sorting first does not move the others
    second = plan_services([svc("alpha", "aaa"), svc("alpha", "web"), svc("beta", "db")], LB, first.addresses, WEIGHTS)
    assert second.addresses == {**first.addresses, "alpha/ns/aaa": "192.0.2.3"}


def test_requested_address_shared_by_clusters_is_one_virtual_service() -> None:
    plan = plan_services(
        [svc("alpha", "dns", DNS, requested="192.0.2.5", ip="10.96.0.10"), svc("beta", "dns", DNS, requested="192.0.2.5", ip="10.97.0.10")],
        LB, {}, {"alpha": 100, "beta": 0},
    )  # fmt: skip
    assert plan.problems == []
    assert plan.virtuals == [
        Virtual("tcp", "192.0.2.5", 53, "wrr", (Real("10.96.0.10", 53, 100), Real("10.97.0.10", 53, 0))),
        Virtual("udp", "192.0.2.5", 53, "wrr", (Real("10.96.0.10", 53, 100), Real("10.97.0.10", 53, 0))),
    ]
    assert plan.status_writes == {"alpha/ns/dns": "192.0.2.5", "beta/ns/dns": "192.0.2.5"}


def test_disagreeing_ports_are_a_conflict_and_nothing_changes() -> None:
    services = [svc("alpha", "x", TCP80, requested="192.0.2.5"), svc("beta", "x", DNS, requested="192.0.2.5")]
    plan = plan_services(services, LB, {"alpha/ns/x": "192.0.2.5"}, WEIGHTS)
    assert plan.problems == [
        "address 192.0.2.5: requested by alpha/ns/x, beta/ns/x, but their ports and protocols differ; nothing changes for them"
    ]
    assert plan.virtuals == []
    assert plan.frozen == {"192.0.2.5"}
    assert plan.addresses == {"alpha/ns/x": "192.0.2.5"}


def test_requested_outside_pool_and_exhausted_pool_are_reported_others_unaffected() -> None:
    small = LbSettings(pool=("192.0.2.8/31",))
    plan = plan_services(
        [svc("alpha", "a"), svc("alpha", "b"), svc("alpha", "c"), svc("beta", "z", requested="203.0.113.1")],
        small,
        {},
        WEIGHTS,
    )
    assert plan.addresses == {"alpha/ns/a": "192.0.2.8", "alpha/ns/b": "192.0.2.9"}
    assert plan.problems == [
        "service beta/ns/z: requested address 203.0.113.1 is not in the pool",
        "service alpha/ns/c: the address pool is exhausted",
    ]


def test_offline_cluster_contributes_nothing_and_status_only_when_different() -> None:
    plan = plan_services([svc("alpha", "web", status=("192.0.2.1",)), svc("gamma", "web")], LB, {}, WEIGHTS)
    assert plan.addresses == {"alpha/ns/web": "192.0.2.1"}
    assert plan.status_writes == {}


def test_scheduler_annotation_within_the_allowed_list() -> None:
    plan = plan_services([svc("alpha", "a", scheduler="sh"), svc("alpha", "b", scheduler="bogus")], LB, {}, WEIGHTS)
    assert [v.scheduler for v in plan.virtuals] == ["sh", "wrr"]
    assert plan.problems == [
        "address 192.0.2.2: scheduler 'bogus' is not allowed (rr, wrr, lc, wlc, sh, mh); using wrr"
    ]
