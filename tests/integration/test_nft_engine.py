"""The nftables L4 engine with the real nft and real traffic, in network namespaces made for the test.

A "router" namespace holds the load-balancer address and the router role's own nftables table (its SNAT toward
the service CIDRs, rendered from the role's template) beside a table of somebody else's; a "client" namespace
reaches the router over a veth pair; three "pod" namespaces (clusters alpha, beta and gamma), each holding a
service cluster IP on ``lo``, run plain TCP and UDP servers that answer with their name and the source address
they saw. The pods have no route back to the client: answers come back only because the role's table
masquerades what the engine DNATs toward the service CIDRs, so the two tables working together is tested too.
k8router's L4 half (``_lb.converge_lb`` with ``engine="nftables"``) runs here with ``nft`` inside the router
namespace.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ansible_collections.k8router.edge.plugins.module_utils import _lb, _model, _nft, _services
from ansible_collections.k8router.edge.plugins.module_utils._errors import K8RouterError
from tests.fixtures.haproxylab import REPO, local_runner, netns_exec

pytestmark = pytest.mark.integration

LB = "10.0.3.5"
POOL = ("10.0.3.0/28",)
PODS = {"alpha": "10.96.0.31", "beta": "10.97.0.31", "gamma": "10.98.0.31"}
SERVICE_CIDRS = ["10.96.0.0/16", "10.97.0.0/16", "10.98.0.0/16"]
TCP_PORT, UDP_PORT = 80, 53
GOLDEN = REPO / "tests/unit/plugins/module_utils/golden/nft"
FOREIGN = (
    "table ip somebody_else {\n"
    "\tchain input {\n"
    "\t\ttype filter hook input priority 0; policy accept;\n"
    "\t\ttcp dport 2222 counter accept\n"
    "\t}\n"
    "}\n"
)

POD_SERVER = r"""
import socket, sys, threading
name, address = sys.argv[1], sys.argv[2]
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); tcp.bind(("0.0.0.0", 80)); tcp.listen(256)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((address, 53))  # answers from the service IP
def serve_udp():
    while True:
        data, peer = udp.recvfrom(2048)
        udp.sendto(f"{name} {peer[0]}".encode(), peer)
threading.Thread(target=serve_udp, daemon=True).start()
print("ready", flush=True)
while True:
    conn, peer = tcp.accept()
    conn.sendall(f"{name} {peer[0]}".encode()); conn.close()
"""

CLIENT = r"""
import socket, sys
mode, address, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for _ in range(count):
    try:
        if mode == "tcp":
            s = socket.create_connection((address, port), timeout=2)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
            s.sendto(b"hello", (address, port))
        print(s.recv(256).decode().replace(" ", ","))
        s.close()
    except OSError as e:
        print(f"failed:{type(e).__name__}")
"""


@dataclass
class Lab:
    router: str
    client: str
    pods: dict[str, str]
    servers: list[subprocess.Popen[str]] = field(default_factory=list)
    router_side: dict[str, str] = field(default_factory=dict)  # cluster -> the router's address toward its pod

    def nft(self, *args: str, data: str | None = None) -> str:
        out = netns_exec(self.router, "nft", *args, input=data)
        assert out.returncode == 0, f"nft {' '.join(args)}: {out.stderr}"
        return str(out.stdout)

    def runner(self, argv: Sequence[str]) -> tuple[int, str, str]:
        rc, out, err = local_runner(["ip", "netns", "exec", self.router, *argv])
        return int(rc), str(out), str(err)

    def stdin_runner(self, argv: Sequence[str], data: str) -> tuple[int, str, str]:
        proc = subprocess.run(
            ["ip", "netns", "exec", self.router, *argv], input=data, capture_output=True, text=True, check=False
        )
        return proc.returncode, proc.stdout, proc.stderr

    def others(self) -> str:
        """Every table of the router namespace but k8router's, as nft lists them (handles included)."""
        return "\n".join(
            self.nft("-a", "list", "table", family, name)
            for family, name in (line.split()[1:3] for line in self.nft("list", "tables").splitlines())
            if name != _nft.NAME
        )

    def live(self) -> _nft.Live:
        out = netns_exec(self.router, "nft", "-j", "list", "table", _nft.FAMILY, _nft.NAME)
        return _nft.parse_live(out.stdout) if out.returncode == 0 else _nft.Live(False)

    def requests(self, mode: str, count: int, port: int) -> list[str]:
        out = netns_exec(self.client, sys.executable, "-c", CLIENT, mode, LB, str(port), str(count), timeout=300)
        assert out.returncode == 0, out.stderr
        return str(out.stdout).split()


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


