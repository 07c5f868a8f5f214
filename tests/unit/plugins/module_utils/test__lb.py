"""The L4 half's planning (_lb.plan_lb): read Services -> checked -> addresses -> the IPVS table and its argv.

A property test feeds hostile Services (as the API client hands them over) through the reader, the planner
and the IPVS planner: it always completes, every Service left out is named in a warning, and every value in
the table and every word of the ipvsadm argv is one a strict validator accepts.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from typing import Any

import kubernetes.client as k8s
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.k8router.edge.plugins.module_utils import _nft
from ansible_collections.k8router.edge.plugins.module_utils._cluster import load_balancer_services
from ansible_collections.k8router.edge.plugins.module_utils._ipvs import plan
from ansible_collections.k8router.edge.plugins.module_utils._lb import (
    LbOptions,
    desired_table,
    plan_lb,
)
from ansible_collections.k8router.edge.plugins.module_utils._model import ClusterSettings, ClusterSnapshot
from ansible_collections.k8router.edge.plugins.module_utils._services import (
    MIGRATION_ANNOTATIONS,
    PROTOCOLS,
    REQUEST_ANNOTATION,
    SCHEDULER_ANNOTATION,
    LbService,
    LbSettings,
    Real,
    ServicePortSpec,
    Virtual,
    pool_contains,
    shown,
)

POOL = ("192.0.2.0/28", "2001:db8:5::/124")
OPTS = LbOptions(settings=LbSettings(POOL), classes=("edge",), include_unclassed=True)
SETTINGS = [ClusterSettings("alpha"), ClusterSettings("beta", weight=7), ClusterSettings("gamma", state="drain")]
TCP80 = (ServicePortSpec("tcp", 80),)


def snapshots(*services: LbService) -> dict[str, ClusterSnapshot]:
    found: dict[str, ClusterSnapshot] = {}
    for s in services:
        found.setdefault(s.cluster, ClusterSnapshot(s.cluster, 0.0)).services.append(s)
    return found


def all_ops_argv(table: dict[Any, Any]) -> list[tuple[str, ...]]:
    return [op.argv for op in plan(table, {}, lambda key: pool_contains(POOL, key[1]))]


def test_family_mismatch_no_longer_fails_the_planning() -> None:
    """The run used to fail here: an IPv6 address requested for an IPv4 Service reached the IPVS planner."""
    services = [
        LbService("alpha", "ns", "v6req", "10.96.0.5", TCP80, "edge", "2001:db8:5::5"),
        LbService("alpha", "ns", "good", "10.96.0.6", TCP80, "edge"),
    ]
    lb, rows = plan_lb(OPTS, SETTINGS, snapshots(*services))
    warnings: list[str] = []
    table = desired_table(lb.virtuals, warnings)
    assert warnings == []
    assert [" ".join(a) for a in all_ops_argv(table)] == [
        "-A -t 192.0.2.1:80 -s wrr",
        "-a -t 192.0.2.1:80 -r 10.96.0.6:80 -m -w 100",
    ]
    assert rows == [{"service": "alpha/ns/good", "address": "192.0.2.1", "ports": ["80/tcp"]}]
    assert lb.problems == [
        "service alpha/ns/v6req: requested address 2001:db8:5::5 (k8router.edge/address) is not of the Service's "
        "IP family (IPv4, cluster IP 10.96.0.5); request ignored; not served"
    ]


def test_a_virtual_the_ipvs_model_refuses_is_reported_not_raised() -> None:
    warnings: list[str] = []
    table = desired_table(
        [
            Virtual("tcp", "192.0.2.1", 80, "no such scheduler", (Real("10.96.0.1", 80, 1),)),
            Virtual("tcp", "192.0.2.2", 80, "wrr", (Real("10.96.0.2", 80, 1),)),
        ],
        warnings,
    )
    assert list(table) == [("tcp", "192.0.2.2", 80)]
    assert warnings == [
        "IPVS: virtual service tcp 192.0.2.1:80 left out: tcp 192.0.2.1:80: scheduler 'no such scheduler' is not "
        "a scheduler name"
    ]


def test_two_routers_agree_whatever_their_inputs_order() -> None:
    """Snapshots listed in another order (another router, another read) give the identical table."""
    services = [
        LbService("alpha", "ns", f"s{i}", f"10.96.0.{i + 1}", TCP80, "edge", created=f"2024-01-0{i % 3 + 1}T00:00:00Z")
        for i in range(6)
    ] + [LbService("beta", "ns", "s0", "10.97.0.1", TCP80, "edge", status=("192.0.2.9",))]
    one = plan_lb(OPTS, SETTINGS, snapshots(*services))
    other = plan_lb(OPTS, list(reversed(SETTINGS)), dict(reversed(list(snapshots(*services[::-1]).items()))))
    assert one == other
    assert one[0].addresses["beta/ns/s0"] == "192.0.2.9"


def test_each_cluster_serves_its_own_load_balancer_classes() -> None:
    """beta serves class "beta-lb" only (its load_balancer_classes), alpha the set's "edge"; gamma lists none."""
    services = [
        LbService(c, "ns", f"{c}-{k}", f"10.9{i}.0.{j + 1}", TCP80, k)
        for i, c in enumerate(("alpha", "beta", "gamma"))
        for j, k in enumerate(("edge", "beta-lb"))
    ] + [LbService("beta", "ns", "plain", "10.91.0.9", TCP80)]
    settings = [
        ClusterSettings("alpha"),
        ClusterSettings("beta", load_balancer_classes=("beta-lb",)),
        ClusterSettings("gamma", load_balancer_classes=()),
    ]
    lb, rows = plan_lb(OPTS, settings, snapshots(*services))
    assert [row["service"] for row in rows] == ["alpha/ns/alpha-edge", "beta/ns/beta-beta-lb", "beta/ns/plain"]
    assert lb.problems == []
    # without its own list, beta serves the set's classes again
    _lb, rows = plan_lb(OPTS, [ClusterSettings("alpha"), ClusterSettings("beta")], snapshots(*services))
    assert [row["service"] for row in rows] == ["alpha/ns/alpha-edge", "beta/ns/beta-edge", "beta/ns/plain"]


