"""The L4 half's planning (_lb.plan_lb): read Services -> checked -> addresses -> the IPVS table and its argv.

A property test feeds hostile Services (as the API client hands them over) through the reader, the planner
and the IPVS planner: it always completes, every Service left out is named in a warning, and every value in
the table and every word of the ipvsadm argv is one a strict validator accepts.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.k8router.edge.plugins.module_utils import _lb, _nft
from ansible_collections.k8router.edge.plugins.module_utils._cluster import ClusterSource, load_balancer_services
from ansible_collections.k8router.edge.plugins.module_utils._errors import (
    ClusterReadError,
    K8RouterError,
    StatusConflictError,
)
from ansible_collections.k8router.edge.plugins.module_utils._ipvs import plan
from ansible_collections.k8router.edge.plugins.module_utils._lb import (
    LbOptions,
    converge_lb,
    desired_table,
    plan_lb,
    publish,
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
# status writes: a resourceVersion precondition, one re-decision after a conflict, never a failed run

SOURCES = [ClusterSource(c, f"/k/{c}", None, "ingress-nginx", "ingress-nginx-controller", "http", ()) for c in "ab"]


class FakeApi:
    """The API server as the status writer sees it: each Service's resourceVersion and status."""

    def __init__(self, *services: LbService) -> None:
        self.services: dict[str, LbService] = {s.key: s for s in services}
        self.writes: list[tuple[str, str, str]] = []  # (key, address, resourceVersion sent)
        self.on_write: dict[str, list[LbService | None]] = {}  # key -> what a concurrent writer leaves, per write

    def publish_address(self, source: ClusterSource, namespace: str, name: str, address: str, version: str) -> None:
        key = f"{source.name}/{namespace}/{name}"
        if not version:  # as the real one: never a write without a precondition
            raise StatusConflictError(f"cluster {source.name}: service {namespace}/{name}: no resourceVersion read")
        self.writes.append((key, address, version))
        pending = self.on_write.get(key)
        if pending:
            changed = pending.pop(0)
            if changed is None:
                del self.services[key]
            else:
                self.services[key] = changed
        current = self.services.get(key)
        if current is None:
            raise StatusConflictError(
                f"cluster {source.name}: service {namespace}/{name}: status not written: HTTP 404"
            )
        if version != current.resource_version:
            raise StatusConflictError(
                f"cluster {source.name}: service {namespace}/{name}: status not written: HTTP 409"
            )
        self.services[key] = LbService(**{**current.__dict__, "status": (address,), "resource_version": version + "+"})

    def read_service(self, source: ClusterSource, namespace: str, name: str) -> LbService | None:
        if name == "unreadable":
            raise ClusterReadError(f"cluster {source.name}: service {namespace}/{name}: not read again: HTTP 500")
        return self.services.get(f"{source.name}/{namespace}/{name}")


def lb_service(cluster: str, name: str, version: str = "1", **fields: Any) -> LbService:
    return LbService(cluster, "ns", name, f"10.96.{len(name)}.1", TCP80, "edge", resource_version=version, **fields)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi()
    monkeypatch.setattr(_lb, "publish_address", fake.publish_address)
    monkeypatch.setattr(_lb, "read_service", fake.read_service)
    return fake


def test_status_writes_carry_the_resource_version_read(api: FakeApi) -> None:
    web = lb_service("a", "web", "17")
    api.services[web.key] = web
    lb, _rows = plan_lb(OPTS, [ClusterSettings("a")], snapshots(web))
    assert publish(lb, SOURCES) == []
    assert api.writes == [("a/ns/web", "192.0.2.1", "17")]
    assert api.services[web.key].status == ("192.0.2.1",)


def test_a_status_written_by_another_set_between_read_and_write_is_never_overwritten(api: FakeApi) -> None:
    """Router set B owns the class too and published first, after set A read the Service: A reports, never
    writes a second time, and its other Services are published all the same."""
    web, db = lb_service("a", "web"), lb_service("b", "db")
    api.services.update({web.key: web, db.key: db})
    api.on_write[web.key] = [lb_service("a", "web", "2", status=("198.51.100.9",))]
    lb, _rows = plan_lb(OPTS, [ClusterSettings("a"), ClusterSettings("b")], snapshots(web, db))
    assert publish(lb, SOURCES) == [
        "service a/ns/web: status.loadBalancer.ingress changed since it was read (now '198.51.100.9'): 192.0.2.1 "
        "not written, the status is left alone; the next run decides again"
    ]
    assert api.writes == [("a/ns/web", "192.0.2.1", "1"), ("b/ns/db", "192.0.2.2", "1")]
    assert api.services[web.key].status == ("198.51.100.9",)
    assert api.services[db.key].status == ("192.0.2.2",)


