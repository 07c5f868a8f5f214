from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from ansible_collections.k8router.edge.plugins.module_utils._ipvs import (
    IpvsError,
    Op,
    RealServer,
    ServiceKey,
    VirtualService,
    conflicts,
    endpoint,
    format_save,
    owned_keys,
    parse_endpoint,
    parse_save,
    plan,
    select,
)

# ipvsadm -Sn as the Debian 6.1 kernel + ipvsadm 1.31 print it (recorded in the qemu guest of tests/fixtures/ipvsvm.py).
RECORDED = """\
-A -t 10.0.0.1:80 -s wrr
-a -t 10.0.0.1:80 -r 10.96.0.10:80 -m -w 1
-a -t 10.0.0.1:80 -r 10.96.0.11:8080 -m -w 0
-a -t 10.0.0.1:80 -r 10.96.1.1:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum
-A -u 10.0.0.1:53 -s sh -b sh-port
-a -u 10.0.0.1:53 -r 10.96.0.10:53 -m -w 1
-A --sctp-service 10.0.0.1:3868 -s rr
-a --sctp-service 10.0.0.1:3868 -r 10.96.0.12:3868 -m -w 2
-A -t [2001:db8::1]:443 -s lc -p 300
-a -t [2001:db8::1]:443 -r [2001:db8::10]:8443 -m -w 5
-a -t [2001:db8::1]:443 -r [2001:db8::11]:443 -g -w 5
-A -f 7 -s rr
-a -f 7 -r 10.96.0.13:0 -m -w 1
-A -f 8 -6 -s rr
"""

VIP = "192.0.2.10"
VIP6 = "2001:db8:100::10"
ALL: Callable[[ServiceKey], bool] = lambda key: True  # noqa: E731
NONE: Callable[[ServiceKey], bool] = lambda key: False  # noqa: E731


def svc(
    address: str = VIP,
    port: int = 80,
    protocol: str = "tcp",
    scheduler: str = "wrr",
    reals: Sequence[tuple[str, int, int]] = (("10.96.0.10", 80, 1), ("10.97.0.10", 80, 1)),
    *,
    persistence: int | None = None,
) -> VirtualService:
    return VirtualService(
        protocol, address, port, scheduler, tuple(RealServer(a, p, w) for a, p, w in reals), persistence
    )


def table(*services: VirtualService) -> dict[ServiceKey, VirtualService]:
    return {s.key: s for s in services}


def argvs(ops: Sequence[Op]) -> list[str]:
    return [" ".join(op.argv) for op in ops]


# --------------------------------------------------------------------------------------------------------------
# parsing