# --------------------------------------------------------------------------------------------------------------
# the property test

IN_POOL = ["192.0.2.1", "192.0.2.5", "192.0.2.14", "2001:db8:5::3", "2001:db8:5::f"]
TRICKY = [
    "192.0.2.1,2001:db8:5::3", "192.0.2.1,192.0.2.2", " 192.0.2.5 ", "192.0.2.01", "fe80::1%eth0", "::ffff:192.0.2.1",
    "192.0.2.1\n-C", "192.0.2.1 -C", "0.0.0.0", "198.51.100.1", "1.2.3.4/32", "-5", "\u0661.\u0662.\u0663.\u0664",
    "x" * 3000, "", ",", "None", "10.96.0.1",
]  # fmt: skip
hostile_text = st.one_of(st.text(max_size=40), st.sampled_from(TRICKY + IN_POOL))
addresses = st.one_of(
    st.sampled_from(IN_POOL),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    hostile_text,
)
cluster_ips = st.one_of(
    st.sampled_from(["10.96.0.10", "10.96.0.11", "fd00:96::10", "10.97.0.1"]), st.ip_addresses().map(str), hostile_text
)
schedulers = st.one_of(st.sampled_from(["rr", "wrr", "sh", "mh", "bogus", "WRR", "rr\n-s", "", "\u00f8"]), hostile_text)
annotation_keys = st.one_of(
    st.sampled_from([REQUEST_ANNOTATION, SCHEDULER_ANNOTATION, *MIGRATION_ANNOTATIONS, "k8router.edge/weight"]),
    st.text(max_size=20),
)
annotation_values = st.one_of(addresses, schedulers, st.sampled_from(["-5", "99999999999999999999", "-1"]))
labels = st.one_of(st.from_regex(r"\A[a-z]([a-z0-9-]{0,8}[a-z0-9])?\Z"), st.text(max_size=70))