def test_an_unrelated_change_is_written_again_once_with_the_new_version(api: FakeApi) -> None:
    web = lb_service("a", "web")
    api.services[web.key] = web
    api.on_write[web.key] = [lb_service("a", "web", "2", scheduler="rr")]
    lb, _rows = plan_lb(OPTS, [ClusterSettings("a")], snapshots(web))
    assert publish(lb, SOURCES) == []
    assert api.writes == [("a/ns/web", "192.0.2.1", "1"), ("a/ns/web", "192.0.2.1", "2")]
    assert api.services[web.key].status == ("192.0.2.1",)


@pytest.mark.parametrize(
    ("name", "version", "concurrent", "writes", "warning"),
    [
        # changed again during the second write: reported by name, never a third write, never a failure
        ("web", "1", [lb_service("a", "web", "2", scheduler="rr"), lb_service("a", "web", "3", scheduler="sh")],
         ["1", "2"], "cluster a: service ns/web: status not written: HTTP 409; it changed again while being "
         "written (twice in one run), the next run decides again"),
        # deleted meanwhile: nothing to publish
        ("web", "1", [None], ["1"], None),
        # read again fails: reported
        ("unreadable", "1", [lb_service("a", "unreadable", "2")], ["1"],
         "cluster a: service ns/unreadable: not read again: HTTP 500"),
        # a snapshot from before resourceVersions were kept: read again first, then written with a precondition
        ("web", "", [], ["3"], None),
    ],
)  # fmt: skip
def test_conflicts_end_in_a_warning_never_a_failure(
    api: FakeApi, *, name: str, version: str, concurrent: list[LbService | None], writes: list[str], warning: str | None
) -> None:
    svc = lb_service("a", name, version)
    api.services[svc.key] = lb_service("a", name, version or "3")
    api.on_write[svc.key] = list(concurrent)
    lb, _rows = plan_lb(OPTS, [ClusterSettings("a")], snapshots(svc))
    assert publish(lb, SOURCES) == ([warning] if warning else [])
    assert [w[2] for w in api.writes] == writes


# --------------------------------------------------------------------------------------------------------------
# switching engines: the other engine's entries go, by the same plan / check / diff rules

GOLDEN_NFT = Path(__file__).parent / "golden/nft"
LEFT_IPVS = (
    "-A -t 192.0.2.1:80 -s wrr\n-a -t 192.0.2.1:80 -r 10.96.0.1:80 -m -w 100\n"
    "-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 10.0.0.1:80 -m -w 1\n"
)
NO_TABLE = "Error: No such file or directory\nlist table inet k8router_lb\n"


