"""The IPVS driver against a real kernel: run INSIDE the qemu guest of ``tests/fixtures/ipvsvm.py`` (not collected by pytest).

Usage (in the guest, with the host's python3): ``python3 ipvs_guest_check.py REPO_ROOT``

Uses ``_ipvs.IpvsDriver`` with a subprocess runner on the guest's real IPVS and checks, with real traffic that
stays inside the guest (servers and clients on ``lo``):

- a desired table (TCP VIP -> two real servers standing in for cluster IPs, UDP VIP -> UDP echo servers,
  IPv6 TCP VIP, SCTP VIP) is applied and ``ipvsadm -Sn`` reads back exactly that;
- TCP through the VIP reaches both real servers over several connections; UDP and IPv6 answer through the VIPs;
- hand-made (foreign) entries survive every later apply untouched;
- replacing one real server, draining the other (weight 0) and changing the scheduler each issue only that
  service's operations, while an established TCP connection (HTTP keep-alive) keeps working throughout;
- a second apply issues zero operations; ipvsadm's errors come back as IpvsError naming the operation;
- a batch through ``ipvsadm -R`` (apply_restore) lands, and a failing line in it is detected;
- the module's L4 half (``_lb.converge_lb``) programs two clusters' services; switching to the nftables engine
  then removes exactly those virtual services (``_lb.drop_other_engine``; check mode changes nothing).

Prints one line ``K8R-IPVS-RESULT {json}``: ``checks`` (name -> {ok, detail}) and ``timings``.
"""

from __future__ import annotations

