"""LoadBalancer services: selection, checks, address sources, agreement, shared addresses, conflicts."""

from __future__ import annotations

import pytest

from ansible_collections.k8router.edge.plugins.module_utils._services import (
    LbService,
    LbSettings,
    Real,
    ServicePortSpec,
    Virtual,
    plan_services,
    recheck_status_write,
    served,
)

TCP80 = (ServicePortSpec("tcp", 80),)
DNS = (ServicePortSpec("udp", 53), ServicePortSpec("tcp", 53))
LB = LbSettings(pool=("192.0.2.0/29",))
DUAL = LbSettings(pool=("192.0.2.0/29", "2001:db8:5::/125"))
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
    ips: tuple[str, ...] = (),
    status: tuple[str, ...] = (),
    created: str = "",
    spec_ip: str | None = None,
    annotations: tuple[tuple[str, str], ...] = (),
) -> LbService:
    return LbService(
        cluster, "ns", name, ip or f"10.96.{len(cluster)}.{len(name)}", ports, cls, requested, scheduler, status,
        spec_ip, annotations, ips, f"uid-{name}", created,
    )  # fmt: skip


def test_served_by_class() -> None:
    items = [svc("alpha", "a"), svc("alpha", "b", cls=None), svc("alpha", "c", cls="other")]
    assert [s.name for s in served(items, ["edge"], include_unclassed=False)] == ["a"]
    assert [s.name for s in served(items, ["edge"], include_unclassed=True)] == ["a", "b"]


def test_served_by_the_classes_of_each_cluster() -> None:
    """A cluster's own load_balancer_classes replace the set's classes there; unclassed Services are as before."""
    items = [svc(c, n, cls=k) for c in ("alpha", "beta") for n, k in (("a", "edge"), ("b", None), ("c", "other"))]
    per_cluster = {"beta": ["other"]}
    assert [s.key for s in served(items, ["edge"], False, per_cluster)] == ["alpha/ns/a", "beta/ns/c"]
    assert [s.key for s in served(items, ["edge"], True, per_cluster)] == [
        "alpha/ns/a", "alpha/ns/b", "beta/ns/b", "beta/ns/c",
    ]  # fmt: skip
    # an empty list serves no classed Service of that cluster (not the set's classes)
    assert [s.key for s in served(items, ["edge"], False, {"alpha": []})] == ["beta/ns/a"]


def test_lowest_free_addresses_in_creation_order() -> None:
    web = svc("alpha", "web", created="2024-01-01T00:00:00Z")
    db = svc("beta", "db", created="2024-01-02T00:00:00Z")
    first = plan_services([web, db], LB, WEIGHTS)
    assert first.addresses == {"alpha/ns/web": "192.0.2.1", "beta/ns/db": "192.0.2.2"}
    # a newer service sorting first by name does not move the others
    aaa = svc("alpha", "aaa", created="2024-02-01T00:00:00Z")
    second = plan_services([aaa, web, db], LB, WEIGHTS)
    assert second.addresses == {**first.addresses, "alpha/ns/aaa": "192.0.2.3"}


def test_without_published_status_a_deletion_moves_the_newer_services() -> None:
    """What write_status is for: with nothing published, the allocation follows the creation order alone."""
    web = svc("alpha", "web", created="2024-01-01T00:00:00Z")
    db = svc("beta", "db", created="2024-01-02T00:00:00Z")
    assert plan_services([web, db], LB, WEIGHTS).addresses["beta/ns/db"] == "192.0.2.2"
    assert plan_services([db], LB, WEIGHTS).addresses["beta/ns/db"] == "192.0.2.1"
    published = svc("beta", "db", created="2024-01-02T00:00:00Z", status=("192.0.2.2",))
    assert plan_services([published], LB, WEIGHTS).addresses["beta/ns/db"] == "192.0.2.2"


def test_published_status_is_the_truth() -> None:
    """Published addresses hold whatever the creation order says; only the rest is allocated."""
    web = svc("alpha", "web", created="2024-01-01T00:00:00Z", status=("192.0.2.4",))
    db = svc("beta", "db", created="2024-01-02T00:00:00Z", status=("192.0.2.1",))
    new = svc("alpha", "new", created="2024-01-03T00:00:00Z")
    plan = plan_services([web, db, new], LB, WEIGHTS)
    assert plan.addresses == {"alpha/ns/web": "192.0.2.4", "beta/ns/db": "192.0.2.1", "alpha/ns/new": "192.0.2.2"}
    assert plan.status_writes == {"alpha/ns/new": "192.0.2.2"}
    assert plan.problems == []


