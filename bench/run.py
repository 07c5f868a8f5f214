"""Every benchmark in one command, and one table of their figures with side-by-side ratios.

Runs, one after the other, ``bench_k8router.py``, ``bench_ipvs.py``, ``bench_reloads.py`` and ``bench_agent.py``
(each writes its figures as JSON under ``bench/results/``) and, when the local lab is up (``python lab/lab.py status
--json`` exits 0; ``--lab`` brings it up first with ``python lab/lab.py up``), the lab scenarios
``fail-master`` (VRRP failover gap) and ``ingress-change`` (from an Ingress change to being served, with the
agents and with the convergence timers alone), whose JSON it keeps as ``vrrp.json`` and ``ingress-change.json``.
It reads the JSON, never the benches' printed output, and prints one row per figure: the measured value, what it is
compared with (kubectl doing the same read, one ipvsadm per operation, requests sent, a target, the timer
interval), the ratio measured / compared, the target and whether it is met. The table is also written as
``bench/results/summary.json`` and ``bench/results/summary.md`` (a markdown table for a closing note); each
bench's own output goes to ``bench/results/<name>.log``.

A bench that fails, or whose results cannot be read, shows the error in its row; the others still run and the
exit status is 1. A missed target does not change the exit status: the benches measure, they assert nothing.

    .venv/bin/python bench/run.py [--only NAME[,NAME]] [--quick] [--lab] [--report]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import NoneType
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
LAB = REPO / "lab" / "lab.py"

VRRP_TARGET_S = 4.0
# The timer picks a change up at its next run: up to one interval plus its randomised delay (a tenth of the
# interval, roles/router's timer) later; that run (read, render, validate, reload) comes on top.
INGRESS_RUN_ALLOWANCE_S = 15.0
AGENT_INGRESS_TARGET_S = 2.0  # a new host with its reload
LAB_NOT_UP = "lab not up (make lab)"


# --------------------------------------------------------------------------------------------------------------
# figures (pure: result dicts in, rows out)


def ratio(value: float | None, against: float | None) -> float | None:
    """``value / against``; None when either is missing or ``against`` is 0."""
    if value is None or against is None or against == 0:
        return None
    return value / against


@dataclass(frozen=True)
class Figure:
    """One row of the table: a measured value, what it is compared with, and the target it should meet."""

    bench: str
    name: str
    value: float | None = None
    unit: str = ""  # "" for counts
    against: float | None = None  # the comparison, in the same unit
    against_label: str = ""
    target: str = ""  # "" when the figure has none
    met: bool | None = None
    note: str = ""
    error: str = ""  # set when the figure was not measured: why

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.against)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio}


def k8router_figures(data: Mapping[str, Any]) -> list[Figure]:
    """From ``bench_k8router.py``: the no-change run against kubectl's read of the same clusters, and changes."""
    setup, a, b, c = data["setup"], data["a_first_converge"], data["b_no_change"], data["c_kubectl"]
    d, e = data["d_pod_not_ready"], data["e_new_host"]
    scale = f"{setup['clusters']} clusters x {setup['ingresses_per_cluster']} Ingresses"
    kubectls = f"kubectl x{len(c['items_per_cluster'])}"
    median = f"median of {b['runs']}"
    return [
        Figure("k8router", f"k8router no-change run, wall ({scale})", b["wall_s_median"], "s",
               c["sequential_wall_s_median"], f"{kubectls} one after the other",
               note=f"{median}; changed={b['any_changed']}"),
        Figure("k8router", "k8router no-change run, wall, vs kubectl at once", b["wall_s_median"], "s",
               c["parallel_wall_s_median"], f"{kubectls} at once", note=median),
        Figure("k8router", "k8router no-change run, peak memory", b["maxrss_mib_median"], "MiB",
               c["sequential_maxrss_mib_median"], "one kubectl", note=median),
        Figure("k8router", "k8router no-change run, peak memory, vs kubectl at once", b["maxrss_mib_median"], "MiB",
               c["parallel_maxrss_mib_median_sum"], f"{kubectls} at once (sum)", note=median),
        Figure("k8router", "k8router first converge, from scratch", a["wall_s"], "s",
               note=f"{a['hosts']} hosts; reloaded={a['reloaded']}"),
        Figure("k8router", "pod not ready -> applied", d["change_to_applied_s"], "s", target="no reload",
               met=bool(not d["reloaded"] and d["worker_pids_unchanged"] and d["pod_out_of_service_at_runtime"]),
               note=f"{d['runtime_commands']} runtime API commands"),
        Figure("k8router", "new Ingress -> applied", e["change_to_applied_s"], "s", target="host served after one run",
               met=bool(e["host_in_map"] and not e["next_run_changed"]), note=f"reloaded={e['reloaded']}"),
        *renewal_figures(data.get("f_renew_all")),
    ]  # fmt: skip


