"""IPVS at scale: plan on the host (pure), apply on a real kernel (one qemu guest of ``tests/fixtures/ipvsvm.py``).

The table: ``--services`` LoadBalancer virtual services (every fifth one UDP, the rest TCP) on VIPs from
10.200.0.0/16, each with one real server per cluster (``--clusters``, the service's cluster IP in that
cluster, 10.96+c.x.y), NAT, weight 1. With the defaults: 1,000 services x 3 clusters = 4,000 ipvsadm
operations from scratch. Measured:

host (pure ``_ipvs``, median of ``--runs``):
  plan from scratch, plan of a one-service change (one cluster's cluster IP of one service changes: a
  real server delete + add), plan of no change; ``parse_save``/``format_save`` of the whole table.

guest (one boot; the host's python3 and ipvsadm on this checkout, ``IpvsDriver`` with subprocess runners):
  (a) from scratch with ``apply_restore`` (one ``ipvsadm -R`` fed the 4,000 adds; no flush),
  (b) reading the table back (``ipvsadm -Sn`` + parse) and checking it equals the desired table,
  (c) a no-change run (read + plan: 0 ops),
  (d) the one-service change (read + plan + ``apply``, one ipvsadm per op): only that service's ops,
  (e) from scratch with ``apply`` (one ipvsadm process per op) for ``--per-op-services`` services
      (default 100: 400 processes; the figure for the whole table is extrapolated unless it is the whole
      table), after the bench resets its own throw-away guest with ``ipvsadm -C``.

Under qemu TCG every ipvsadm process costs about 0.1 s, so per-op apply of 4,000 operations takes minutes
while one ``ipvsadm -R`` takes seconds; on a real router the ratio is similar (process start vs netlink
message). Figures move with the host's load (recorded). Writes ``bench/results/ipvs.json``.

    .venv/bin/python bench/bench_ipvs.py [--services 1000] [--clusters 3] [--per-op-services 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "K8R-BENCH-RESULT "


def _import_ipvs(repo: Path) -> Any:
    """``_ipvs`` from the checkout without the ``.collections`` link (a fresh clone or the guest)."""
    root = Path(tempfile.mkdtemp(prefix="k8r-pythonpath-"))
    atexit.register(shutil.rmtree, root, True)
    (root / "ansible_collections" / "k8router").mkdir(parents=True)
    (root / "ansible_collections" / "k8router" / "edge").symlink_to(repo)
    sys.path.insert(0, str(root))
    from ansible_collections.k8router.edge.plugins.module_utils import _ipvs  # noqa: PLC0415

    return _ipvs


def build_table(ipvs: Any, services: int, clusters: int, changed: int | None = None) -> dict[Any, Any]:
    """The benchmark's desired table; ``changed``: that service's real server in the second cluster moves."""
    table = {}
    for i in range(services):
        vip = f"10.200.{i // 250}.{i % 250 + 1}"
        protocol, port = ("udp", 53) if i % 5 == 4 else ("tcp", 80 + (i % 2) * 363)
        reals = []
        for c in range(clusters):
            host = 100 + (i // 250) if changed == i and c == min(1, clusters - 1) else i // 250
            reals.append(ipvs.RealServer(f"10.{96 + c}.{host}.{i % 250 + 1}", port, 1))
        svc = ipvs.VirtualService(protocol, vip, port, "wrr", tuple(reals))
        table[svc.key] = svc
    return table


def owned(key: tuple[str, str, int]) -> bool:
    return key[1].startswith("10.200.")


def _median_seconds(func: Callable[[], object], runs: int) -> tuple[float, Any]:
    times = []
    value: Any = None
    for _run in range(runs):
        start = time.perf_counter()
        value = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


# --------------------------------------------------------------------------------------------------------------
# guest side (python3 of the host tree, inside the qemu guest)


def _run(argv: Sequence[str]) -> tuple[int, str, str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def _run_stdin(argv: Sequence[str], data: str) -> tuple[int, str, str]:
    proc = subprocess.run(list(argv), input=data, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def guest_main(repo: Path, services: int, clusters: int, per_op_services: int) -> dict[str, Any]:
    ipvs = _import_ipvs(repo)
    driver = ipvs.IpvsDriver(_run, "ipvsadm", restore_runner=_run_stdin)
    desired = build_table(ipvs, services, clusters)
    result: dict[str, Any] = {}

    ops = ipvs.plan(desired, driver.current(), owned)
    start = time.monotonic()
    driver.apply_restore(ops)
    result["restore_from_scratch"] = {"ops": len(ops), "seconds": time.monotonic() - start}

    start = time.monotonic()
    current = driver.current()
    result["read_table"] = {"seconds": time.monotonic() - start, "equals_desired": current == desired}

    start = time.monotonic()
    ops = ipvs.plan(desired, driver.current(), owned)
    result["no_change_run"] = {"ops": len(ops), "seconds": time.monotonic() - start}

    changed_index = services // 2
    changed = build_table(ipvs, services, clusters, changed=changed_index)
    changed_key = list(changed)[changed_index]
    start = time.monotonic()
    current = driver.current()
    read = time.monotonic() - start
    ops = ipvs.plan(changed, current, owned)
    planned = time.monotonic() - start - read
    driver.apply(ops)
    result["one_service_change"] = {
        "ops": len(ops),
        "argv": [" ".join(op.argv) for op in ops],
        "only_that_service": {op.key for op in ops} == {changed_key},
        "read_seconds": read,
        "plan_seconds": planned,
        "apply_seconds": time.monotonic() - start - read - planned,
        "seconds": time.monotonic() - start,
        "equals_desired_after": driver.current() == changed,
    }

    _run(["ipvsadm", "-C"])  # the bench's own throw-away guest: reset for the per-op run
    subset = build_table(ipvs, per_op_services, clusters)
    ops = ipvs.plan(subset, {}, owned)
    start = time.monotonic()
    driver.apply(ops)
    seconds = time.monotonic() - start
    result["per_op_from_scratch"] = {
        "services": per_op_services,
        "ops": len(ops),
        "seconds": seconds,
        "seconds_per_op": seconds / max(1, len(ops)),
        "equals_desired": driver.current() == subset,
    }
    return result


# --------------------------------------------------------------------------------------------------------------
# host side


def host_plan(services: int, clusters: int, runs: int) -> dict[str, Any]:
    ipvs = _import_ipvs(REPO)
    desired = build_table(ipvs, services, clusters)
    changed = build_table(ipvs, services, clusters, changed=services // 2)
    out: dict[str, Any] = {}
    seconds, ops = _median_seconds(lambda: ipvs.plan(desired, {}, owned), runs)
    out["plan_from_scratch"] = {"ops": len(ops), "seconds": seconds}
    seconds, ops = _median_seconds(lambda: ipvs.plan(changed, desired, owned), runs)
    keys = {op.key for op in ops}
    out["plan_one_service_change"] = {"ops": len(ops), "seconds": seconds, "services_touched": len(keys)}
    seconds, ops = _median_seconds(lambda: ipvs.plan(desired, desired, owned), runs)
    out["plan_no_change"] = {"ops": len(ops), "seconds": seconds}
    seconds, text = _median_seconds(lambda: ipvs.format_save(desired), runs)
    out["format_save"] = {"seconds": seconds, "lines": text.count("\n")}
    seconds, parsed = _median_seconds(lambda: ipvs.parse_save(text), runs)
    out["parse_save"] = {"seconds": seconds, "equals": parsed == desired}
    return out


def _print_table(args: argparse.Namespace, host: dict[str, Any], guest: dict[str, Any], run: dict[str, Any]) -> None:
    total_ops = host["plan_from_scratch"]["ops"]
    per_op = guest["per_op_from_scratch"]
    full = per_op["services"] == args.services
    per_op_total = per_op["seconds"] if full else per_op["seconds_per_op"] * total_ops
    change = guest["one_service_change"]
    rows = [
        ("plan from scratch", "host", host["plan_from_scratch"]["ops"], host["plan_from_scratch"]["seconds"]),
        (
            "plan one-service change",
            "host",
            host["plan_one_service_change"]["ops"],
            host["plan_one_service_change"]["seconds"],
        ),
        ("plan no change", "host", host["plan_no_change"]["ops"], host["plan_no_change"]["seconds"]),
        ("parse_save (ipvsadm -Sn text)", "host", None, host["parse_save"]["seconds"]),
        (
            "apply from scratch: one ipvsadm -R",
            "guest",
            guest["restore_from_scratch"]["ops"],
            guest["restore_from_scratch"]["seconds"],
        ),
        (
            f"apply from scratch: ipvsadm per op{'' if full else ' (extrapolated)'}",
            "guest",
            total_ops,
            per_op_total,
        ),
        (f"  measured: {per_op['services']} services", "guest", per_op["ops"], per_op["seconds"]),
        ("read table (ipvsadm -Sn + parse)", "guest", None, guest["read_table"]["seconds"]),
        ("no-change run (read + plan)", "guest", guest["no_change_run"]["ops"], guest["no_change_run"]["seconds"]),
        ("one-service change (read+plan+apply)", "guest", change["ops"], change["seconds"]),
        ("  of which apply", "guest", change["ops"], change["apply_seconds"]),
    ]
    print(
        f"\nIPVS: {args.services} virtual services x {args.clusters} clusters ({total_ops} ipvsadm operations "
        f"from scratch); host planning median of {args.runs}; guest = qemu TCG, kernel {run['kernel']}"
    )
    print(f"{'phase':52} {'where':6} {'ops':>6} {'seconds':>9}")
    for name, where, ops, seconds in rows:
        ops_text = "" if ops is None else str(ops)
        seconds_text = "" if seconds is None else f"{seconds:9.3f}"
        print(f"{name:52} {where:6} {ops_text:>6} {seconds_text:>9}")
    print(
        f"one-service change: {change['argv']} (only that service: {change['only_that_service']}); "
        f"tables equal desired: {guest['read_table']['equals_desired']}, {change['equals_desired_after']}, "
        f"{per_op['equals_desired']}"
    )
    print(
        f"guest: boot to script {run['boot_seconds']:.1f} s, script {run['script_seconds']:.1f} s, "
        f"total {run['seconds']:.1f} s; load average {run['load_start']} -> {run['load_end']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--per-op-services", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--guest", metavar="REPO", help=argparse.SUPPRESS)  # inside the guest
    args = parser.parse_args(argv)
    per_op_services = min(args.per_op_services, args.services)
    if args.guest:
        result = guest_main(Path(args.guest), args.services, args.clusters, per_op_services)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    if str(REPO) not in sys.path:  # run as a script: tests.fixtures from the checkout (the guest needs none of it)
        sys.path.insert(0, str(REPO))
    from tests.fixtures import ipvsvm  # noqa: PLC0415

    load_start = os.getloadavg()
    host = host_plan(args.services, args.clusters, args.runs)
    script = "set -e\nexec python3 " + shlex.join(
        [
            str(Path(__file__).resolve()),
            *("--guest", str(REPO), "--services", str(args.services), "--clusters", str(args.clusters)),
            *("--per-op-services", str(per_op_services)),
        ]
    )
    guest_run = ipvsvm.run_in_guest(script, timeout=args.timeout)
    lines = [ln for ln in guest_run.output.splitlines() if ln.startswith(RESULT_PREFIX)]
    if guest_run.returncode != 0 or not lines:
        print(f"guest failed (rc={guest_run.returncode}):\n{guest_run.output[-4000:]}", file=sys.stderr)
        return 1
    guest = json.loads(lines[-1][len(RESULT_PREFIX) :])
    run = {
        "kernel": ipvsvm.find_kernel().version,
        "boot_seconds": guest_run.boot_seconds,
        "script_seconds": guest_run.script_seconds,
        "seconds": guest_run.seconds,
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "host": platform.node(),
        "cpus": os.cpu_count(),
    }
    _print_table(args, host, guest, run)
    out = REPO / "bench" / "results" / "ipvs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"args": vars(args), "host": host, "guest": guest, "run": run}
    out.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    print(f"written: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
