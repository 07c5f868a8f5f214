from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bench.run import (
    BenchRun,
    Figure,
    agent_figures,
    bench_lines,
    bench_load,
    cells,
    fmt_number,
    ingress_change_figures,
    ipvs_figures,
    k8router_figures,
    markdown_table,
    parse_scenario,
    ratio,
    reloads_figures,
    select,
    summary,
    summary_markdown,
    text_table,
    vrrp_figures,
)

# The shape bench_k8router.py writes (fields the table reads; figures rounded).
K8ROUTER: dict[str, Any] = {
    "load_average_at_start": [1.31, 3.14, 3.06],
    "load_average_at_end": [3.72, 3.54, 3.2],
    "setup": {"clusters": 3, "ingresses_per_cluster": 1000},
    "a_first_converge": {"wall_s": 1.97, "hosts": 2800, "reloaded": True},
    "b_no_change": {"runs": 5, "wall_s_median": 1.5, "maxrss_mib_median": 88.0, "any_changed": False},
    "c_kubectl": {
        "items_per_cluster": [1001, 1001, 1001],
        "sequential_wall_s_median": 1.2,
        "sequential_maxrss_mib_median": 66.0,
        "parallel_wall_s_median": 0.75,
        "parallel_maxrss_mib_median_sum": 198.0,
    },
    "d_pod_not_ready": {
        "change_to_applied_s": 1.93,
        "reloaded": False,
        "worker_pids_unchanged": True,
        "pod_out_of_service_at_runtime": True,
        "runtime_commands": 2,
    },
    "e_new_host": {"change_to_applied_s": 2.16, "reloaded": True, "host_in_map": True, "next_run_changed": False},
}

IPVS: dict[str, Any] = {
    "host": {"plan_from_scratch": {"ops": 4000, "seconds": 0.0157}},
    "guest": {
        "restore_from_scratch": {"ops": 4000, "seconds": 4.0},
        "no_change_run": {"ops": 0, "seconds": 2.7},
        "one_service_change": {"ops": 2, "seconds": 2.65, "only_that_service": True, "equals_desired_after": True},
        "per_op_from_scratch": {"services": 100, "ops": 400, "seconds": 30.0, "seconds_per_op": 0.075},
    },
    "run": {"load_start": [0.76, 1.99, 2.64], "load_end": [1.4, 1.62, 2.27]},
}

RELOADS: dict[str, Any] = {
    "reloads": 20,
    "clients": [
        {"mode": "new", "ok": 1294, "failed": 0, "reconnects": 0, "errors": {}},
        {"mode": "keepalive", "ok": 4116, "failed": 0, "reconnects": 3, "errors": {}},
    ],
    "reload_s": [0.2, 0.4, 0.3],
}

# What lab/lab.py scenario fail-master --json prints (its last line); the contract is in bench/run.py's BENCHES.
FAIL_MASTER = {
    "scenario": "fail-master",
    "old_master": "k8r-router1",
    "new_master": "k8r-router2",
    "vip_moved_after_s": 2.9,
    "gap_s": 3.1,
    "requests": 600,
    "failed_requests": 12,
    "interval_s": 0.05,
    "ok": True,
}
FAIL_MASTER_FIELDS = next(b.fields for b in select("vrrp"))


@pytest.mark.parametrize(
    ("value", "against", "expected"),
    [(1.5, 1.2, 1.25), (0, 5410, 0.0), (3.0, 4.0, 0.75), (1.0, 0, None), (None, 1.0, None), (1.0, None, None)],
)
def test_ratio(value: float | None, against: float | None, expected: float | None) -> None:
    assert ratio(value, against) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (4.0, "4"), (5410, "5410"), (295.9, "296"), (88.37, "88.4"), (1.5683, "1.57"), (0.0157, "0.016")],
)
def test_fmt_number(value: float, text: str) -> None:
    assert fmt_number(value) == text