def renewal_figures(f: Mapping[str, Any] | None) -> list[Figure]:
    """From ``bench_k8router.py`` step (f), when it ran: every certificate renewed under TLS load."""
    if not f:
        return []
    met = bool(not f["reloaded"] and f["worker_pids_unchanged"] and f["renewed_served_at_end"])
    sent = f["requests_ok"] + f["requests_failed"]
    return [
        Figure("k8router", f"every certificate renewed ({f['certificates']}) under TLS load, run", f["wall_s"], "s",
               target="0 reloads", met=met, note=f"{f['runtime_commands']} runtime API commands"),
        Figure("k8router", "requests failed while every certificate is renewed", f["requests_failed"], "requests",
               sent, "requests sent", target="0", met=f["requests_failed"] == 0),
    ]  # fmt: skip


def ipvs_figures(data: Mapping[str, Any]) -> list[Figure]:
    """From ``bench_ipvs.py``: one ``ipvsadm -R`` batch against one ipvsadm per operation, and the small runs."""
    host, guest = data["host"], data["guest"]
    restore, per_op = guest["restore_from_scratch"], guest["per_op_from_scratch"]
    change, nochange = guest["one_service_change"], guest["no_change_run"]
    ops = restore["ops"]
    whole = per_op["ops"] == ops
    per_op_s = per_op["seconds"] if whole else per_op["seconds_per_op"] * ops
    how = "measured" if whole else f"extrapolated from {per_op['ops']} ops"
    speedup = ratio(per_op_s, restore["seconds"])
    faster = "?" if speedup is None else f"{speedup:.0f}x"
    return [
        Figure("ipvs", f"IPVS apply from scratch, one ipvsadm -R ({ops} ops)", restore["seconds"], "s",
               per_op_s, f"one ipvsadm per op ({how})", note=f"qemu TCG guest; batch {faster} faster"),
        Figure("ipvs", "IPVS one-service change (read, plan, apply)", change["seconds"], "s",
               target="only that service", met=bool(change["only_that_service"] and change["equals_desired_after"]),
               note=f"{change['ops']} ops"),
        Figure("ipvs", "IPVS no-change run (read, plan)", nochange["seconds"], "s", target="0 ops",
               met=nochange["ops"] == 0),
        Figure("ipvs", f"IPVS plan from scratch on the host ({host['plan_from_scratch']['ops']} ops)",
               host["plan_from_scratch"]["seconds"], "s"),
    ]  # fmt: skip


CLIENT_LABELS = {"new": "new connections", "keepalive": "keep-alive"}


def reloads_figures(data: Mapping[str, Any]) -> list[Figure]:
    """From ``bench_reloads.py``: requests failed while haproxy reloads (target 0)."""
    clients = data["clients"]
    requests = sum(c["ok"] + c["failed"] for c in clients)
    failed = sum(c["failed"] for c in clients)
    per_client = "; ".join(
        f"{CLIENT_LABELS.get(c['mode'], c['mode'])} {c['failed']}/{c['ok'] + c['failed']}" for c in clients
    )
    reload_s = data["reload_s"]
    return [
        Figure("reloads", f"requests failed during {data['reloads']} haproxy reloads", failed, "",
               requests, "requests sent", target="0", met=failed == 0 and requests > 0, note=per_client),
        Figure("reloads", "haproxy reload until the new worker answers", statistics.median(reload_s), "s",
               note=f"median; max {max(reload_s):.2f} s"),
    ]  # fmt: skip