def test_every_router_computes_the_same_plan_whatever_the_input_order() -> None:
    services = [
        svc("alpha", f"s{i}", created=f"2024-01-{i % 5 + 1:02d}T00:00:00Z", status=("192.0.2.6",) if i == 3 else ())
        for i in range(8)
    ]
    orders = [services, services[::-1], services[3:] + services[:3], sorted(services, key=lambda s: s.uid[::-1])]
    plans = [plan_services(order, LB, WEIGHTS) for order in orders]
    assert all(p == plans[0] for p in plans)
    assert plans[0].addresses["alpha/ns/s3"] == "192.0.2.6"


def test_requested_address_shared_by_clusters_is_one_virtual_service() -> None:
    plan = plan_services(
        [svc("alpha", "dns", DNS, requested="192.0.2.5", ip="10.96.0.10"), svc("beta", "dns", DNS, requested="192.0.2.5", ip="10.97.0.10")],
        LB, {"alpha": 100, "beta": 0},
    )  # fmt: skip
    assert plan.problems == []
    assert plan.virtuals == [
        Virtual("tcp", "192.0.2.5", 53, "wrr", (Real("10.96.0.10", 53, 100), Real("10.97.0.10", 53, 0))),
        Virtual("udp", "192.0.2.5", 53, "wrr", (Real("10.96.0.10", 53, 100), Real("10.97.0.10", 53, 0))),
    ]
    assert plan.status_writes == {"alpha/ns/dns": "192.0.2.5", "beta/ns/dns": "192.0.2.5"}


def test_conflicting_request_the_holder_keeps_the_address() -> None:
    """beta/ns/x asks for alpha/ns/x's address with other ports: alpha (published there) keeps it, beta is refused."""
    services = [
        svc("beta", "x", DNS, requested="192.0.2.5", created="2024-01-01T00:00:00Z"),
        svc("alpha", "x", TCP80, requested="192.0.2.5", status=("192.0.2.5",), created="2024-03-01T00:00:00Z"),
        svc("alpha", "y", TCP80, requested="192.0.2.5", status=("192.0.2.3",)),
    ]
    plan = plan_services(services, LB, WEIGHTS)
    assert plan.problems == [
        "service beta/ns/x: requested address 192.0.2.5 refused: alpha/ns/x holds it with other ports and "
        "protocols; not served",
        "service alpha/ns/y: requested address 192.0.2.5 refused: alpha/ns/x holds it and two services of one "
        "cluster cannot share an address; keeps its published address 192.0.2.3",
    ]
    assert plan.addresses == {"alpha/ns/x": "192.0.2.5", "alpha/ns/y": "192.0.2.3"}
    assert [(v.address, v.port) for v in plan.virtuals] == [("192.0.2.3", 80), ("192.0.2.5", 80)]
    assert plan.status_writes == {}


def test_request_outside_pool_and_exhausted_pool_are_reported_others_unaffected() -> None:
    small = LbSettings(pool=("192.0.2.8/31",))
    plan = plan_services(
        [svc("alpha", "a"), svc("alpha", "b"), svc("alpha", "c"), svc("beta", "z", requested="203.0.113.1")],
        small,
        WEIGHTS,
    )
    assert plan.addresses == {"alpha/ns/a": "192.0.2.8", "alpha/ns/b": "192.0.2.9"}
    assert plan.problems == [
        "service beta/ns/z: requested address 203.0.113.1 (k8router.edge/address) is not in the pool; "
        "request ignored; not served",
        "service alpha/ns/c: no free IPv4 address in the pool; not served",
    ]


def test_offline_cluster_contributes_nothing_and_status_only_when_different() -> None:
    plan = plan_services([svc("alpha", "web", status=("192.0.2.1",)), svc("gamma", "web")], LB, WEIGHTS)
    assert plan.addresses == {"alpha/ns/web": "192.0.2.1"}
    assert plan.status_writes == {}


def test_scheduler_annotation_within_the_allowed_list() -> None:
    plan = plan_services([svc("alpha", "a", scheduler="sh"), svc("alpha", "b", scheduler="bogus\n")], LB, WEIGHTS)
    assert [v.scheduler for v in plan.virtuals] == ["sh", "wrr"]
    assert plan.problems == [
        "service alpha/ns/b: scheduler 'bogus\\n' (k8router.edge/scheduler) is not one of rr, wrr, lc, wlc, sh, mh; "
        "using wrr"
    ]