def test_parse_recorded_table() -> None:
    parsed = parse_save(RECORDED)
    assert sorted(parsed) == sorted(
        [
            ("tcp", "10.0.0.1", 80),
            ("udp", "10.0.0.1", 53),
            ("sctp", "10.0.0.1", 3868),
            ("tcp", "2001:db8::1", 443),
        ]
    ), "firewall-mark services are skipped, every address:port service is read"
    tcp = parsed[("tcp", "10.0.0.1", 80)]
    assert tcp.scheduler == "wrr"
    assert [(r.address, r.port, r.weight, r.forward) for r in tcp.reals] == [
        ("10.96.0.10", 80, 1, "masq"),
        ("10.96.0.11", 8080, 0, "masq"),
        ("10.96.1.1", 80, 1, "tunnel"),
    ]
    assert tcp.reals[2].options == ("--tun-type", "gue", "--tun-port", "6080", "--tun-nocsum")
    assert parsed[("udp", "10.0.0.1", 53)].options == ("-b", "sh-port")
    sctp = parsed[("sctp", "10.0.0.1", 3868)]
    assert (sctp.scheduler, sctp.reals) == ("rr", (RealServer("10.96.0.12", 3868, 2),))
    v6 = parsed[("tcp", "2001:db8::1", 443)]
    assert (v6.scheduler, v6.persistence, v6.options) == ("lc", 300, ())
    assert [(r.endpoint, r.forward) for r in v6.reals] == [
        ("[2001:db8::10]:8443", "masq"),
        ("[2001:db8::11]:443", "route"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("\n# comment\n\n", {}),
        ("-A -t 10.0.0.1:80 -s rr\n", {("tcp", "10.0.0.1", 80): VirtualService("tcp", "10.0.0.1", 80, "rr")}),
        (
            "--add-service --udp-service 10.0.0.1:53 --scheduler sh\n"
            "--add-server --udp-service 10.0.0.1:53 --real-server 10.96.0.10:53 --masquerading --weight 3\n",
            {("udp", "10.0.0.1", 53): svc("10.0.0.1", 53, "udp", "sh", [("10.96.0.10", 53, 3)])},
        ),
        ("-A -t 10.0.0.1:80\n", {("tcp", "10.0.0.1", 80): VirtualService("tcp", "10.0.0.1", 80, "wlc")}),
        (
            "-A -t 10.0.0.1:80 -s rr -p\n",
            {("tcp", "10.0.0.1", 80): VirtualService("tcp", "10.0.0.1", 80, "rr", persistence=300)},
        ),
        (
            "-A -t [2001:DB8:0::1]:80 -s rr -p 60 -M 64\n",
            {("tcp", "2001:db8::1", 80): VirtualService("tcp", "2001:db8::1", 80, "rr", (), 60, ("-M", "64"))},
        ),
    ],
)
def test_parse_save(text: str, expected: dict[ServiceKey, VirtualService]) -> None:
    assert parse_save(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-C\n", "unexpected"),
        ("-a -t 10.0.0.1:80 -r 10.96.0.10:80 -m -w 1\n", "unknown service"),
        ("-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.1:80 -s rr\n", "twice"),
        ("-A -t 10.0.0.1 -s rr\n", "not an ipvsadm address:port"),
        ("-A -t 10.0.0.1:70000 -s rr\n", "port"),
        ("-A -s rr\n", "no service address"),
        ("-A -t 10.0.0.1:80 -s\n", "without a value"),
        ("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -m -w 1\n", "without -r"),
        ("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.96.0.1:80 -w x\n", "not a number"),
        ("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.96.0.1:80 -w 70000\n", "weight"),
        ("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 1.1.1.1:1\n-a -t 10.0.0.1:80 -r 1.1.1.1:1\n", "twice"),
    ],
)
def test_parse_save_rejects(text: str, message: str) -> None:
    with pytest.raises(IpvsError, match=message):
        parse_save(text)


@pytest.mark.parametrize(
    ("address", "port", "text"),
    [("10.0.0.1", 80, "10.0.0.1:80"), ("2001:db8::1", 443, "[2001:db8::1]:443"), ("::", 0, "[::]:0")],
)
def test_endpoint_round_trip(address: str, port: int, text: str) -> None:
    assert endpoint(address, port) == text
    assert parse_endpoint(text) == (address, port)


@pytest.mark.parametrize("text", ["2001:db8::1:80", "[10.0.0.1]:80x", "host:80", "10.0.0.1:", "[2001:db8::1]"])
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"address:port|IP address"):
        parse_endpoint(text)


def test_recorded_table_untouched_when_foreign() -> None:
    """Hand-made entries (tunnels, direct routing, flags) are never touched when not owned, even with nothing desired."""
    recorded = parse_save(RECORDED)
    assert plan({}, recorded, NONE) == []
    assert plan({}, recorded, owned_keys([("tcp", "10.0.0.1", 80)])) == [
        Op("delete-service", recorded[("tcp", "10.0.0.1", 80)])
    ]


def test_format_save_round_trips_and_is_ipvsadm_syntax() -> None:
    parsed = parse_save(RECORDED)
    text = format_save(parsed)
    assert parse_save(text) == parsed
    assert text.splitlines()[:3] == [
        "-A -t 10.0.0.1:80 -s wrr",
        "-a -t 10.0.0.1:80 -r 10.96.0.10:80 -m -w 1",
        "-a -t 10.0.0.1:80 -r 10.96.0.11:8080 -m -w 0",
    ]
    assert "-A -t [2001:db8::1]:443 -s lc -p 300" in text.splitlines()