def test_k8router_ratios_are_k8router_over_kubectl() -> None:
    figures = k8router_figures(K8ROUTER)
    assert [(f.value, f.against, f.ratio) for f in figures[:4]] == [
        (1.5, 1.2, 1.25),  # wall vs kubectl one cluster after the other
        (1.5, 0.75, 2.0),  # wall vs kubectl on all clusters at once
        (88.0, 66.0, 88.0 / 66.0),  # peak memory vs one kubectl
        (88.0, 198.0, 88.0 / 198.0),  # peak memory vs the kubectls at once
    ]
    assert figures[0].name == "k8router no-change run, wall (3 clusters x 1000 Ingresses)"
    assert figures[1].against_label == "kubectl x3 at once"
    assert [f.met for f in figures] == [None, None, None, None, None, True, True]


def test_k8router_reload_on_pod_change_misses_the_target() -> None:
    data = copy.deepcopy(K8ROUTER)
    data["d_pod_not_ready"]["reloaded"] = True
    assert k8router_figures(data)[5].met is False


def test_ipvs_batch_against_per_op_extrapolated() -> None:
    batch, change, nochange, plan = ipvs_figures(IPVS)
    assert batch.against == pytest.approx(0.075 * 4000)
    assert batch.ratio == pytest.approx(4.0 / 300.0)
    assert batch.against_label == "one ipvsadm per op (extrapolated from 400 ops)"
    assert batch.note == "qemu TCG guest; batch 75x faster"
    assert (change.met, nochange.met, plan.met) == (True, True, None)


def test_ipvs_per_op_measured_for_the_whole_table() -> None:
    data = copy.deepcopy(IPVS)
    data["guest"]["per_op_from_scratch"] = {"services": 1000, "ops": 4000, "seconds": 296.0, "seconds_per_op": 0.074}
    data["guest"]["no_change_run"]["ops"] = 3
    batch, _change, nochange, _plan = ipvs_figures(data)
    assert (batch.against, batch.against_label) == (296.0, "one ipvsadm per op (measured)")
    assert nochange.met is False


def test_reloads_failed_against_requests_sent() -> None:
    failed, reload_time = reloads_figures(RELOADS)
    assert (failed.value, failed.against, failed.ratio, failed.met) == (0, 5410, 0.0, True)
    assert failed.note == "new connections 0/1294; keep-alive 0/4116"
    assert reload_time.value == 0.3


def test_reloads_a_failed_request_misses_the_target() -> None:
    data = copy.deepcopy(RELOADS)
    data["clients"][0]["failed"] = 2
    failed = reloads_figures(data)[0]
    assert (failed.value, failed.against, failed.met) == (2, 5412, False)


def test_reloads_without_requests_is_not_a_pass() -> None:
    data = copy.deepcopy(RELOADS)
    for client in data["clients"]:
        client["ok"] = 0
    assert reloads_figures(data)[0].met is False


@pytest.mark.parametrize(("gap", "met"), [(3.1, True), (3.99, True), (4.0, False), (7.5, False)])
def test_vrrp_gap_against_4_s(gap: float, met: bool) -> None:
    figure, requests = vrrp_figures({"result": FAIL_MASTER | {"gap_s": gap}})
    assert (figure.against, figure.ratio, figure.met) == (4.0, gap / 4.0, met)
    assert figure.note == "k8r-router1 -> k8r-router2; VIP moved after 2.9 s"
    assert (requests.value, requests.against, requests.met) == (12, 600, None)


def test_vrrp_without_a_new_master_misses_the_target() -> None:
    figure, _requests = vrrp_figures({"result": FAIL_MASTER | {"new_master": None, "gap_s": 1.0}})
    assert (figure.met, figure.note) == (False, "k8r-router1 -> no new master; VIP moved after 2.9 s")


@pytest.mark.parametrize(("seconds", "met"), [(12.0, True), (31.5, True), (32.0, False)])
def test_ingress_change_against_the_timer_interval(seconds: float, met: bool) -> None:
    result = {"seconds_with_agent": 1.05, "seconds_timer_only": seconds, "timer_interval_s": 15}
    agent, figure = ingress_change_figures({"result": result})
    assert (figure.against, figure.ratio, figure.met) == (15, seconds / 15, met)
    assert figure.target == "<= 1.1 x interval + 15 s"
    assert (agent.value, agent.against, agent.ratio, agent.met) == (1.05, seconds, 1.05 / seconds, True)