def vrrp_figures(data: Mapping[str, Any]) -> list[Figure]:
    """From the lab scenario ``fail-master``: the VRRP failover gap (target under 4 s)."""
    r = data["result"]
    gap = float(r["gap_s"])
    moved = f"; VIP moved after {r['vip_moved_after_s']} s" if r.get("vip_moved_after_s") is not None else ""
    return [
        Figure("vrrp", "VRRP failover gap (master fails)", gap, "s", VRRP_TARGET_S, "target",
               target=f"< {VRRP_TARGET_S:g} s", met=gap < VRRP_TARGET_S and r["new_master"] is not None,
               note=f"{r['old_master']} -> {r['new_master'] or 'no new master'}{moved}"),
        Figure("vrrp", "requests failed during the failover", r["failed_requests"], "", r["requests"],
               "requests sent"),
    ]  # fmt: skip


def ingress_change_figures(data: Mapping[str, Any]) -> list[Figure]:
    """From the lab scenario ``ingress-change``: from the change to being served, with the agents and with the
    timers alone (the timer within its interval, its run on top)."""
    r = data["result"]
    agent, timer, interval = (
        float(r["seconds_with_agent"]),
        float(r["seconds_timer_only"]),
        float(r["timer_interval_s"]),
    )
    return [
        Figure("ingress-change", "Ingress change -> served (lab, agents)", agent, "s", timer, "timer alone",
               target=f"<= {AGENT_INGRESS_TARGET_S:g} s", met=agent <= AGENT_INGRESS_TARGET_S),
        Figure("ingress-change", "Ingress change -> served (lab, timer alone)", timer, "s", interval,
               "timer interval", target=f"<= 1.1 x interval + {INGRESS_RUN_ALLOWANCE_S:g} s",
               met=timer <= 1.1 * interval + INGRESS_RUN_ALLOWANCE_S),
    ]  # fmt: skip


def agent_figures(data: Mapping[str, Any]) -> list[Figure]:
    """From ``bench_agent.py``: the agent's p95 latencies against the periodic run alone, under load, an outage."""
    new, pod, load, out = data["new_ingress_s_p95"], data["pod_not_ready_s_p95"], data["load"], data["outage"]
    timer = f"timer alone ({data['setup']['timer_s']:g} s)"
    setup = f"{data['setup']['clusters']} clusters x {data['setup']['ingresses']} Ingresses"
    return [
        Figure("agent", "pod not ready -> out of rotation, p95", pod["agent"], "s", pod["timer"], timer,
               target="<= 1 s", met=pod["agent"] is not None and pod["agent"] <= 1, note=setup),
        Figure("agent", "new Ingress -> served, p95", new["agent"], "s", new["timer"], timer,
               target=f"<= {AGENT_INGRESS_TARGET_S:g} s", met=new["agent"] is not None
               and new["agent"] <= AGENT_INGRESS_TARGET_S),
        Figure("agent", f"{load['changes']} changes in {load['seconds']:g} s: reloads a second", load["reloads_per_s"],
               "", target="<= 1", met=load["reloads_per_s"] <= 1 and not load["missing"],
               note=f"all served {load['all_served_after_s']} s after the last; missing {len(load['missing'])}"),
        Figure("agent", "agent peak RSS under load", load["rss_peak_mib"], "MiB", target="<= 150 MiB",
               met=load["rss_peak_mib"] <= 150),
        Figure("agent", "agent CPU under load", load["cpu_cores"], "cores", target="<= 0.5",
               met=load["cpu_cores"] <= 0.5),
        Figure("agent", "API server killed: hosts removed while away", out["removed_while_away"], "",
               out["hosts_before"], "hosts before", target="0", met=out["removed_while_away"] == 0),
        Figure("agent", "API server back (/readyz) -> followed again", out["resumed_after_ready_s"], "s",
               target="<= 5 s", met=out["resumed_after_ready_s"] is not None and out["resumed_after_ready_s"] <= 5,
               note=f"its /readyz came {out['apiserver_ready_after_start_s']} s after its start"),
    ]  # fmt: skip


Fields = tuple[tuple[str, type | tuple[type, ...]], ...]