@st.composite
def services(draw: st.DrawFn) -> Any:
    """A Service as the API client hands it over, built without the client's checks (as from a damaged source)."""
    ports = draw(
        st.lists(
            st.builds(
                k8s.V1ServicePort.model_construct,
                protocol=st.one_of(
                    st.sampled_from(["TCP", "UDP", "SCTP", "ICMP", "tcp"]), st.none(), st.text(max_size=8)
                ),
                port=st.one_of(st.integers(-5, 70000), st.none(), st.integers(), st.sampled_from([0, 1, 65535, 65536])),
            ),
            max_size=4,
        )
    )
    stamp = draw(st.one_of(st.none(), st.datetimes(timezones=st.just(datetime.UTC))))
    ingress = draw(
        st.lists(
            st.builds(
                k8s.V1LoadBalancerIngress.model_construct,
                ip=st.one_of(st.none(), addresses),
                hostname=st.one_of(st.none(), st.text(max_size=10)),
            ),
            max_size=2,
        )
    )
    return k8s.V1Service.model_construct(
        metadata=k8s.V1ObjectMeta.model_construct(
            name=draw(labels),
            namespace=draw(labels),
            uid=draw(st.text(max_size=8)),
            creation_timestamp=stamp,
            annotations=draw(st.one_of(st.none(), st.dictionaries(annotation_keys, annotation_values, max_size=4))),
        ),
        spec=k8s.V1ServiceSpec.model_construct(
            type=draw(st.sampled_from(["LoadBalancer", "LoadBalancer", "ClusterIP"])),
            cluster_ip=draw(cluster_ips),
            cluster_ips=draw(st.one_of(st.none(), st.lists(cluster_ips, max_size=3))),
            ports=ports,
            load_balancer_class=draw(st.sampled_from(["edge", None, "other"])),
            load_balancer_ip=draw(st.one_of(st.none(), addresses)),
        ),
        status=k8s.V1ServiceStatus.model_construct(
            load_balancer=k8s.V1LoadBalancerStatus.model_construct(ingress=ingress)
        ),
    )


_V4_ENDPOINT = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})")
_V6_ENDPOINT = re.compile(r"\[([0-9a-f:]+)\]:(\d{1,5})")
_FLAGS = {"-A", "-a", "-t", "-u", "--sctp-service", "-s", "-r", "-m", "-w"}


def strict_endpoint(token: str) -> tuple[str, int]:
    """``address:port`` as ipvsadm takes it, the address in its compressed form, a port 1..65535."""
    match = _V4_ENDPOINT.fullmatch(token) or _V6_ENDPOINT.fullmatch(token)
    assert match, token
    address, port = match.group(1), int(match.group(2))
    assert ipaddress.ip_address(address).compressed == address, token
    assert 1 <= port <= 65535 and str(port) == match.group(2), token
    return address, port


def check_argv(argv: tuple[str, ...], cluster_ip_values: set[str]) -> None:
    assert argv[0] in ("-A", "-a") and argv[1] in ("-t", "-u", "--sctp-service"), argv
    vip = strict_endpoint(argv[2])[0]
    assert pool_contains(POOL, vip), argv
    rest = list(argv[3:])
    if argv[0] == "-A":
        assert len(rest) == 2 and rest[0] == "-s" and rest[1] in OPTS.settings.schedulers, argv
        return
    assert len(rest) == 5 and rest[0] == "-r" and rest[2] == "-m" and rest[3] == "-w", argv
    real = strict_endpoint(rest[1])[0]
    assert real in cluster_ip_values and ipaddress.ip_address(real).version == ipaddress.ip_address(vip).version
    assert rest[4].isdigit() and 0 <= int(rest[4]) <= 65535 and str(int(rest[4])) == rest[4], argv
    assert set(argv) - _FLAGS == {argv[2], rest[1], rest[4]}, argv


_NFT_WORDS = {
    "table",
    "inet",
    "k8router_lb",
    "{}",
    "delete",
    "{",
    "}",
    "map",
    "services4",
    "services6",
    "type",
    "ipv4_addr",
    "ipv6_addr",
    ".",
    "inet_proto",
    "inet_service",
    ":",
    "verdict",
    "elements",
    "=",
    "goto",
    "chain",
    "prerouting",
    "output",
    "nat",
    "hook",
    "priority",
    "dstnat;",
    "-100;",
    "policy",
    "accept;",
    "jump",
    "services",
    "ip",
    "ip6",
    "daddr",
    "meta",
    "l4proto",
    "th",
    "dport",
    "vmap",
    "@services4",
    "@services6",
    "numgen",
    "random",
    "mod",
    "dnat",
    "to",
    "reject",
    "#",
    "weight",
    "0:",
    "no",
    "new",
    "connections",
    "tcp",
    "udp",
    "sctp",
}
_NFT_CHAIN = re.compile(r"(svc|ep)-(tcp|udp|sctp)-[0-9a-f.]+-\d+(-[0-9a-f.]+-\d+)?")