AGENT: dict[str, Any] = {
    "setup": {"clusters": 3, "ingresses": 1000, "timer_s": 15.0},
    "new_ingress_s_p95": {"agent": 0.6, "timer": 15.2, "timer_over_agent": 25.3},
    "pod_not_ready_s_p95": {"agent": 0.4, "timer": 14.1, "timer_over_agent": 35.3},
    "load": {"changes": 600, "seconds": 60.0, "all_served_after_s": 1.2, "missing": [], "reloads": 50,
             "reloads_per_s": 0.8, "cpu_cores": 0.3, "rss_peak_mib": 90.0},
    "outage": {"removed_while_away": 0, "hosts_before": 3003, "resumed_after_ready_s": 0.4,
               "apiserver_ready_after_start_s": 3.1},
}  # fmt: skip


def test_agent_figures_against_the_timer_and_the_targets() -> None:
    pod, new, load, rss, cpu, removed, resumed = agent_figures(AGENT)
    assert (pod.value, pod.against, pod.met) == (0.4, 14.1, True)
    assert (new.value, new.ratio, new.met) == (0.6, 0.6 / 15.2, True)
    assert (load.met, rss.met, cpu.met, removed.met, resumed.met) == (True, True, True, True, True)
    slow = AGENT | {"load": AGENT["load"] | {"reloads_per_s": 1.5, "cpu_cores": 0.7}}
    assert [f.met for f in agent_figures(slow)][2:5] == [False, True, False]


def test_missing_field_raises_key_error() -> None:
    data = copy.deepcopy(K8ROUTER)
    del data["c_kubectl"]
    with pytest.raises(KeyError):
        k8router_figures(data)


def test_parse_scenario_reads_the_last_line() -> None:
    out = "bringing router1 down\nwaiting\n" + json.dumps(FAIL_MASTER) + "\n\n"
    assert parse_scenario(out, FAIL_MASTER_FIELDS) == FAIL_MASTER


def test_parse_scenario_takes_an_int_for_a_float_and_null_where_allowed() -> None:
    assert parse_scenario('{"seconds": 31, "timer_interval_s": 30}', (("seconds", float),))["seconds"] == 31
    assert parse_scenario(json.dumps(FAIL_MASTER | {"new_master": None}), FAIL_MASTER_FIELDS)["new_master"] is None


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("", "no output"),
        ("done\n", "last line is not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps(FAIL_MASTER) + "\nbye", "last line is not JSON"),
        (json.dumps({k: v for k, v in FAIL_MASTER.items() if k != "gap_s"}), "no float 'gap_s'"),
        (json.dumps(FAIL_MASTER | {"requests": "600"}), "no int 'requests'"),
        (json.dumps(FAIL_MASTER | {"failed_requests": True}), "no int 'failed_requests'"),
        (json.dumps(FAIL_MASTER | {"gap_s": None}), "no float 'gap_s'"),
        (json.dumps(FAIL_MASTER | {"new_master": 2}), "no str or null 'new_master'"),
        (json.dumps({k: v for k, v in FAIL_MASTER.items() if k != "new_master"}), "no str or null 'new_master'"),
    ],
)
def test_parse_scenario_rejects(out: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_scenario(out, FAIL_MASTER_FIELDS)


def test_parse_scenario_ingress_never_served() -> None:
    out = '{"scenario": "ingress-change", "seconds_with_agent": null, "timer_interval_s": 15, "ok": false}'
    with pytest.raises(ValueError, match="no float 'seconds_with_agent'"):
        parse_scenario(out, next(b.fields for b in select("ingress-change")))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (K8ROUTER, ([1.31, 3.14, 3.06], [3.72, 3.54, 3.2])),
        (IPVS, ([0.76, 1.99, 2.64], [1.4, 1.62, 2.27])),
        (RELOADS, (None, None)),
    ],
)
def test_bench_load(data: dict[str, Any], expected: tuple[list[float] | None, list[float] | None]) -> None:
    assert bench_load(data) == expected


@pytest.mark.parametrize(
    ("only", "names"),
    [
        (None, ["k8router", "ipvs", "reloads", "agent", "vrrp", "ingress-change"]),
        ("reloads,k8router", ["k8router", "reloads"]),
        ("lab", ["vrrp", "ingress-change"]),
        (" ipvs , ", ["ipvs"]),
    ],
)
def test_select(only: str | None, names: list[str]) -> None:
    assert [b.name for b in select(only)] == names