import http.client
import http.server
import ipaddress
import json
import os
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULT_PREFIX = "K8R-IPVS-RESULT "
VIP4, VIP6 = "10.0.0.1", "fd00::1"
POOL = [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::/120")]
REAL_A, REAL_B, REAL_C = "10.96.0.10", "10.96.0.11", "10.96.0.12"
REAL6 = "fd00:96::10"
HTTP_PORT, UDP_PORT = 8080, 5353
FOREIGN_COMMANDS = [
    ["-A", "-t", "10.0.9.9:443", "-s", "rr", "-p", "300"],
    ["-a", "-t", "10.0.9.9:443", "-r", "10.96.0.10:443", "-g", "-w", "1"],
    ["-A", "-u", "10.0.9.9:53", "-s", "sh", "-b", "sh-port"],
    ["-a", "-u", "10.0.9.9:53", "-r", "10.96.0.11:53", "-m", "-w", "4"],
    ["-A", "-f", "7", "-s", "rr"],
    ["-a", "-f", "7", "-r", "10.96.0.13:0", "-m", "-w", "1"],
]


def _import_ipvs(repo: Path) -> Any:
    """``_ipvs`` from the checkout, through ansible_collections/k8router/edge -> repo (a link on the guest's tmpfs)."""
    root = Path(tempfile.mkdtemp(prefix="k8r-pythonpath-"))
    (root / "ansible_collections" / "k8router").mkdir(parents=True)
    (root / "ansible_collections" / "k8router" / "edge").symlink_to(repo)
    sys.path.insert(0, str(root))
    from ansible_collections.k8router.edge.plugins.module_utils import _ipvs  # noqa: PLC0415

    return _ipvs


def run(argv: Sequence[str]) -> tuple[int, str, str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def run_stdin(argv: Sequence[str], data: str) -> tuple[int, str, str]:
    proc = subprocess.run(list(argv), input=data, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


# --------------------------------------------------------------------------------------------------------------
# servers standing in for the clusters' service IPs


def _host(server_address: object) -> str:
    return str(server_address[0]) if isinstance(server_address, tuple) else str(server_address)


class _Http(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self) -> None:
        body = f"real={_host(self.server.server_address)}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HttpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _HttpServer6(_HttpServer):
    address_family = socket.AF_INET6


def start_http(address: str) -> http.server.HTTPServer:
    cls = _HttpServer6 if ":" in address else _HttpServer
    server = cls((address, HTTP_PORT), _Http)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Udp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(f"real={_host(self.server.server_address)} ".encode() + data, self.client_address)


def start_udp(address: str) -> socketserver.UDPServer:
    server = socketserver.ThreadingUDPServer((address, UDP_PORT), _Udp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --------------------------------------------------------------------------------------------------------------
# clients


def http_get(conn: http.client.HTTPConnection) -> str:
    conn.request("GET", "/")
    response = conn.getresponse()
    body = response.read().decode().strip()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return body.removeprefix("real=")


def fresh_gets(host: str, count: int, port: int = 80) -> list[str]:
    """``count`` requests, each on a new TCP connection through the VIP: the real server that answered each."""
    answers = []
    for _request in range(count):
        conn = http.client.HTTPConnection(host, port, timeout=5)
        try:
            answers.append(http_get(conn))
        finally:
            conn.close()
    return answers


def udp_ask(vip: str, port: int, payload: bytes) -> tuple[str, tuple[str, int]]:
    """One datagram from a new socket (new source port): the real server named in the answer and its source."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(payload, (vip, port))
        data, source = sock.recvfrom(2048)
    text = data.decode()
    if not text.endswith(payload.decode()):
        raise RuntimeError(f"echo mismatch: {text!r}")
    return text.split()[0].removeprefix("real="), (source[0], source[1])


# --------------------------------------------------------------------------------------------------------------
# the checks


class Checks:
    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}
        self.timings: dict[str, float] = {}

    def record(self, name: str, ok: bool, detail: object) -> None:
        self.results[name] = {"ok": bool(ok), "detail": detail}

    def attempt(self, name: str, func: Callable[[], tuple[bool, object]]) -> None:
        start = time.monotonic()
        try:
            ok, detail = func()
        except Exception as exc:  # every failure becomes a failed check
            ok, detail = False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
        self.timings[name] = round(time.monotonic() - start, 3)
        self.record(name, ok, detail)


def main(repo: Path) -> dict[str, Any]:
    ipvs = _import_ipvs(repo)
    checks = Checks()
    driver = ipvs.IpvsDriver(run, "ipvsadm", restore_runner=run_stdin)

    def owned(key: tuple[str, str, int]) -> bool:
        return any(ipaddress.ip_address(key[1]) in net for net in POOL)

    def vs(proto: str, vip: str, port: int, sched: str, reals: Sequence[tuple[str, int, int]]) -> Any:
        return ipvs.VirtualService(proto, vip, port, sched, tuple(ipvs.RealServer(a, p, w) for a, p, w in reals))

    def table(*services: Any) -> dict[Any, Any]:
        return {s.key: s for s in services}

    def kernel_owned() -> dict[Any, Any]:
        return dict(ipvs.select(driver.current(), owned))

    def foreign_lines() -> list[str]:
        out = run(["ipvsadm", "-Sn"])[1]
        return [ln for ln in out.splitlines() if "10.0.9.9" in ln or " -f " in ln]

    for address in (VIP4, REAL_A, REAL_B, REAL_C):
        sh("ip", "addr", "add", f"{address}/32", "dev", "lo")
    for address in (VIP6, REAL6):
        sh("ip", "-6", "addr", "add", f"{address}/128", "dev", "lo", "nodad")
    Path("/proc/sys/net/ipv4/vs/conntrack").write_text("1\n")
    servers = [start_http(a) for a in (REAL_A, REAL_B, REAL_C, REAL6)]
    udp_servers = [start_udp(a) for a in (REAL_A, REAL_B)]

    tcp = vs("tcp", VIP4, 80, "rr", [(REAL_A, HTTP_PORT, 1), (REAL_B, HTTP_PORT, 1)])
    udp = vs("udp", VIP4, 53, "rr", [(REAL_A, UDP_PORT, 1), (REAL_B, UDP_PORT, 1)])
    tcp6 = vs("tcp", VIP6, 80, "wrr", [(REAL6, HTTP_PORT, 2)])
    sctp = vs("sctp", VIP4, 3868, "sh", [(REAL_A, 3868, 1), (REAL_B, 3868, 1)])
    desired = table(tcp, udp, tcp6, sctp)

    # 1. the first apply, from an empty table, and the table read back
    first_ops: list[Any] = []

    def first_apply() -> tuple[bool, object]:
        first_ops.extend(driver.sync(desired, owned))
        expected = 4 + sum(len(s.reals) for s in desired.values())
        return len(first_ops) == expected, {"ops": len(first_ops), "expected": expected}

    checks.attempt("first_apply", first_apply)

    def table_matches() -> tuple[bool, object]:
        read = kernel_owned()
        return read == desired, {"desired": ipvs.format_save(desired), "kernel": ipvs.format_save(read)}

    checks.attempt("table_matches_desired", table_matches)

    # 2. real traffic through the VIPs
    def tcp_both_reals() -> tuple[bool, object]:
        answers = fresh_gets(VIP4, 6)
        return set(answers) == {REAL_A, REAL_B}, {"answers": answers}

    checks.attempt("tcp_both_reals_answer", tcp_both_reals)

    def udp_through_vip() -> tuple[bool, object]:
        answers = [udp_ask(VIP4, 53, f"ping-{i}".encode()) for i in range(4)]
        reals = {pair[0] for pair in answers}
        sources = {pair[1] for pair in answers}
        return sources == {(VIP4, 53)} and reals <= {REAL_A, REAL_B} and bool(reals), {
            "reals": sorted(reals),
            "reply_sources": sorted(sources),
        }

    checks.attempt("udp_through_vip", udp_through_vip)

    def ipv6_through_vip() -> tuple[bool, object]:
        answers = fresh_gets(VIP6, 2)
        return set(answers) == {REAL6}, {"answers": answers}

    checks.attempt("ipv6_tcp_through_vip", ipv6_through_vip)

    # 3. foreign entries made by hand
    foreign_before: list[str] = []

    def foreign_added() -> tuple[bool, object]:
        for command in FOREIGN_COMMANDS:
            sh("ipvsadm", *command)
        foreign_before.extend(foreign_lines())
        ops = driver.sync(desired, owned)
        return ops == [] and len(foreign_before) == len(FOREIGN_COMMANDS), {
            "ops": [op.text for op in ops],
            "foreign": foreign_before,
        }

    checks.attempt("foreign_added_no_ops", foreign_added)

    # 4. changes while a TCP connection is established to the real server that stays
    kept = http.client.HTTPConnection(VIP4, 80, timeout=5)
    state: dict[str, Any] = {}

    def keepalive_open() -> tuple[bool, object]:
        state["first"] = http_get(kept)
        state["second"] = http_get(kept)
        return state["first"] == state["second"] and state["first"] in {REAL_A, REAL_B}, dict(state)

    checks.attempt("keepalive_opened", keepalive_open)
    stay = state.get("first", REAL_A)
    other = REAL_B if stay == REAL_A else REAL_A

    def replace_other() -> tuple[bool, object]:
        new_tcp = vs("tcp", VIP4, 80, "rr", [(stay, HTTP_PORT, 1), (REAL_C, HTTP_PORT, 1)])
        desired[new_tcp.key] = new_tcp
        ops = driver.sync(desired, owned)
        argvs = [" ".join(op.argv) for op in ops]
        expected = [
            f"-d -t {VIP4}:80 -r {other}:{HTTP_PORT}",
            f"-a -t {VIP4}:80 -r {REAL_C}:{HTTP_PORT} -m -w 1",
        ]
        still = http_get(kept)
        answers = fresh_gets(VIP4, 6)
        ok = argvs == expected and still == stay and set(answers) == {stay, REAL_C}
        return ok, {"ops": argvs, "expected": expected, "kept_connection": still, "new_connections": answers}

    checks.attempt("replace_other_real_keeps_connection", replace_other)

    def drain_kept_real() -> tuple[bool, object]:
        drained = vs("tcp", VIP4, 80, "rr", [(stay, HTTP_PORT, 0), (REAL_C, HTTP_PORT, 1)])
        desired[drained.key] = drained
        ops = driver.sync(desired, owned)
        argvs = [" ".join(op.argv) for op in ops]
        still = http_get(kept)
        answers = fresh_gets(VIP4, 4)
        ok = argvs == [f"-e -t {VIP4}:80 -r {stay}:{HTTP_PORT} -m -w 0"] and still == stay
        ok = ok and set(answers) == {REAL_C}
        return ok, {"ops": argvs, "kept_connection": still, "new_connections": answers}

    checks.attempt("drain_weight0_keeps_connection", drain_kept_real)

    def edit_scheduler() -> tuple[bool, object]:
        current = desired[tcp.key]
        wrr = ipvs.VirtualService("tcp", VIP4, 80, "wrr", current.reals)
        desired[wrr.key] = wrr
        ops = driver.sync(desired, owned)
        argvs = [" ".join(op.argv) for op in ops]
        still = http_get(kept)
        return argvs == [f"-E -t {VIP4}:80 -s wrr"] and still == stay, {"ops": argvs, "kept_connection": still}

    checks.attempt("scheduler_edit_keeps_connection", edit_scheduler)
    kept.close()

    def second_apply() -> tuple[bool, object]:
        ops = driver.sync(desired, owned)
        read = kernel_owned()
        return ops == [] and read == desired, {"ops": [op.text for op in ops]}

    checks.attempt("second_apply_zero_ops", second_apply)

    def delete_service() -> tuple[bool, object]:
        del desired[udp.key]
        ops = driver.sync(desired, owned)
        argvs = [" ".join(op.argv) for op in ops]
        return argvs == [f"-D -u {VIP4}:53"] and kernel_owned() == desired, {"ops": argvs}

    checks.attempt("delete_one_service_only", delete_service)

    # 5. ipvsadm's errors, and batches through ipvsadm -R
    def error_names_op() -> tuple[bool, object]:
        ghost = vs("tcp", VIP4, 9999, "rr", [(REAL_A, HTTP_PORT, 1)])
        op = ipvs.Op(ipvs.OP_ADD_REAL, ghost, ghost.reals[0])
        try:
            driver.apply([op])
        except ipvs.IpvsError as exc:
            return exc.op == op and "add real server" in str(exc) and bool(exc.stderr.strip()), str(exc)
        return False, "no IpvsError"

    checks.attempt("error_names_operation", error_names_op)

    def restore_batch() -> tuple[bool, object]:
        batch = table(*(vs("tcp", "10.0.0.200", 1000 + i, "rr", [(REAL_A, 2000 + i, 1)]) for i in range(20)))
        ops = ipvs.plan({**desired, **batch}, driver.current(), owned)
        start = time.monotonic()
        applied = driver.apply_restore(ops)
        seconds = time.monotonic() - start
        ok = applied == 40 and kernel_owned() == {**desired, **batch}
        cleanup = driver.sync(desired, owned)
        ok = ok and len(cleanup) == 20 and kernel_owned() == desired
        return ok, {"applied": applied, "restore_seconds": round(seconds, 3), "cleanup_ops": len(cleanup)}

    checks.attempt("apply_restore_batch", restore_batch)

    def restore_failure_detected() -> tuple[bool, object]:
        fresh = vs("tcp", "10.0.0.201", 80, "rr", [(REAL_A, 80, 1)])
        ops = ipvs.plan({fresh.key: fresh}, {}, owned)
        # The real server is already there: ipvsadm -R says so and goes on (exit 0 unless it is the last line).
        clash = ipvs.Op(ipvs.OP_ADD_REAL, fresh, ipvs.RealServer(REAL_A, 80, 7))
        try:
            driver.apply_restore([*ops, clash])
        except ipvs.IpvsError as exc:
            driver.sync(desired, owned)
            return exc.op == clash and exc.applied == 2, str(exc)
        return False, "no IpvsError"

    checks.attempt("apply_restore_failure_detected", restore_failure_detected)

    def module_lb_converge() -> tuple[bool, object]:
        """The module's L4 half (_lb.converge_lb) from two clusters' snapshots onto the real table, with traffic."""
        from ansible_collections.k8router.edge.plugins.module_utils import _lb, _model, _services  # noqa: PLC0415

        svc = _services.LbService
        http = (_services.ServicePortSpec("tcp", HTTP_PORT),)
        snapshots = {
            "alpha": _model.ClusterSnapshot("alpha", 0.0, services=[
                svc("alpha", "ns", "web", "10.96.0.31", http, "edge", "10.0.3.5"),
                svc("alpha", "ns", "api", "10.96.0.32", http, "edge"),
                svc("alpha", "ns", "other", "10.96.0.33", http, "not-ours"),
                # enough new entries at once for one ipvsadm -R
                *[svc("alpha", "bulk", f"b{i:02d}", f"10.96.1.{i + 1}",
                      (_services.ServicePortSpec("tcp", 9000), _services.ServicePortSpec("udp", 9001)), "edge")
                  for i in range(12)],
            ]),
            "beta": _model.ClusterSnapshot("beta", 0.0, services=[svc("beta", "ns", "web", "10.97.0.31", http, "edge", "10.0.3.5")]),
        }  # fmt: skip
        for address in ("10.0.3.1", "10.0.3.5", "10.96.0.31", "10.96.0.32", "10.97.0.31"):
            sh("ip", "addr", "add", f"{address}/32", "dev", "lo")
        backends = [start_http(a) for a in ("10.96.0.31", "10.96.0.32", "10.97.0.31")]
        opts = _lb.LbOptions(settings=_services.LbSettings(pool=("10.0.3.0/28",)), classes=("edge",))
        clusters = [(None, _model.ClusterSettings("alpha")), (None, _model.ClusterSettings("beta"))]
        state = tempfile.mkdtemp(prefix="k8r-lb-")
        try:
            first = _lb.converge_lb(opts, clusters, snapshots, state, run, stdin_runner=run_stdin, check_mode=False)  # type: ignore[arg-type]
            table = {k: v for k, v in driver.current().items() if k[1].startswith("10.0.3.")}
            shared = table.get(("tcp", "10.0.3.5", HTTP_PORT))
            answers = sorted(set(fresh_gets("10.0.3.5", 8, HTTP_PORT)))
            second = _lb.converge_lb(opts, clusters, snapshots, state, run, stdin_runner=run_stdin, check_mode=False)  # type: ignore[arg-type]
            drained = [(None, _model.ClusterSettings("alpha")), (None, _model.ClusterSettings("beta", state="drain"))]
            third = _lb.converge_lb(opts, drained, snapshots, state, run, stdin_runner=run_stdin, check_mode=False)  # type: ignore[arg-type]
        finally:
            for server in backends:
                server.shutdown()
                server.server_close()
        detail = {
            "first": first.operations,
            "services": first.services,
            "table": sorted(f"{k[0]} {k[1]}:{k[2]} -> {[r.endpoint for r in v.reals]}" for k, v in table.items()),
            "answers": answers,
            "second": second.operations,
            "drain": third.operations,
        }
        addresses = {s["service"]: s["address"] for s in first.services}
        ok = (
            addresses["alpha/ns/web"] == addresses["beta/ns/web"] == "10.0.3.5"
            and len(set(addresses.values())) == 14
            and len(addresses) == 15
            and "alpha/ns/other" not in addresses
            and len(table) == 2 + 24
            and len(first.operations) == (1 + 2) + (1 + 1) + 24 * 2
            and {("tcp", "10.0.3.5", HTTP_PORT), ("tcp", addresses["alpha/ns/api"], HTTP_PORT)} <= set(table)
            and shared is not None
            and sorted(r.address for r in shared.reals) == ["10.96.0.31", "10.97.0.31"]
            and answers == ["10.96.0.31", "10.97.0.31"]
            and second.operations == []
            and not second.changed
            and len(third.operations) == 1
            and "10.97.0.31" in third.operations[0]
        )
        return ok, detail

    checks.attempt("module_lb_converge", module_lb_converge)

    def engine_switch_drops_ipvs() -> tuple[bool, object]:
        """engine: ipvs (what module_lb_converge left in the kernel), then nftables: the step converge_lb runs after
        the nftables half (_lb.drop_other_engine) removes k8router's virtual services on the pool, with the real
        ipvsadm. Check mode reports them and the VIP still answers; the run deletes them and nothing else (the
        earlier tables' entries outside that pool, the hand-made ones); a second run has nothing to remove."""
        from ansible_collections.k8router.edge.plugins.module_utils import _lb, _services  # noqa: PLC0415

        lb_pool = ipaddress.ip_network("10.0.3.0/28")
        opts = _lb.LbOptions(settings=_services.LbSettings(pool=(str(lb_pool),)), classes=("edge",), engine="nftables")

        def ours() -> dict[Any, Any]:
            return {k: v for k, v in driver.current().items() if ipaddress.ip_address(k[1]) in lb_pool}

        def others() -> dict[Any, Any]:
            return {k: v for k, v in driver.current().items() if ipaddress.ip_address(k[1]) not in lb_pool}

        left, kept = ours(), others()
        backends = [start_http(a) for a in ("10.96.0.31", "10.97.0.31")]
        try:
            checked = _lb.drop_other_engine(opts, run, check_mode=True)
            after_check = ours()
            served = sorted(set(fresh_gets("10.0.3.5", 6, HTTP_PORT)))
            applied = _lb.drop_other_engine(opts, run, check_mode=False)
            remaining, untouched = ours(), others()
            try:
                fresh_gets("10.0.3.5", 1, HTTP_PORT)
                refused: object = "answered"
            except ConnectionRefusedError:
                refused = True
            again = _lb.drop_other_engine(opts, run, check_mode=False)
        finally:
            for server in backends:
                server.shutdown()
                server.server_close()
        expected = sorted(
            f"delete virtual service {v.name} (with its {len(v.reals)} real servers) (the ipvs engine's; engine is nftables)"
            for v in left.values()
        )
        detail = {
            "left": ipvs.format_save(left),
            "cleanup": checked.cleanup,
            "expected": expected,
            "diff": checked.cleanup_diff,
            "after_check": ipvs.format_save(after_check),
            "served_in_check_mode": served,
            "remaining": ipvs.format_save(remaining),
            "refused_after": refused,
            "again": [again.cleanup, again.warnings],
        }
        ok = (
            len(left) == 2 + 24  # module_lb_converge's services
            and checked.changed
            and sorted(checked.cleanup) == expected
            and checked.cleanup_diff
            == {
                "before_header": "IPVS (k8router's entries)",
                "after_header": "IPVS (k8router's entries)",
                "before": ipvs.format_save(left),
                "after": "",
            }
            and checked.warnings == []
            and after_check == left
            and served == ["10.96.0.31"]  # beta drained by module_lb_converge's last run
            and applied.changed
            and applied.cleanup == checked.cleanup
            and remaining == {}
            and untouched == kept
            and bool(kept)
            and refused is True
            and (again.changed, again.cleanup, again.cleanup_diff, again.warnings) == (False, [], {}, [])
        )
        return ok, detail

    checks.attempt("engine_switch_drops_ipvs", engine_switch_drops_ipvs)

    def foreign_untouched() -> tuple[bool, object]:
        after = foreign_lines()
        return after == foreign_before and bool(after), {"before": foreign_before, "after": after}

    checks.attempt("foreign_entries_untouched", foreign_untouched)

    for server in [*servers, *udp_servers]:
        server.shutdown()
        server.server_close()
    return {"checks": checks.results, "timings": checks.timings}


if __name__ == "__main__":
    started = time.monotonic()
    try:
        result = main(Path(sys.argv[1]).resolve())
    except Exception as exc:  # reported to the host as a failed setup
        result = {"checks": {"setup": {"ok": False, "detail": traceback.format_exc()}}, "error": str(exc)}
    result["guest_seconds"] = round(time.monotonic() - started, 3)
    result["python"] = sys.version.split()[0]
    result["kernel"] = os.uname().release
    print(RESULT_PREFIX + json.dumps(result), flush=True)