def test_family_mismatch_is_reported_and_stops_nothing() -> None:
    """An IPv6 request for an IPv4 Service (the run used to fail inside the IPVS planner): reported, the rest served."""
    services = [
        svc("alpha", "v6req", requested="2001:db8:5::3", ip="10.96.0.5"),
        svc("alpha", "good", ip="10.96.0.6"),
        svc("beta", "v6only", ip="fd00:96::6"),
    ]
    plan = plan_services(services, DUAL, WEIGHTS)
    assert plan.problems == [
        "service alpha/ns/v6req: requested address 2001:db8:5::3 (k8router.edge/address) is not of the Service's "
        "IP family (IPv4, cluster IP 10.96.0.5); request ignored; not served"
    ]
    assert plan.addresses == {"alpha/ns/good": "192.0.2.1", "beta/ns/v6only": "2001:db8:5::1"}
    assert {(v.address, v.reals[0].address) for v in plan.virtuals} == {
        ("192.0.2.1", "10.96.0.6"),
        ("2001:db8:5::1", "fd00:96::6"),
    }


def test_ipv6_service_and_an_ipv4_only_pool() -> None:
    plan = plan_services([svc("beta", "v6only", ip="fd00:96::6")], LB, WEIGHTS)
    assert plan.addresses == {}
    assert plan.problems == ["service beta/ns/v6only: no free IPv6 address in the pool; not served"]


def test_dual_stack_service_is_served_on_its_primary_family() -> None:
    dual = svc("alpha", "dual", ips=("fd00:96::7", "10.96.0.7"), requested="192.0.2.4,2001:db8:5::4")
    plan = plan_services([dual], DUAL, WEIGHTS)
    assert plan.addresses == {"alpha/ns/dual": "2001:db8:5::4"}
    assert plan.virtuals == [Virtual("tcp", "2001:db8:5::4", 80, "wrr", (Real("fd00:96::7", 80, 100),))]
    assert plan.problems == [
        "service alpha/ns/dual: requested address 192.0.2.4 (k8router.edge/address) not served: one address per "
        "Service (2001:db8:5::4 is)"
    ]


MIGRATION = [
    # (our annotation, spec.loadBalancerIP, other annotations, address, problems)
    (None, None, (("metallb.io/loadBalancerIPs", "192.0.2.3"),), "192.0.2.3", []),
    (None, None, (("metallb.universe.tf/loadBalancerIPs", " 192.0.2.3 , 2001:db8:5::3"),), "192.0.2.3",
     ["requested address 2001:db8:5::3 (metallb.universe.tf/loadBalancerIPs) not served: one address per Service "
      "(192.0.2.3 is)"]),
    (None, None, (("kube-vip.io/loadbalancerIPs", "192.0.2.3"),), "192.0.2.3", []),
    (None, None, (("lbipam.cilium.io/ips", "192.0.2.3"),), "192.0.2.3", []),
    (None, "192.0.2.3", (), "192.0.2.3", []),
    # precedence: ours, metallb.io, metallb.universe.tf, kube-vip.io, lbipam.cilium.io, spec.loadBalancerIP
    ("192.0.2.4", "192.0.2.3", (("metallb.io/loadBalancerIPs", "192.0.2.4"),), "192.0.2.4",
     ["spec.loadBalancerIP ('192.0.2.3') disagrees with k8router.edge/address ('192.0.2.4'); using "
      "k8router.edge/address"]),
    (None, None, (("kube-vip.io/loadbalancerIPs", "192.0.2.6"), ("metallb.universe.tf/loadBalancerIPs", "192.0.2.5")),
     "192.0.2.5",
     ["kube-vip.io/loadbalancerIPs ('192.0.2.6') disagrees with metallb.universe.tf/loadBalancerIPs ('192.0.2.5'); "
      "using metallb.universe.tf/loadBalancerIPs"]),
    (None, "192.0.2.6", (("lbipam.cilium.io/ips", "192.0.2.5"), ("kube-vip.io/loadbalancerIPs", "192.0.2.5")),
     "192.0.2.5",
     ["spec.loadBalancerIP ('192.0.2.6') disagrees with kube-vip.io/loadbalancerIPs ('192.0.2.5'); "
      "using kube-vip.io/loadbalancerIPs"]),
    (None, None, (("metallb.io/loadBalancerIPs", "192.0.2.5"), ("metallb.universe.tf/loadBalancerIPs", "192.0.2.5")),
     "192.0.2.5", []),
    (None, None, (("lbipam.cilium.io/ips", "192.0.2.6"), ("metallb.io/loadBalancerIPs", "192.0.2.5")), "192.0.2.5",
     ["lbipam.cilium.io/ips ('192.0.2.6') disagrees with metallb.io/loadBalancerIPs ('192.0.2.5'); using "
      "metallb.io/loadBalancerIPs"]),
    # garbage in the deciding source: the Service is not served, a lower source does not stand in for it
    (None, "192.0.2.3", (("kube-vip.io/loadbalancerIPs", "192.0.2.1,192.0.2.2"),), None,
     ["requested address in kube-vip.io/loadbalancerIPs names two IPv4 addresses (at most one per family); "
      "request ignored; not served"]),
    ("192.0.2.01", None, (), None,
     ["requested address in k8router.edge/address '192.0.2.01' is not an IP address; request ignored; not served"]),
    ("\u0661\u0669\u0662.0.2.1", None, (), None,
     ["requested address in k8router.edge/address '\\u0661\\u0669\\u0662.0.2.1' is not an IP address; request "
      "ignored; not served"]),
    ("x" * 5000, None, (), None,
     ["requested address in k8router.edge/address is longer than 256 characters; request ignored; not served"]),
    ("fe80::1%eth0", None, (), None,
     ["requested address in k8router.edge/address 'fe80::1%eth0' is not an IP address; request ignored; "
      "not served"]),
    (" , ", None, (), None, []),
]  # fmt: skip