def test_select_rejects_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown bench 'vrpp'"):
        select("k8router,vrpp")


TABLE = [
    Figure("k8router", "no-change run, wall", 1.5, "s", 1.2, "kubectl x3", note="median of 5"),
    Figure("reloads", "requests failed", 0, "", 5410, "requests sent", target="0", met=True),
    Figure("vrrp", "VRRP failover gap", 4.2, "s", 4.0, "target", target="< 4 s", met=False),
    Figure("ingress-change", "Ingress change -> served (lab: ingress-change)", error="lab not up (make lab)"),
]


def test_cells() -> None:
    assert cells(TABLE[0]) == ["no-change run, wall", "1.50 s", "kubectl x3: 1.20 s", "1.25", "-", "-", "median of 5"]
    assert cells(TABLE[2])[3:6] == ["1.05", "< 4 s", "NO"]
    name, measured, *rest = cells(TABLE[3])
    assert (name, measured, rest) == (TABLE[3].name, "lab not up (make lab)", [""] * 5)


def test_text_table() -> None:
    assert text_table(TABLE) == (
        "figure                                          measured  compared with        ratio  target  met  notes\n"
        "----------------------------------------------  --------  -------------------  -----  ------  ---  -----------\n"
        "no-change run, wall                               1.50 s  kubectl x3: 1.20 s    1.25  -       -    median of 5\n"
        "requests failed                                        0  requests sent: 5410      0  0       yes\n"
        "VRRP failover gap                                 4.20 s  target: 4 s           1.05  < 4 s   NO\n"
        "Ingress change -> served (lab: ingress-change)  lab not up (make lab)\n"
    )


def test_markdown_table() -> None:
    figures = [*TABLE[1:], Figure("ipvs", "a | b", 1.0, "s")]
    assert markdown_table(figures) == (
        "| figure | measured | compared with | ratio | target | met | notes |\n"
        "|---|---:|---|---:|---|---|---|\n"
        "| requests failed | 0 | requests sent: 5410 | 0 | 0 | yes |  |\n"
        "| VRRP failover gap | 4.20 s | target: 4 s | 1.05 | < 4 s | NO |  |\n"
        "| Ingress change -> served (lab: ingress-change) | lab not up (make lab) |  |  |  |  |  |\n"
        "| a \\| b | 1 s | - | - | - | - |  |\n"
    )


RUNS = [
    BenchRun("k8router", "ok", seconds=33.4, results_date="2026-11-29T22:09:05+00:00", load_start=[0.88, 1.0, 1.55],
             load_end=[3.52, 1.68, 1.76]),
    BenchRun("reloads", "reported", results_date="2026-11-29T21:05:41+00:00"),
    BenchRun("vrrp", "skipped", error="lab not up (make lab)"),
]  # fmt: skip


def test_bench_lines() -> None:
    assert bench_lines(RUNS) == [
        "k8router: ok in 33 s, load 0.88 1.00 1.55 -> 3.52 1.68 1.76",
        "reloads: reported, results of 2026-11-29T21:05:41+00:00",
        "vrrp: skipped: lab not up (make lab)",
    ]


def test_summary_holds_the_ratios_and_the_load() -> None:
    data = summary(TABLE, RUNS, mode="quick", date="2026-11-29T22:08:32+00:00", load_start=(0.78, 0.98, 1.54),
                   load_end=(3.3, 1.88, 1.83))  # fmt: skip
    json.dumps(data)  # serialisable as it is
    assert [f["ratio"] for f in data["figures"]] == [1.25, 0.0, 4.2 / 4.0, None]
    assert data["figures"][3]["error"] == "lab not up (make lab)"
    assert [b["status"] for b in data["benches"]] == ["ok", "reported", "skipped"]
    text = summary_markdown(data, TABLE, RUNS)
    assert text.startswith(
        "Benchmarks of 2026-11-29T22:08:32+00:00 (quick); load average (1, 5, 15 min) at start 0.78 0.98 1.54, "
        "at end 3.30 1.88 1.83. Ratio = measured / compared with.\n\n| figure |"
    )
    assert text.endswith("\n- vrrp: skipped: lab not up (make lab)\n")