def check_nft_text(text: str, cluster_ip_values: set[str]) -> None:
    """Every word of the nft transaction is a keyword, a number, a chain name of the renderer's shape, a pool address
    (in a map element) or a checked cluster IP (a DNAT target): nothing a Service said reaches nft as it was."""
    for word in text.replace(",", " ").split():
        if word in _NFT_WORDS or re.fullmatch(r"\d+(-\d+)?", word) or _NFT_CHAIN.fullmatch(word):
            continue
        if word.startswith("[") and "]:" in word:  # [v6]:port
            address, port = word[1:].rsplit("]:", 1)
        elif word.count(":") == 1:  # v4:port
            address, port = word.split(":")
        else:  # an address of a map element
            assert pool_contains(POOL, word) and ipaddress.ip_address(word).compressed == word, word
            continue
        assert address in cluster_ip_values and port.isdigit() and 1 <= int(port) <= 65535, word


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["alpha", "beta", "gamma"]), services()), max_size=12))
def test_hostile_services_never_stop_the_planning_and_only_validated_words_reach_ipvsadm(
    generated: list[tuple[str, Any]],
) -> None:
    snaps: dict[str, ClusterSnapshot] = {}
    reader_warnings: list[str] = []
    for cluster, svc in generated:
        found, warnings = load_balancer_services(cluster, [svc])
        reader_warnings.extend(warnings)
        snaps.setdefault(cluster, ClusterSnapshot(cluster, 0.0)).services.extend(found)
    read = [s for snap in snaps.values() for s in snap.services]
    lb, rows = plan_lb(OPTS, SETTINGS, snaps)
    table_warnings: list[str] = []
    table = desired_table(lb.virtuals, table_warnings)
    assert table_warnings == []  # the checks in _services leave nothing for the IPVS model to refuse
    # every virtual service and real server holds checked values only
    for v in lb.virtuals:
        assert pool_contains(POOL, v.address) and v.protocol in PROTOCOLS and 1 <= v.port <= 65535
        assert v.scheduler in OPTS.settings.schedulers and v.reals
        for r in v.reals:
            assert ipaddress.ip_address(r.address).version == ipaddress.ip_address(v.address).version
            assert 1 <= r.port <= 65535 and r.weight in (100, 7, 0)
    # two services of one cluster never share an address
    by_address: dict[str, list[str]] = {}
    for key, address in lb.addresses.items():
        by_address.setdefault(address, []).append(key.split("/", 1)[0])
    assert all(len(c) == len(set(c)) for c in by_address.values())
    # the argv words ipvsadm would get
    ips = {ipaddress.ip_address(a).compressed for s in read for a in (s.cluster_ip, *s.cluster_ips) if _is_ip(a)}
    for argv in all_ops_argv(table):
        check_argv(argv, ips)
    # and the words nft would get, from the same plan
    nft_table, nft_warnings = _nft.desired_table(lb.virtuals, {})
    assert nft_warnings == [] or all("scheduler" in w for w in nft_warnings), nft_warnings
    check_nft_text(_nft.transaction(nft_table), ips)
    # every Service of this set left out is named in a warning
    for s in read:
        if s.load_balancer_class == "other" or s.key in lb.addresses:
            continue
        names = (s.key, "/".join(shown(n) for n in (s.cluster, s.namespace, s.name)))
        assert any(n in p for p in lb.problems for n in names), (s, lb.problems)
    assert {r["service"] for r in rows} == set(lb.addresses)
    # warnings are single lines of bounded length, whatever the cluster users wrote
    long = [p for p in lb.problems + reader_warnings if "\n" in p or len(p) >= 1200]
    assert long == []


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return "%" not in value