def parse_scenario(stdout: str, fields: Fields) -> dict[str, Any]:
    """The JSON object on the last non-empty line of a lab scenario's output, with ``fields`` of those types.

    A float field takes an int; a field that may be null names ``NoneType`` among its types.
    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no output")
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"last line is not JSON: {lines[-1][:80]!r}") from exc
    if not isinstance(result, dict):
        raise ValueError(f"last line is not a JSON object: {lines[-1][:80]!r}")
    for name, kind in fields:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        accepted = tuple({int, *kinds} if float in kinds else kinds)
        value = result.get(name)
        if name not in result or isinstance(value, bool) or not isinstance(value, accepted):
            wanted = " or ".join("null" if k is NoneType else k.__name__ for k in kinds)
            raise ValueError(f"no {wanted} {name!r} in its JSON")
    return result


def bench_load(data: Mapping[str, Any]) -> tuple[list[float] | None, list[float] | None]:
    """The load average a bench recorded at its start and end (bench_ipvs keeps them under ``run``)."""
    run = data.get("run")
    if not isinstance(run, Mapping):
        run = {}
    start = data.get("load_average_at_start", run.get("load_start"))
    end = data.get("load_average_at_end", run.get("load_end"))
    return (list(start) if start else None, list(end) if end else None)


# --------------------------------------------------------------------------------------------------------------
# the table (pure)


HEADER = ("figure", "measured", "compared with", "ratio", "target", "met", "notes")
RIGHT = frozenset({1, 3})  # measured, ratio


def fmt_number(x: float) -> str:
    if float(x).is_integer():
        return str(int(x))
    size = abs(x)
    if size >= 100:
        return f"{x:.0f}"
    if size >= 10:
        return f"{x:.1f}"
    if size >= 0.1:
        return f"{x:.2f}"
    return f"{x:.2g}"


def fmt_quantity(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{fmt_number(value)} {unit}".rstrip()


def cells(figure: Figure) -> list[str]:
    """The row's cells, as ``HEADER`` names them; a figure not measured gives its reason as the measured cell."""
    if figure.error:
        return [figure.name, figure.error, "", "", "", "", ""]
    against = fmt_quantity(figure.against, figure.unit)
    compared = "-" if figure.against is None else f"{figure.against_label}: {against}"
    ratio_text = "-" if figure.ratio is None else fmt_number(figure.ratio)
    met = {None: "-", True: "yes", False: "NO"}[figure.met]
    return [figure.name, fmt_quantity(figure.value, figure.unit), compared, ratio_text, figure.target or "-", met,
            figure.note]  # fmt: skip