@pytest.mark.parametrize(("ours", "spec_ip", "annotations", "address", "problems"), MIGRATION)
def test_requested_address_sources(
    ours: str | None,
    spec_ip: str | None,
    annotations: tuple[tuple[str, str], ...],
    address: str | None,
    problems: list[str],
) -> None:
    plan = plan_services([svc("alpha", "m", requested=ours, spec_ip=spec_ip, annotations=annotations)], LB, WEIGHTS)
    if ours == " , ":  # names nothing: reported, and not served
        assert plan.addresses == {}
        assert plan.problems == ["service alpha/ns/m: requested address in k8router.edge/address names no address; "
                                 "request ignored; not served"]  # fmt: skip
        return
    assert plan.addresses == ({"alpha/ns/m": address} if address else {})
    assert sorted(plan.problems) == sorted(f"service alpha/ns/m: {p}" for p in problems)


def test_bad_request_keeps_the_published_address() -> None:
    """A tenant breaks the annotation of a served Service: it keeps serving on its published address."""
    plan = plan_services([svc("alpha", "web", requested="not-an-ip", status=("192.0.2.6",))], LB, WEIGHTS)
    assert plan.addresses == {"alpha/ns/web": "192.0.2.6"}
    assert plan.status_writes == {}
    assert plan.problems == [
        "service alpha/ns/web: requested address in k8router.edge/address 'not-an-ip' is not an IP address; "
        "request ignored; keeps its published address 192.0.2.6"
    ]


def test_status_of_another_owner_is_reported_and_never_overwritten() -> None:
    services = [
        svc("alpha", "metallb", status=("198.51.100.7",)),
        svc("alpha", "named", status=("lb.example.net",)),
        svc("alpha", "mine", status=("192.0.2.2",)),
    ]
    plan = plan_services(services, LB, WEIGHTS)
    assert plan.addresses == {"alpha/ns/mine": "192.0.2.2"}
    assert plan.status_writes == {}
    assert plan.problems == [
        "service alpha/ns/metallb: status.loadBalancer.ingress holds '198.51.100.7', outside this router set's "
        "pool (published by another owner): not served by this set, status left alone",
        "service alpha/ns/named: status.loadBalancer.ingress holds 'lb.example.net', outside this router set's "
        "pool (published by another owner): not served by this set, status left alone",
    ]


def test_status_writes_carry_the_service_as_read() -> None:
    """Each status write keeps the Service it was planned from: its resourceVersion is the write's precondition."""
    fresh = LbService("alpha", "ns", "new", "10.96.0.1", TCP80, "edge", resource_version="41")
    published = LbService("alpha", "ns", "old", "10.96.0.2", TCP80, "edge", status=("192.0.2.1",), resource_version="9")
    plan = plan_services([fresh, published], LB, WEIGHTS)
    assert plan.status_writes == {"alpha/ns/new": "192.0.2.2"}
    assert plan.status_read == {"alpha/ns/new": fresh}
    assert LbService.from_json(fresh.to_json()) == fresh  # the snapshot keeps it