# --------------------------------------------------------------------------------------------------------------
# the model's validation (what reaches an ipvsadm command line)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RealServer("10.0.0.300", 80), "not an IP address"),
        (lambda: RealServer("10.0.0.1", 65536), "port"),
        (lambda: RealServer("10.0.0.1", 80, -1), "weight"),
        (lambda: RealServer("10.0.0.1", 80, 65536), "weight"),
        (lambda: RealServer("10.0.0.1", 80, True), "weight"),
        (lambda: RealServer("10.0.0.1", 80, 1, forward="nat"), "forwarding"),
        (lambda: VirtualService("icmp", VIP, 80), "protocol"),
        (lambda: VirtualService("tcp", "example.com", 80), "not an IP address"),
        (lambda: VirtualService("tcp", VIP, 80, "wrr -C"), "scheduler"),
        (lambda: VirtualService("tcp", VIP, 80, "WRR"), "scheduler"),
        (lambda: VirtualService("tcp", VIP, 80, "rr", persistence=0), "persistence"),
        (lambda: svc(reals=[("10.96.0.1", 80, 1), ("10.96.0.1", 80, 2)]), "listed twice"),
        (lambda: RealServer("fe80::1%eth0", 80), "not an IP address"),
        (lambda: RealServer("fe80::1%x\n-C", 80), "not an IP address"),
        (lambda: VirtualService("tcp", "fe80::1%lo", 80), "not an IP address"),
        (lambda: VirtualService("tcp", VIP, 80, "wrr\n"), "scheduler"),
        (lambda: VirtualService("tcp", VIP, 80, "rr", options=("-p 1",)), "single words"),
        (lambda: VirtualService("tcp", VIP, 80, "rr", options=("-o\n-C",)), "single words"),
        (lambda: RealServer("10.0.0.1", 80, options=("",)), "single words"),
        (lambda: RealServer("10.0.0.1", 80, options="-x"), "single words"),  # type: ignore[arg-type]
    ],
)
def test_model_rejects(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_every_argv_word_is_one_word() -> None:
    """Nothing in the model can split an argv word or start a new ipvsadm -R line."""
    ops = plan(parse_save(format_save(BASE)), {}, ALL) + plan({}, parse_save(RECORDED), ALL)
    ops += plan(table(svc(VIP6, 53, "udp", "mh", [("fd00::1", 53, 0)], persistence=5)), {}, ALL)
    words = [word for op in ops for word in op.argv]
    assert words
    assert all(word and word == word.strip() and len(word.split()) == 1 for word in words)


def test_model_normalizes_addresses_and_sorts_reals() -> None:
    service = svc("2001:DB8:0:0::1", reals=[("2001:db8::20", 80, 1), ("2001:DB8::3", 80, 1)])
    assert service.key == ("tcp", "2001:db8::1", 80)
    assert [r.address for r in service.reals] == ["2001:db8::3", "2001:db8::20"]


# --------------------------------------------------------------------------------------------------------------
# planning

FOREIGN = VirtualService("tcp", "10.0.0.99", 443, "rr", (RealServer("10.1.1.1", 443, 1, forward="route"),), 300)
BASE = table(svc(), svc(port=443), svc(port=53, protocol="udp", scheduler="sh"))

PLAN_CASES: list[tuple[str, dict[ServiceKey, VirtualService], dict[ServiceKey, VirtualService], list[str]]] = [
    ("nothing to do", BASE, BASE, []),
    (
        "from scratch: each service, then its real servers, in key order (tcp, udp)",
        table(svc(), svc(port=53, protocol="udp", scheduler="sh", reals=[("10.96.0.11", 53, 2)])),
        {},
        [
            f"-A -t {VIP}:80 -s wrr",
            f"-a -t {VIP}:80 -r 10.96.0.10:80 -m -w 1",
            f"-a -t {VIP}:80 -r 10.97.0.10:80 -m -w 1",
            f"-A -u {VIP}:53 -s sh",
            f"-a -u {VIP}:53 -r 10.96.0.11:53 -m -w 2",
        ],
    ),
    (
        "sctp",
        table(svc(port=3868, protocol="sctp", scheduler="rr", reals=[("10.96.0.12", 3868, 1)])),
        {},
        [f"-A --sctp-service {VIP}:3868 -s rr", f"-a --sctp-service {VIP}:3868 -r 10.96.0.12:3868 -m -w 1"],
    ),
    (
        "IPv6 in brackets",
        table(svc(VIP6, 443, reals=[("fd00:96::10", 8443, 1)])),
        {},
        [f"-A -t [{VIP6}]:443 -s wrr", f"-a -t [{VIP6}]:443 -r [fd00:96::10]:8443 -m -w 1"],
    ),
    (
        "persistence (sessionAffinity ClientIP)",
        table(svc(reals=[], persistence=10800)),
        {},
        [f"-A -t {VIP}:80 -s wrr -p 10800"],
    ),
    (
        "a weight changes: edit the real server",
        table(svc(reals=[("10.96.0.10", 80, 3), ("10.97.0.10", 80, 1)])),
        table(svc()),
        [f"-e -t {VIP}:80 -r 10.96.0.10:80 -m -w 3"],
    ),
    (
        "weight 0 drains",
        table(svc(reals=[("10.96.0.10", 80, 0), ("10.97.0.10", 80, 1)])),
        table(svc()),
        [f"-e -t {VIP}:80 -r 10.96.0.10:80 -m -w 0"],
    ),
    ("the scheduler changes: edit the service", table(svc(scheduler="mh")), table(svc()), [f"-E -t {VIP}:80 -s mh"]),
    ("persistence goes: edit the service", table(svc()), table(svc(persistence=60)), [f"-E -t {VIP}:80 -s wrr"]),
    (
        "a new real server",
        table(svc(reals=[("10.96.0.10", 80, 1), ("10.97.0.10", 80, 1), ("10.98.0.10", 80, 1)])),
        table(svc()),
        [f"-a -t {VIP}:80 -r 10.98.0.10:80 -m -w 1"],
    ),
    (
        "a real server goes",
        table(svc(reals=[("10.96.0.10", 80, 1)])),
        table(svc()),
        [f"-d -t {VIP}:80 -r 10.97.0.10:80"],
    ),
    (
        "a real server's port changes: delete + add",
        table(svc(reals=[("10.96.0.10", 8080, 1), ("10.97.0.10", 80, 1)])),
        table(svc()),
        [f"-d -t {VIP}:80 -r 10.96.0.10:80", f"-a -t {VIP}:80 -r 10.96.0.10:8080 -m -w 1"],
    ),
    (
        "a service goes: one delete, its real servers go with it",
        table(svc()),
        table(svc(), svc(port=443)),
        [f"-D -t {VIP}:443"],
    ),
    (
        "same port, other protocol is another service",
        table(svc(), svc(protocol="udp")),
        table(svc()),
        [
            f"-A -u {VIP}:80 -s wrr",
            f"-a -u {VIP}:80 -r 10.96.0.10:80 -m -w 1",
            f"-a -u {VIP}:80 -r 10.97.0.10:80 -m -w 1",
        ],
    ),
    (
        "hand-made flags on an owned service are reset",
        table(svc()),
        table(VirtualService("tcp", VIP, 80, "wrr", svc().reals, None, ("-b", "sh-port"))),
        [f"-E -t {VIP}:80 -s wrr"],
    ),
    (
        "an owned real server switched to direct routing is put back to NAT",
        table(svc()),
        table(VirtualService("tcp", VIP, 80, "wrr", (RealServer("10.96.0.10", 80, 1, "route"), svc().reals[1]))),
        [f"-e -t {VIP}:80 -r 10.96.0.10:80 -m -w 1"],
    ),
    (
        "fixed order: real deletes, adds, edits, service deletes",
        table(
            svc(scheduler="rr", reals=[("10.96.0.10", 80, 2), ("10.98.0.10", 80, 1)]),
            svc(VIP6, 80, reals=[("fd00::1", 80, 1)]),
        ),
        table(svc(), svc(port=443), svc(port=8080, reals=[])),
        [
            f"-d -t {VIP}:80 -r 10.97.0.10:80",
            f"-a -t {VIP}:80 -r 10.98.0.10:80 -m -w 1",
            f"-A -t [{VIP6}]:80 -s wrr",
            f"-a -t [{VIP6}]:80 -r [fd00::1]:80 -m -w 1",
            f"-E -t {VIP}:80 -s rr",
            f"-e -t {VIP}:80 -r 10.96.0.10:80 -m -w 2",
            f"-D -t {VIP}:443",
            f"-D -t {VIP}:8080",
        ],
    ),
]


@pytest.mark.parametrize(
    ("desired", "current", "expected"), [c[1:] for c in PLAN_CASES], ids=[c[0] for c in PLAN_CASES]
)
def test_plan(
    desired: dict[ServiceKey, VirtualService], current: dict[ServiceKey, VirtualService], expected: list[str]
) -> None:
    ops = plan(desired, current, ALL)
    assert argvs(ops) == expected
    assert all(op.argv[0] != "-C" for op in ops), "never a flush"


@pytest.mark.parametrize(
    "tbl",
    [{}, BASE, table(svc(VIP6, 53, "udp", "sh", [("fd00::1", 53, 0)], persistence=5))],
    ids=["empty", "base", "ipv6-udp-drain-persistent"],
)
def test_plan_is_idempotent(tbl: dict[ServiceKey, VirtualService]) -> None:
    assert plan(tbl, tbl, ALL) == []
    assert plan(tbl, parse_save(format_save(tbl)), ALL) == [], "what ipvsadm reads back is the same table"


def test_foreign_entries_are_left_alone() -> None:
    current = {**BASE, FOREIGN.key: FOREIGN}
    owned = owned_keys(BASE)
    assert plan(BASE, current, owned) == [], "the foreign service is neither deleted nor 'fixed'"
    assert argvs(plan({}, current, owned)) == [
        f"-D -t {VIP}:80",
        f"-D -t {VIP}:443",
        f"-D -u {VIP}:53",
    ], "only owned services are removed when nothing is desired"
    assert plan(table(svc()), {FOREIGN.key: FOREIGN}, NONE) == [], "nothing is done on keys not owned"


def test_desired_entry_on_a_foreign_key_is_a_conflict_not_an_op() -> None:
    clash = svc("10.0.0.99", 443)
    current = {FOREIGN.key: FOREIGN}
    owned = owned_keys([])
    assert plan(table(clash), current, owned) == []
    assert conflicts(table(clash), current, owned) == [FOREIGN.key]
    assert conflicts(table(svc()), current, owned) == [], "a free key is no conflict"


def test_one_service_change_issues_only_that_services_ops() -> None:
    services = [svc(f"192.0.2.{i}", 80) for i in range(1, 101)]
    before = table(*services)
    changed = svc("192.0.2.42", 80, reals=[("10.96.0.10", 80, 1), ("10.99.0.10", 80, 1)])
    after = {**before, changed.key: changed}
    ops = plan(after, before, ALL)
    assert argvs(ops) == ["-d -t 192.0.2.42:80 -r 10.97.0.10:80", "-a -t 192.0.2.42:80 -r 10.99.0.10:80 -m -w 1"]
    assert {op.key for op in ops} == {changed.key}


def test_desired_keys_are_normalized() -> None:
    v6 = svc(VIP6, 443, reals=[("fd00::10", 443, 1)])
    desired = {("tcp", "2001:DB8:100:0::10", 443): v6}
    assert plan(desired, table(v6), ALL) == []


@pytest.mark.parametrize(
    ("desired", "message"),
    [
        ({("tcp", VIP, 81): svc()}, "holds"),
        ({("icmp", VIP, 80): svc()}, "protocol"),
        (table(svc(reals=[("fd00::1", 80, 1)])), "address family"),
        (table(VirtualService("tcp", VIP, 80, "rr", (), None, ("-o",))), "unknown ipvsadm flags"),
        (table(VirtualService("tcp", VIP, 80, "rr", (RealServer("10.96.0.1", 80, 1, "tunnel"),))), "NAT"),
    ],
)
def test_plan_rejects_bad_desired(desired: dict[ServiceKey, VirtualService], message: str) -> None:
    with pytest.raises(IpvsError, match=message):
        plan(desired, {}, ALL)


@pytest.mark.parametrize(
    ("kind", "real", "message"),
    [
        ("flush", None, "not one of"),
        ("add-real", None, "real server"),
        ("add-service", RealServer("10.96.0.1", 80), "real server"),
    ],
)
def test_op_rejects(kind: str, real: RealServer | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Op(kind, svc(), real)


def test_select_and_op_texts() -> None:
    assert select({**BASE, FOREIGN.key: FOREIGN}, owned_keys(BASE)) == BASE
    old = svc()
    new = svc(scheduler="mh", reals=[("10.96.0.10", 80, 0), ("10.98.0.10", 80, 1)], persistence=60)
    texts = [op.text for op in plan(table(new), table(old), ALL)]
    assert texts == [
        f"delete real server 10.97.0.10:80 from tcp {VIP}:80",
        f"add real server 10.98.0.10:80 to tcp {VIP}:80 (NAT, weight 1)",
        f"edit virtual service tcp {VIP}:80: scheduler wrr -> mh, persistence off -> 60",
        f"edit real server 10.96.0.10:80 of tcp {VIP}:80: weight 1 -> 0 (drain)",
    ]
    assert [str(op) for op in plan({}, table(old), ALL)] == [
        f"delete virtual service tcp {VIP}:80 (with its 2 real servers)"
    ]
    assert plan(table(new), {}, ALL)[0].text == f"add virtual service tcp {VIP}:80 (scheduler mh, persistence 60 s)"


# The driver (IpvsDriver) runs against a real kernel only: tests/integration/test_ipvs_kernel.py.