class Kernel:
    """ipvsadm and nft as the L4 half sees them: IPVS entries (save format) and k8router's nft table (or none)."""

    def __init__(self, ipvs: str = "", nft_json: str | None = None) -> None:
        self.ipvs = ipvs
        self.nft_json = nft_json
        self.calls: list[str] = []

    def run(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.calls.append(" ".join(argv))
        if list(argv) == ["ipvsadm", "-Sn"]:
            return 0, self.ipvs, ""
        if argv[0] == "ipvsadm":
            return 0, "", ""
        if list(argv[:3]) == ["nft", "-j", "list"]:
            return (1, "", NO_TABLE) if self.nft_json is None else (0, self.nft_json, "")
        if list(argv[:2]) == ["nft", "delete"]:
            self.nft_json = None
            return 0, "", ""
        if list(argv[:2]) == ["nft", "list"]:
            return 0, "table inet k8router_lb { }\n", ""
        raise AssertionError(f"unexpected command {argv}")

    def stdin(self, argv: Sequence[str], data: str) -> tuple[int, str, str]:
        self.calls.append(" ".join(argv))
        if argv[:2] == ["nft", "-f"]:
            self.nft_json = (GOLDEN_NFT / "empty.json").read_text()
        return 0, "", ""

    def changes(self) -> list[str]:
        """The commands that changed something (not the reads, not the nft -c checks)."""
        reads = ("ipvsadm -Sn", "nft -j list", "nft list", "nft -c")
        return [c for c in self.calls if not c.startswith(reads)]


def converge_engine(kernel: Kernel, tmp_path: Path, engine: str, *, check: bool) -> Any:
    opts = dataclasses.replace(OPTS, engine=engine)
    return converge_lb(opts, [], {}, str(tmp_path), kernel.run, stdin_runner=kernel.stdin, check_mode=check)


@pytest.fixture
def tools(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Which of ipvsadm (with ip_vs loaded) and nft this router has."""
    present = {"ipvs": True, "nft": True}
    monkeypatch.setattr(_lb, "_ipvs_loaded", lambda _ipvsadm: present["ipvs"])
    monkeypatch.setattr(_lb, "_present", lambda _binary: present["nft"])
    return present


def test_nftables_engine_removes_the_ipvs_entries_k8router_owns(tools: dict[str, bool], tmp_path: Path) -> None:
    kernel = Kernel(ipvs=LEFT_IPVS)
    checked = converge_engine(kernel, tmp_path, "nftables", check=True)
    assert checked.changed
    assert checked.cleanup == [
        "delete virtual service tcp 192.0.2.1:80 (with its 1 real servers) (the ipvs engine's; engine is nftables)"
    ]
    assert "192.0.2.1:80" in checked.cleanup_diff["before"] and "198.51.100.1" not in checked.cleanup_diff["before"]
    assert checked.cleanup_diff["after"] == "" and checked.cleanup_diff["before_header"] == "IPVS (k8router's entries)"
    assert kernel.changes() == []  # check mode: reported, nothing changed
    applied = converge_engine(kernel, tmp_path, "nftables", check=False)
    assert applied.cleanup == checked.cleanup
    assert kernel.changes() == ["nft -f -", "ipvsadm -D -t 192.0.2.1:80"]  # the new table first; never the foreign one
    kernel.ipvs = LEFT_IPVS[LEFT_IPVS.index("-A -t 198") :]  # what the kernel then holds: the foreign entries only
    again = converge_engine(kernel, tmp_path, "nftables", check=False)
    assert (again.changed, again.cleanup) == (False, [])


def test_without_ip_vs_ipvsadm_is_never_run(tools: dict[str, bool], tmp_path: Path) -> None:
    tools["ipvs"] = False
    kernel = Kernel(ipvs=LEFT_IPVS)
    result = converge_engine(kernel, tmp_path, "nftables", check=False)
    assert result.cleanup == [] and result.warnings == []
    assert not [c for c in kernel.calls if c.startswith("ipvsadm")]


def test_ipvs_engine_deletes_the_nftables_engines_table(tools: dict[str, bool], tmp_path: Path) -> None:
    kernel = Kernel(nft_json=(GOLDEN_NFT / "services.json").read_text())
    checked = converge_engine(kernel, tmp_path, "ipvs", check=True)
    assert checked.changed and checked.operations == []
    assert checked.cleanup == ["delete table inet k8router_lb (the nftables engine's; engine is ipvs)"]
    assert checked.cleanup_diff["before"].startswith("table inet k8router_lb {\n")
    assert (GOLDEN_NFT / "services.nft").read_text().endswith(checked.cleanup_diff["before"])  # the table as rendered
    assert checked.cleanup_diff["after"] == ""
    assert kernel.changes() == []
    applied = converge_engine(kernel, tmp_path, "ipvs", check=False)
    assert applied.changed and kernel.changes() == ["nft delete table inet k8router_lb"]
    again = converge_engine(kernel, tmp_path, "ipvs", check=False)
    assert (again.changed, again.cleanup, again.warnings) == (False, [], [])


def test_ipvs_engine_without_nft_or_with_an_nft_that_fails(tools: dict[str, bool], tmp_path: Path) -> None:
    tools["nft"] = False
    kernel = Kernel(nft_json="{}")
    assert converge_engine(kernel, tmp_path, "ipvs", check=False).cleanup == []
    assert not [c for c in kernel.calls if c.startswith("nft")]
    tools["nft"] = True

    def refusing(argv: Sequence[str]) -> tuple[int, str, str]:
        if argv[0] == "nft":
            return 1, "", "Error: Could not process rule: Operation not permitted"
        return kernel.run(argv)

    result = converge_lb(OPTS, [], {}, str(tmp_path), refusing, check_mode=False)
    assert result.cleanup == []
    assert result.warnings == [
        "nftables: the nftables engine's table not looked for: nft -j list table inet k8router_lb failed (rc=1): "
        "Error: Could not process rule: Operation not permitted"
    ]


def test_a_removal_that_fails_fails_the_l4_half_with_its_warnings(tools: dict[str, bool], tmp_path: Path) -> None:
    kernel = Kernel(nft_json="{}")

    def refusing(argv: Sequence[str]) -> tuple[int, str, str]:
        if list(argv[:2]) == ["nft", "delete"]:
            return 1, "", "Error: Device or resource busy"
        return kernel.run(argv)

    with pytest.raises(K8RouterError, match=r"nftables: nft delete table inet k8router_lb failed: Error: Device"):
        converge_lb(OPTS, [], {}, str(tmp_path), refusing, check_mode=False)


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