READ = LbService("beta", "ns", "web", "10.97.0.1", TCP80, "edge", resource_version="7")


@pytest.mark.parametrize(
    ("fresh", "again", "warning"),
    [
        # a label or an unrelated field changed: nothing the address depends on, the write is repeated
        (LbService("beta", "ns", "web", "10.97.0.1", TCP80, "edge", scheduler="rr", resource_version="8"), True, None),
        # deleted or no longer a LoadBalancer: nothing to publish
        (None, False, None),
        # another router of the set published the same address meanwhile
        (LbService("beta", "ns", "web", "10.97.0.1", TCP80, "edge", status=("192.0.2.1",)), False, None),
        # another router set (or anyone) wrote the status: never overwritten
        (LbService("beta", "ns", "web", "10.97.0.1", TCP80, "edge", status=("198.51.100.9",)), False,
         "service beta/ns/web: status.loadBalancer.ingress changed since it was read (now '198.51.100.9'): "
         "192.0.2.1 not written, the status is left alone; the next run decides again"),
        (LbService("beta", "ns", "web", "10.97.0.1", TCP80, "edge", status=("192.0.2.3",)), False,
         "service beta/ns/web: status.loadBalancer.ingress changed since it was read (now '192.0.2.3'): "
         "192.0.2.1 not written, the status is left alone; the next run decides again"),
        # the address would be decided differently now: left to the next run
        (LbService("beta", "ns", "web", "10.97.0.1", TCP80, "edge", requested="192.0.2.4"), False,
         "service beta/ns/web: changed since it was read (class, addresses or ports): 192.0.2.1 not written; "
         "the next run decides again"),
        (LbService("beta", "ns", "web", "10.97.0.1", TCP80, "other"), False,
         "service beta/ns/web: changed since it was read (class, addresses or ports): 192.0.2.1 not written; "
         "the next run decides again"),
    ],
)  # fmt: skip
def test_a_conflicting_status_write_is_decided_again(fresh: LbService | None, again: bool, warning: str | None) -> None:
    assert recheck_status_write(READ, fresh, "192.0.2.1") == (again, warning)


def test_bad_ports_are_left_out_and_the_rest_served() -> None:
    ports = (
        ServicePortSpec("tcp", 0),
        ServicePortSpec("icmp", 7),
        ServicePortSpec("TCP", 443),
        ServicePortSpec("udp", 70000),
    )
    plan = plan_services([svc("alpha", "p", ports), svc("alpha", "none", (ServicePortSpec("tcp", -1),))], LB, WEIGHTS)
    assert [(v.protocol, v.port) for v in plan.virtuals] == [("tcp", 443)]
    assert plan.problems == [
        "service alpha/ns/p: port 0/'tcp' is not a port; left out",
        "service alpha/ns/p: port 7/'icmp' is not a port; left out",
        "service alpha/ns/p: port 70000/'udp' is not a port; left out",
        "service alpha/ns/none: port -1/'tcp' is not a port; left out",
        "service alpha/ns/none: no usable port; not served",
    ]


def test_bad_cluster_ip_and_names() -> None:
    services = [
        svc("alpha", "bad", ip="10.96.0.300"),
        LbService("alpha", "ns", "Bad Name\n", "10.96.0.1", TCP80, "edge"),
    ]
    plan = plan_services(services, LB, WEIGHTS)
    assert plan.addresses == {}
    assert plan.problems == [
        "service alpha/ns/bad: cluster IP '10.96.0.300' is not an IP address (one per family); not served",
        "service 'alpha'/'ns'/'Bad Name\\n': names are not DNS labels; not served",
    ]


def test_clusters_with_overlapping_service_ranges_cannot_share_an_address() -> None:
    """Found by the property test: two identical real servers made IPVS refuse the whole virtual service."""
    services = [
        svc("alpha", "dns", requested="192.0.2.5", ip="10.96.0.10"),
        svc("beta", "dns", requested="192.0.2.5", ip="10.96.0.10"),
    ]
    plan = plan_services(services, LB, WEIGHTS)
    assert plan.virtuals == [Virtual("tcp", "192.0.2.5", 80, "wrr", (Real("10.96.0.10", 80, 100),))]
    assert plan.problems == [
        "service beta/ns/dns: requested address 192.0.2.5 refused: its cluster IP 10.96.0.10 is also alpha/ns/dns's "
        "(the clusters' service ranges overlap); not served"
    ]