def text_table(figures: Sequence[Figure]) -> str:
    """Aligned plain text; a row not measured shows its reason after the name, outside the columns."""
    rows = [cells(f) for f in figures]
    measured = [list(HEADER)] + [row for row, f in zip(rows, figures, strict=True) if not f.error]
    widths = [max(len(row[i]) for row in measured) for i in range(len(HEADER))]
    widths[0] = max([widths[0]] + [len(f.name) for f in figures])

    def line(row: Sequence[str]) -> str:
        padded = [c.rjust(w) if i in RIGHT else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join([*padded[:-1], row[-1]]).rstrip()

    out = [line(HEADER), "  ".join("-" * w for w in widths[:-1]) + "  " + "-" * max(widths[-1], len(HEADER[-1]))]
    for row, figure in zip(rows, figures, strict=True):
        out.append(f"{figure.name.ljust(widths[0])}  {figure.error}" if figure.error else line(row))
    return "\n".join(out) + "\n"


def markdown_table(figures: Sequence[Figure]) -> str:
    def row(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    align = ["---:" if i in RIGHT else "---" for i in range(len(HEADER))]
    return "\n".join([row(HEADER), "|" + "|".join(align) + "|", *(row(cells(f)) for f in figures)]) + "\n"


@dataclass
class BenchRun:
    """What happened to one bench in this run of ``bench/run.py``."""

    name: str
    status: str  # "ok", "failed", "skipped" (lab not up), "reported" (--report: earlier results)
    error: str = ""
    seconds: float | None = None
    results: str = ""
    log: str = ""
    results_date: str = ""
    load_start: list[float] | None = None
    load_end: list[float] | None = None


def fmt_load(load: Sequence[float] | None) -> str:
    return "?" if not load else " ".join(f"{x:.2f}" for x in load[:3])


def bench_lines(runs: Sequence[BenchRun]) -> list[str]:
    """One line per bench: what happened, how long it took, the load average it saw."""
    lines = []
    for r in runs:
        text = f"{r.name}: {r.status}"
        if r.seconds is not None:
            text += f" in {r.seconds:.0f} s"
        if r.status == "reported":
            text += f", results of {r.results_date}"
        if r.load_start or r.load_end:
            text += f", load {fmt_load(r.load_start)} -> {fmt_load(r.load_end)}"
        if r.error:
            text += f": {r.error}"
        lines.append(text)
    return lines


def summary(
    figures: Sequence[Figure],
    runs: Sequence[BenchRun],
    *,
    mode: str,
    date: str,
    load_start: Sequence[float],
    load_end: Sequence[float],
) -> dict[str, Any]:
    return {
        "date": date,
        "mode": mode,
        "load_average_at_start": list(load_start),
        "load_average_at_end": list(load_end),
        "benches": [asdict(r) for r in runs],
        "figures": [f.as_dict() for f in figures],
    }


def summary_markdown(data: Mapping[str, Any], figures: Sequence[Figure], runs: Sequence[BenchRun]) -> str:
    head = (
        f"Benchmarks of {data['date']} ({data['mode']}); load average (1, 5, 15 min) at start "
        f"{fmt_load(data['load_average_at_start'])}, at end {fmt_load(data['load_average_at_end'])}. "
        "Ratio = measured / compared with.\n\n"
    )
    return head + markdown_table(figures) + "\n" + "".join(f"- {line}\n" for line in bench_lines(runs))


# --------------------------------------------------------------------------------------------------------------
# the benches


@dataclass(frozen=True)
class Bench:
    name: str
    title: str  # the row a bench gets when it was not measured
    figures: Callable[[Mapping[str, Any]], list[Figure]]
    script: str = ""  # a bench of bench/
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()
    scenario: str = ""  # a lab scenario: ``python lab/lab.py scenario NAME --json``
    fields: Fields = ()  # what the scenario's JSON holds at least
    timeout_s: float = 3600.0

    @property
    def results(self) -> Path:
        return RESULTS / f"{self.name}.json"

    @property
    def log(self) -> Path:
        return RESULTS / f"{self.name}.log"


BENCHES = (
    Bench("k8router", "k8router vs kubectl (bench_k8router.py)", k8router_figures,
          script="bench_k8router.py", quick_args=("--ingresses", "200", "--runs", "3")),
    Bench("ipvs", "IPVS apply and plan (bench_ipvs.py)", ipvs_figures,
          script="bench_ipvs.py", quick_args=("--services", "200", "--per-op-services", "25", "--runs", "3")),
    Bench("reloads", "haproxy reloads under load (bench_reloads.py)", reloads_figures,
          script="bench_reloads.py", args=("--reloads", "20"), timeout_s=600),
    Bench("agent", "the agent against the periodic run alone (bench_agent.py)", agent_figures,
          script="bench_agent.py", quick_args=("--ingresses", "200", "--samples", "4", "--timer-samples", "2",
                                               "--load-seconds", "20"), timeout_s=1500),
    Bench("vrrp", "VRRP failover gap (lab: fail-master)", vrrp_figures, scenario="fail-master",
          fields=(("gap_s", float), ("failed_requests", int), ("requests", int), ("old_master", str),
                  ("new_master", (str, NoneType))), timeout_s=900),
    Bench("ingress-change", "Ingress change -> served (lab: ingress-change)",
          ingress_change_figures, scenario="ingress-change",
          fields=(("seconds_with_agent", float), ("seconds_timer_only", float), ("timer_interval_s", int)),
          timeout_s=900),
)  # fmt: skip
GROUPS = {"lab": ("vrrp", "ingress-change")}


def select(only: str | None) -> list[Bench]:
    """The benches ``--only`` names (comma-separated; ``lab`` names both lab scenarios), in the usual order."""
    if not only:
        return list(BENCHES)
    known = {b.name for b in BENCHES}
    names: set[str] = set()
    for name in filter(None, (n.strip() for n in only.split(","))):
        if name not in known and name not in GROUPS:
            raise ValueError(f"unknown bench {name!r} (known: {', '.join([*known, *GROUPS])})")
        names.update(GROUPS.get(name, (name,)))
    return [b for b in BENCHES if b.name in names]


def figures_of(bench: Bench, run: BenchRun) -> list[Figure]:
    """The bench's rows from its results file; a row with the reason when it has none or they are unreadable."""
    if run.status not in {"ok", "reported"}:
        return [Figure(bench.name, bench.title, error=run.error)]
    try:
        data = json.loads(bench.results.read_text())
        figures = bench.figures(data)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
        run.status, run.error = "failed", f"cannot read {rel(bench.results)}: {type(exc).__name__}: {exc}"
        return [Figure(bench.name, bench.title, error=run.error)]
    run.load_start, run.load_end = bench_load(data)
    return figures


# --------------------------------------------------------------------------------------------------------------
# running them


def rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def tail(path: Path, count: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-count:])
    except OSError:
        return ""


def run_process(argv: Sequence[str], out: IO[str], timeout: float, *, stdout: int | IO[str] | None = None) -> int:
    """Run ``argv`` from the repository; on timeout or ^C stop it with SIGTERM (benches clean up) then SIGKILL."""
    proc = subprocess.Popen(
        list(argv), cwd=REPO, stdin=subprocess.DEVNULL, stdout=out if stdout is None else stdout, stderr=out
    )
    try:
        return proc.wait(timeout)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if isinstance(exc, KeyboardInterrupt):
            raise
        return -1


def run_script(bench: Bench, quick: bool) -> BenchRun:
    argv = [sys.executable, str(REPO / "bench" / bench.script), *bench.args, *(bench.quick_args if quick else ())]
    print(f"[{bench.name}] {shlex.join([rel(Path(argv[1])), *argv[2:]])}  (output in {rel(bench.log)})", flush=True)
    started, wall = time.time(), time.perf_counter()
    with bench.log.open("w") as out:
        code = run_process(argv, out, bench.timeout_s)
    run = BenchRun(bench.name, "ok", seconds=time.perf_counter() - wall, results=rel(bench.results),
                   log=rel(bench.log))  # fmt: skip
    if code != 0:
        run.status = "failed"
        run.error = f"timed out after {bench.timeout_s:g} s" if code == -1 else f"exit status {code}"
        run.error += f" (see {rel(bench.log)})"
    elif not bench.results.exists() or bench.results.stat().st_mtime < started:
        run.status, run.error = "failed", f"exited 0 but wrote no {rel(bench.results)}"
    else:
        run.results_date = now()
    print(f"[{bench.name}] {run.status} in {run.seconds:.0f} s", flush=True)
    if run.status != "ok":
        print(tail(bench.log), flush=True)
    return run


def lab_status() -> bool:
    if not LAB.exists():
        return False
    try:
        proc = subprocess.run([sys.executable, str(LAB), "status", "--json"], cwd=REPO, capture_output=True,
                              timeout=120, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def ensure_lab(bring_up: bool) -> tuple[str, str]:
    """("", "") when the lab is up; else (status, reason): "skipped" without ``--lab``, "failed" with it."""
    if lab_status():
        return "", ""
    if not bring_up:
        return "skipped", LAB_NOT_UP
    if not LAB.exists():
        return "failed", f"{rel(LAB)} does not exist"
    log = RESULTS / "lab-up.log"
    print(f"[lab] {rel(LAB)} up  (output in {rel(log)})", flush=True)
    with log.open("w") as out:
        code = run_process([sys.executable, str(LAB), "up"], out, 3600)
    if code != 0:
        print(tail(log), flush=True)
        return "failed", f"lab/lab.py up failed with exit status {code} (see {rel(log)})"
    if not lab_status():
        return "failed", "lab/lab.py up succeeded but lab/lab.py status --json says the lab is not up"
    return "", ""


def run_scenario(bench: Bench) -> BenchRun:
    argv = [sys.executable, str(LAB), "scenario", bench.scenario, "--json"]
    print(f"[{bench.name}] {rel(LAB)} scenario {bench.scenario} --json  (output in {rel(bench.log)})", flush=True)
    load_start, wall = os.getloadavg(), time.perf_counter()
    stdout = RESULTS / f"{bench.name}.stdout"
    with bench.log.open("w") as err, stdout.open("w") as out:
        code = run_process(argv, err, bench.timeout_s, stdout=out)
    run = BenchRun(bench.name, "ok", seconds=time.perf_counter() - wall, results=rel(bench.results),
                   log=rel(bench.log))  # fmt: skip
    text = stdout.read_text(errors="replace")
    with bench.log.open("a") as log:
        log.write(f"\n--- stdout\n{text}")
    stdout.unlink()
    # A scenario exits 1 when its own check fails (a gap of 4 s or more, say) and still prints its figures: those
    # are a missed target, shown in the table. Without them the scenario failed.
    try:
        result = parse_scenario(text, bench.fields)
    except ValueError as exc:
        run.status = "failed"
        run.error = f"timed out after {bench.timeout_s:g} s" if code == -1 else f"exit status {code}, output: {exc}"
        run.error += f" (see {rel(bench.log)})"
    else:
        run.results_date = now()
        record = {"scenario": bench.scenario, "exit_status": code, "result": result, "wall_s": run.seconds,
                  "date": run.results_date, "load_average_at_start": load_start,
                  "load_average_at_end": os.getloadavg()}  # fmt: skip
        bench.results.write_text(json.dumps(record, indent=1) + "\n")
    own_check = f" (the scenario's own check failed: exit status {code})" if code and run.status == "ok" else ""
    print(f"[{bench.name}] {run.status} in {run.seconds:.0f} s{own_check}", flush=True)
    if run.status != "ok":
        print(tail(bench.log), flush=True)
    return run


def earlier(bench: Bench) -> BenchRun:
    """``--report``: the results already under bench/results/."""
    if not bench.results.exists():
        return BenchRun(bench.name, "skipped", error=f"no {rel(bench.results)} yet")
    mtime = datetime.datetime.fromtimestamp(bench.results.stat().st_mtime, datetime.UTC)
    return BenchRun(bench.name, "reported", results=rel(bench.results),
                    results_date=mtime.isoformat(timespec="seconds"))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", maxsplit=1)[0])
    names = ", ".join([b.name for b in BENCHES] + list(GROUPS))
    parser.add_argument("--only", metavar="NAME[,NAME]", help=f"run only these benches ({names})")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (200 Ingresses, 200 IPVS services)")
    parser.add_argument("--lab", action="store_true", help="bring the lab up first (python lab/lab.py up)")
    parser.add_argument("--report", action="store_true", help="run nothing: the table of the results already there")
    args = parser.parse_args(argv)
    try:
        benches = select(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not (RESULTS / ".gitignore").exists():
        (RESULTS / ".gitignore").write_text("*\n")

    load_start, date = os.getloadavg(), now()
    runs: list[BenchRun] = []
    figures: list[Figure] = []
    lab: tuple[str, str] | None = None
    for bench in benches:
        if args.report:
            run = earlier(bench)
        elif bench.scenario:
            if lab is None:
                lab = ensure_lab(args.lab)
            run = BenchRun(bench.name, *lab) if lab[0] else run_scenario(bench)
        else:
            run = run_script(bench, args.quick)
        figures += figures_of(bench, run)
        runs.append(run)

    mode = "report of earlier results" if args.report else "quick" if args.quick else "full"
    data = summary(figures, runs, mode=mode, date=date, load_start=load_start, load_end=os.getloadavg())
    (RESULTS / "summary.json").write_text(json.dumps(data, indent=1) + "\n")
    (RESULTS / "summary.md").write_text(summary_markdown(data, figures, runs))
    print()
    print(f"benchmarks ({mode}), {date}; ratio = measured / compared with")
    print(text_table(figures))
    for line in bench_lines(runs):
        print(line)
    print(f"load average at start {fmt_load(load_start)}, at end {fmt_load(data['load_average_at_end'])}")
    print(f"written: {rel(RESULTS / 'summary.json')}, {rel(RESULTS / 'summary.md')}")
    return 1 if any(r.status == "failed" for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