def _role_table(root: Path) -> str:
    """The router role's own nftables file, rendered by Ansible from its template for these service CIDRs."""
    variables = root / "vars.json"
    variables.write_text(json.dumps({"router__clusters": [{"service_cidrs": SERVICE_CIDRS}]}))
    dest = root / "k8router.nft"
    out = subprocess.run(
        [
            "ansible", "localhost", "-m", "ansible.builtin.template",
            "-a", f"src={REPO}/roles/router/templates/nftables-k8router.nft.j2 dest={dest} mode=0640",
            "-e", f"@{variables}",
        ],
        capture_output=True, text=True, cwd=REPO, check=False,
        env={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return dest.read_text()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if not shutil.which("nft"):
        pytest.fail(
            "the nftables engine test needs nft on the host (tools/host-packages.sh installs it)", pytrace=False
        )
    tag = uuid.uuid4().hex[:6]
    names = {"router": f"k8r-nr-{tag}", "client": f"k8r-nc-{tag}", **{c: f"k8r-np{c[0]}-{tag}" for c in PODS}}
    made: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="k8r-nft-"))
    lab = Lab(names["router"], names["client"], {c: names[c] for c in PODS})
    try:
        for ns in names.values():
            _sh("ip", "netns", "add", ns)
            made.append(ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "-n", lab.router, "addr", "add", f"{LB}/32", "dev", "lo")
        _sh("ip", "netns", "exec", lab.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        links = [("client", lab.client, "10.254.0")] + [(c, lab.pods[c], f"10.254.{i}") for i, c in enumerate(PODS, 1)]
        for what, ns, net in links:
            here, there = f"k8r{what[:2]}{tag}", "eth0"
            _sh("ip", "link", "add", here, "netns", lab.router, "type", "veth", "peer", "name", there, "netns", ns)
            _sh("ip", "-n", lab.router, "addr", "add", f"{net}.1/30", "dev", here)
            _sh("ip", "-n", ns, "addr", "add", f"{net}.2/30", "dev", there)
            _sh("ip", "-n", lab.router, "link", "set", here, "up")
            _sh("ip", "-n", ns, "link", "set", there, "up")
            if what == "client":
                _sh("ip", "-n", ns, "route", "add", "default", "via", f"{net}.1")
            else:  # no route back to the client: the pod answers the router's address (the role's SNAT)
                _sh("ip", "-n", ns, "addr", "add", f"{PODS[what]}/32", "dev", "lo")
                _sh("ip", "-n", lab.router, "route", "add", f"{PODS[what]}/32", "via", f"{net}.2")
                lab.router_side[what] = f"{net}.1"
        for cluster, ns in lab.pods.items():
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-u", "-c", POD_SERVER, cluster, PODS[cluster]],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            lab.servers.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        lab.nft("-f", "-", data=_role_table(root))
        lab.nft("-f", "-", data=FOREIGN)
        yield lab
    finally:
        for proc in lab.servers:
            proc.kill()
            proc.wait()
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(root, ignore_errors=True)


SERVICE_PORTS = (_services.ServicePortSpec("tcp", TCP_PORT), _services.ServicePortSpec("udp", UDP_PORT))
SNAPSHOTS = {
    c: _model.ClusterSnapshot(
        c, 0.0, services=[_services.LbService(c, "ns", "web", ip, SERVICE_PORTS, "edge", LB)]
    )
    for c, ip in PODS.items()
}  # fmt: skip
OPTIONS = _lb.LbOptions(settings=_services.LbSettings(pool=POOL), classes=("edge",), engine="nftables")


def converge(
    lab: Lab,
    state: Path,
    weights: dict[str, tuple[int, str]],
    *,
    check: bool = False,
    scheduler: str | None = None,
) -> _lb.LbResult:
    """k8router's L4 half for the three clusters: ``weights`` maps a cluster to (weight, state)."""
    clusters = [(None, _model.ClusterSettings(c, weight=w, state=s)) for c, (w, s) in weights.items()]
    snapshots = SNAPSHOTS
    if scheduler:
        snapshots = {
            c: _model.ClusterSnapshot(c, 0.0, services=[
                _services.LbService(c, "ns", "web", ip, SERVICE_PORTS, "edge", LB, scheduler)
            ])
            for c, ip in PODS.items()
        }  # fmt: skip
    return _lb.converge_lb(
        OPTIONS,
        clusters,  # type: ignore[arg-type]
        snapshots,
        str(state),
        lab.runner,
        stdin_runner=lab.stdin_runner,
        check_mode=check,
    )


WEIGHTED = {"alpha": (150, "active"), "beta": (50, "active"), "gamma": (100, "drain")}


@pytest.fixture
def fresh(lab: Lab, tmp_path: Path) -> Iterator[Path]:
    """No k8router table and no allocation state before the test; the other tables are the same after it."""
    netns_exec(lab.router, "nft", "delete", "table", _nft.FAMILY, _nft.NAME)
    others = lab.others()
    yield tmp_path
    assert lab.others() == others, "a table that is not k8router's changed"


def counts(answers: list[str]) -> collections.Counter[str]:
    return collections.Counter(a.split(",")[0] for a in answers)


def test_first_apply_serves_tcp_by_weight_and_never_the_drained_cluster(lab: Lab, fresh: Path) -> None:
    first = converge(lab, fresh, WEIGHTED)
    assert first.changed and first.operations[0] == f"create table {_nft.TABLE}", first.operations
    answers = lab.requests("tcp", 200, TCP_PORT)
    seen = counts(answers)
    assert not [a for a in answers if a.startswith("failed")], answers
    assert seen["gamma"] == 0, seen
    assert 110 <= seen["alpha"] <= 185 and seen["alpha"] + seen["beta"] == 200, seen  # 3:1 of 200, p(miss) < 1e-9
    # the pods saw the router's own address: the role's masquerade toward the service CIDRs acted on DNAT'd traffic
    assert {a.split(",")[1] for a in answers if a.startswith("alpha")} == {lab.router_side["alpha"]}


def test_udp_reaches_the_pods(lab: Lab, fresh: Path) -> None:
    converge(lab, fresh, WEIGHTED)
    answers = lab.requests("udp", 60, UDP_PORT)
    seen = counts(answers)
    assert not [a for a in answers if a.startswith("failed")], answers
    assert seen["alpha"] > 0 and seen["beta"] > 0 and seen["gamma"] == 0, seen


def test_a_second_apply_is_unchanged_and_the_table_reads_back_as_desired(lab: Lab, fresh: Path) -> None:
    converge(lab, fresh, WEIGHTED)
    before = lab.nft("-a", "list", "table", _nft.FAMILY, _nft.NAME)
    second = converge(lab, fresh, WEIGHTED)
    assert (second.changed, second.operations) == (False, [])
    assert second.diff["before"] == second.diff["after"]
    assert lab.nft("-a", "list", "table", _nft.FAMILY, _nft.NAME) == before  # not even reloaded (same handles)


@pytest.mark.parametrize(
    "edit",
    [
        # all new connections to the drained cluster: still k8router's shape, read back as a weight change
        ["flush chain inet k8router_lb svc-tcp-10.0.3.5-80",
         "add rule inet k8router_lb svc-tcp-10.0.3.5-80 numgen random mod 1 vmap { 0 : goto ep-tcp-10.0.3.5-80-10.98.0.31-80 }"],
        # a rule of somebody's own in k8router's table: not k8router's shape
        ["insert rule inet k8router_lb services tcp dport 80 counter"],
        ["flush chain inet k8router_lb output", "delete chain inet k8router_lb output"],
    ],
    ids=["weights", "extra-rule", "deleted-chain"],
)  # fmt: skip
def test_a_table_changed_by_hand_is_restored(lab: Lab, fresh: Path, edit: list[str]) -> None:
    converge(lab, fresh, WEIGHTED)
    desired = lab.live().table
    for command in edit:
        lab.nft(*command.split())
    assert lab.live().table != desired or lab.live().problem is not None
    restored = converge(lab, fresh, WEIGHTED)
    assert restored.changed and restored.operations, restored.operations
    assert restored.diff["before"] != restored.diff["after"]
    live = lab.live()
    assert (live.problem, live.table) == (None, desired)
    assert counts(lab.requests("tcp", 40, TCP_PORT))["gamma"] == 0
    assert converge(lab, fresh, WEIGHTED).changed is False


def test_check_mode_changes_nothing(lab: Lab, fresh: Path) -> None:
    converge(lab, fresh, WEIGHTED)
    table = lab.nft("-a", "list", "table", _nft.FAMILY, _nft.NAME)
    drained = {**WEIGHTED, "beta": (50, "drain")}
    checked = converge(lab, fresh, drained, check=True)
    assert checked.changed and checked.operations == [
        "change virtual service tcp 10.0.3.5:80: 10.96.0.31:80 weight 3, 10.97.0.31:80 weight 1, "
        "10.98.0.31:80 weight 0 (drain) -> 10.96.0.31:80 weight 1, 10.97.0.31:80 weight 0 (drain), "
        "10.98.0.31:80 weight 0 (drain)",
        "change virtual service udp 10.0.3.5:53: 10.96.0.31:53 weight 3, 10.97.0.31:53 weight 1, "
        "10.98.0.31:53 weight 0 (drain) -> 10.96.0.31:53 weight 1, 10.97.0.31:53 weight 0 (drain), "
        "10.98.0.31:53 weight 0 (drain)",
    ]
    assert "mod 4 vmap" in checked.diff["before"] and "mod 1 vmap" in checked.diff["after"]
    assert lab.nft("-a", "list", "table", _nft.FAMILY, _nft.NAME) == table
    applied = converge(lab, fresh, drained)
    assert applied.changed
    assert set(counts(lab.requests("tcp", 30, TCP_PORT))) == {"alpha"}


def test_every_cluster_drained_rejects_new_connections(lab: Lab, fresh: Path) -> None:
    converge(lab, fresh, dict.fromkeys(PODS, (100, "drain")))
    assert set(lab.requests("tcp", 3, TCP_PORT)) == {"failed:ConnectionRefusedError"}


def test_an_unknown_scheduler_is_warned_about_per_service_and_served_by_weight(lab: Lab, fresh: Path) -> None:
    result = converge(lab, fresh, WEIGHTED, scheduler="sh")
    assert [w for w in result.warnings if "scheduler 'sh'" in w] == [
        f"{proto} 10.0.3.5:{port} (alpha/ns/web, beta/ns/web, gamma/ns/web): scheduler 'sh' is not available with "
        "the nftables engine (rr, wrr); new connections are spread at random by weight"
        for proto, port in (("tcp", TCP_PORT), ("udp", UDP_PORT))
    ]
    assert counts(lab.requests("tcp", 40, TCP_PORT))["gamma"] == 0


def test_nft_refuses_a_bad_transaction_in_check_and_names_it(lab: Lab, fresh: Path) -> None:
    driver = _nft.NftDriver(lab.runner, lab.stdin_runner)
    with pytest.raises(_nft.NftError, match=r"nft -c -f - refused table inet k8router_lb: .*Error"):
        driver.check(_nft.transaction({}).replace("jump services", "jump nowhere"))
    assert not lab.live().present


@pytest.mark.parametrize("case", ["services", "empty"])
def test_the_unit_tests_json_is_what_nft_prints(lab: Lab, fresh: Path, case: str) -> None:
    lab.nft("-f", "-", data=(GOLDEN / f"{case}.nft").read_text())
    stored = _nft.parse_live((GOLDEN / f"{case}.json").read_text())
    live = lab.live()
    assert live.problem is None and stored.problem is None
    assert live.table == stored.table
    netns_exec(lab.router, "nft", "delete", "table", _nft.FAMILY, _nft.NAME)


IPVS_ENGINE = dataclasses.replace(OPTIONS, engine="ipvs")


def test_switching_to_the_ipvs_engine_deletes_the_table_and_nothing_else(lab: Lab, fresh: Path) -> None:
    """engine: nftables, then ipvs: the removal of the nftables engine's table (``_lb.drop_other_engine``, the step
    ``converge_lb`` runs after an engine's own half) with the real nft in the router namespace. Check mode reports
    the deletion with the table as it is and leaves it serving; the run deletes it and the address is no longer
    DNAT'd; the fixture checks every other table (the role's, somebody else's) is as it was; a second run has
    nothing to remove. Not here: the IPVS half of an ipvs run, which needs ip_vs (this kernel has none; real IPVS is
    tests/integration/test_ipvs_kernel.py, where the reverse switch, nftables removing IPVS entries, is checked);
    an nft that cannot read or delete is the next test."""
    first = converge(lab, fresh, WEIGHTED)
    assert first.cleanup == [] and first.warnings == []  # engine nftables, no ip_vs here: no IPVS looked for
    served = lab.nft("-a", "list", "table", _nft.FAMILY, _nft.NAME)
    live = lab.live()
    assert live.present and live.problem is None
    checked = _lb.drop_other_engine(IPVS_ENGINE, lab.runner, check_mode=True)
    assert checked.changed
    assert checked.cleanup == [f"delete table {_nft.TABLE} (the nftables engine's; engine is ipvs)"]
    assert checked.cleanup_diff == {
        "before_header": f"nftables (table {_nft.TABLE})",
        "after_header": f"nftables (table {_nft.TABLE})",
        "before": _nft.render(live.table),
        "after": "",
    }
    assert checked.cleanup_diff["before"].startswith(f"table {_nft.TABLE} {{")
    # check mode: the very same table (same handles), still serving
    assert lab.nft("-a", "list", "table", _nft.FAMILY, _nft.NAME) == served
    assert counts(lab.requests("tcp", 10, TCP_PORT))["alpha"] > 0
    applied = _lb.drop_other_engine(IPVS_ENGINE, lab.runner, check_mode=False)
    assert applied.changed and applied.cleanup == checked.cleanup and applied.warnings == []
    assert not lab.live().present
    assert _nft.NAME not in lab.nft("list", "tables")
    # nothing DNATs the address any more: the router itself answers (nothing listens there)
    assert set(lab.requests("tcp", 3, TCP_PORT)) == {"failed:ConnectionRefusedError"}
    again = _lb.drop_other_engine(IPVS_ENGINE, lab.runner, check_mode=False)
    assert (again.changed, again.cleanup, again.cleanup_diff, again.warnings) == (False, [], {}, [])


def test_the_nftables_engine_never_runs_ipvsadm_without_ip_vs(lab: Lab, fresh: Path) -> None:
    """This kernel has no ip_vs: the nftables engine's run does not look for the ipvs engine's entries (ipvsadm
    would load the module)."""
    commands: list[str] = []

    def recorded(argv: Sequence[str]) -> tuple[int, str, str]:
        commands.append(" ".join(argv))
        return lab.runner(argv)

    clusters = [(None, _model.ClusterSettings(c)) for c in PODS]
    result = _lb.converge_lb(
        OPTIONS,
        clusters,  # type: ignore[arg-type]
        SNAPSHOTS,
        str(fresh),
        recorded,
        stdin_runner=lab.stdin_runner,
        check_mode=False,
    )
    assert result.changed and result.cleanup == [] and result.warnings == []
    assert commands and not [c for c in commands if "ipvsadm" in c], commands


def without_caps(lab: Lab, *verbs: str) -> Callable[[Sequence[str]], tuple[int, str, str]]:
    """The router's runner where nft ``verbs`` (the argv's first word after the options) run without any capability:
    the real nft then fails as it does for a user who may not touch the ruleset."""

    def run(argv: Sequence[str]) -> tuple[int, str, str]:
        words = [w for w in argv[1:] if not w.startswith("-")]
        if argv[0] == "nft" and words and words[0] in verbs:
            return lab.runner(["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", *argv])
        return lab.runner(argv)

    return run


def test_an_nft_that_cannot_read_is_a_warning_and_one_that_cannot_delete_fails_the_l4_half(
    lab: Lab, fresh: Path
) -> None:
    """engine: ipvs after nftables, with the real nft refused by the kernel (no CAP_NET_ADMIN): an nft that cannot
    list the table is a warning and the table stays; one that lists it but cannot delete it fails, naming the
    command and nft's answer. A router without nft is not looked at."""
    converge(lab, fresh, WEIGHTED)
    unread = _lb.drop_other_engine(IPVS_ENGINE, without_caps(lab, "list"), check_mode=False)
    assert unread.cleanup == [] and not unread.changed
    assert len(unread.warnings) == 1, unread.warnings
    assert unread.warnings[0].startswith(
        f"nftables: the nftables engine's table not looked for: nft -j list table {_nft.TABLE} failed"
    ), unread.warnings
    assert "Operation not permitted" in unread.warnings[0]
    assert lab.live().present
    with pytest.raises(
        K8RouterError, match=rf"nftables: nft delete table {_nft.TABLE} failed: .*Operation not permitted"
    ):
        _lb.drop_other_engine(IPVS_ENGINE, without_caps(lab, "delete"), check_mode=False)
    assert lab.live().present
    absent = dataclasses.replace(IPVS_ENGINE, nft="/nonexistent/nft")
    commands: list[str] = []

    def recorded(argv: Sequence[str]) -> tuple[int, str, str]:
        commands.append(" ".join(argv))
        return lab.runner(argv)

    result = _lb.drop_other_engine(absent, recorded, check_mode=False)
    assert (result.cleanup, result.warnings, commands) == ([], [], [])
    netns_exec(lab.router, "nft", "delete", "table", _nft.FAMILY, _nft.NAME)
