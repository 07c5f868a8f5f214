"""The agent against the periodic run alone, on real clusters and a real haproxy, side by side in one run.

Starts ``--clusters`` real kube-apiserver + etcd clusters with ``--ingresses`` Ingresses each and the real
haproxy of ``tests/fixtures/haproxylab.py`` (as ``bench_k8router.py`` does, whose set-up it reuses), converges
once, then measures:

(a) with the agent (``roles/converge/files/k8router-agent.py``, a process of its own) and no timer:
    ``--samples`` times a new Ingress -> its host in the running haproxy's host map, and a pod marked not ready
    in its EndpointSlice -> its server out of service (runtime view);
(b) the same with the periodic run alone: ``run()`` every ``--timer`` seconds (a timer's phase), the agent
    stopped; ``--timer-samples`` of each;
(c) the agent under ``--rate`` changes a second for ``--load-seconds`` (new Ingresses, one each, over every
    cluster): every new host in the host map at the end, reloads a second, the agent's peak RSS and CPU
    (``/proc``, the process alone);
(d) one cluster's API server killed for ``--outage`` seconds: the hosts in the host map while it is away
    against before, and the time from its ``/readyz`` answering again to the agent's ``k8router_cluster_up``.

Figures are printed and written to ``bench/results/agent.json``; ``bench/results/agent-latency.png`` draws the
latencies of (a) and (b) side by side, and ``bench/results/rollout-timeline.png`` the request timeline of the
lab's ``rollout`` scenario when it ran (its ``rollout-timeline.json`` in the lab's directory, or
``--rollout-timeline FILE``; ``--redraw`` draws again from ``agent.json``). Needs root (network namespace).

    .venv/bin/python bench/bench_agent.py [--clusters 3] [--ingresses 1000] [--samples 10] [--timer 15]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _entry in (REPO, REPO / ".collections", REPO / "bench"):
    if str(_entry) not in sys.path:
        sys.path.insert(0, str(_entry))

import bench_k8router as bk  # noqa: E402 (after the path set-up above)

RESULTS = REPO / "bench" / "results"
AGENT = REPO / "roles" / "converge" / "files" / "k8router-agent.py"
LAB_TIMELINE = Path(os.environ.get("K8ROUTER_CACHE", Path.home() / ".cache" / "k8router-lab")) / "lab"
PER_CERTIFICATE = 250


def p95(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3)


def wait_for(check: Callable[[], bool], timeout: float) -> float | None:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.01)
    return time.monotonic() - started


class AgentProcess:
    def __init__(self, params_file: Path, port: int, log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO / ".collections"), "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, str(AGENT), "--params", str(params_file), "--metrics", f"127.0.0.1:{port}",
                "--resync", "3600"]  # fmt: skip
        self.port = port
        self.proc = subprocess.Popen(argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def metric(self, name: str) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        found = {}
        for line in text.splitlines():
            if line.startswith(name):
                key, _sep, value = line.rpartition(" ")
                found[key] = float(value)
        return found

    def following(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as resp:
                return bool(resp.read() == b"following\n")
        except OSError:
            return False

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self, key: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def host_map(h: Any) -> set[str]:
    """The hosts in the running haproxy's host map (runtime view)."""
    text = bk.runtime_api(h.socket, f"show map {h.data_dir / 'hosts.map'}")
    return {line.split()[1] for line in text.splitlines() if len(line.split()) >= 3}


def new_host(cluster: str, n: int) -> str:
    return f"new-{n:05d}.{cluster}-0.{bk.DOMAIN}"  # covered by the *.c0-0 wildcard (bk.Hosts with PER_CERTIFICATE)


def create_ingress(cluster: Any, name: str, host: str) -> None:
    with cluster.api_client() as api:
        bk._create_ingress(api, bk.ingress_body("bench-0", name, host))


def set_pod_ready(cluster: Any, index: int, ready: bool) -> str:
    from kubernetes import client as k8s  # noqa: PLC0415

    with cluster.api_client() as api:
        disc = k8s.DiscoveryV1Api(api)
        (eps,) = disc.list_namespaced_endpoint_slice(
            bk.CONTROLLER_NS, label_selector=f"kubernetes.io/service-name={bk.CONTROLLER_SERVICE}"
        ).items
        assert eps.endpoints is not None and eps.metadata is not None and eps.metadata.name is not None
        endpoint = eps.endpoints[index]
        endpoint.conditions = k8s.V1EndpointConditions(ready=ready, serving=ready, terminating=False)
        disc.replace_namespaced_endpoint_slice(eps.metadata.name, bk.CONTROLLER_NS, eps)
        return str(endpoint.addresses[0])


def latencies(world: dict[str, Any], label: str, samples: int, counter: list[int]) -> dict[str, list[float]]:
    """``samples`` new Ingresses and pods not ready, each timed until haproxy serves the change."""
    h, c0 = world["h"], world["clusters"][0]
    probe_host = world["hosts"].name("c0", world["ingresses"] - 1)  # c0's own host, served by c0's pods only
    new, pod = [], []
    for _sample in range(samples):
        counter[0] += 1
        host = new_host("c0", counter[0])
        started = time.monotonic()
        create_ingress(c0, f"new-{counter[0]:05d}", host)
        took = wait_for(lambda: host in host_map(h), world["timeout"])  # noqa: B023 (called before the next turn)
        new.append(round(time.monotonic() - started, 3) if took is not None else float("nan"))
        started = time.monotonic()
        address = set_pod_ready(c0, 0, False)
        took = wait_for(lambda: not bk.address_in_service(h, probe_host, address), world["timeout"])  # noqa: B023
        pod.append(round(time.monotonic() - started, 3) if took is not None else float("nan"))
        set_pod_ready(c0, 0, True)
        wait_for(lambda: bk.address_in_service(h, probe_host, address), world["timeout"])  # noqa: B023
        print(f"{label}: new Ingress served {new[-1]:.2f} s, pod out of rotation {pod[-1]:.2f} s", flush=True)
    return {"new_ingress_s": new, "pod_not_ready_s": pod}


def timer_loop(params: dict[str, Any], interval: float, stop: threading.Event) -> None:
    from ansible_collections.k8router.edge.plugins.module_utils._args import options_from_params  # noqa: PLC0415
    from ansible_collections.k8router.edge.plugins.module_utils._converge import run  # noqa: PLC0415

    stop.wait(random.uniform(0, interval))  # noqa: S311 (a timer's phase)
    while not stop.is_set():
        run(options_from_params(params), bk._runner)
        stop.wait(interval)


def under_load(
    world: dict[str, Any], agent: AgentProcess, rate: float, seconds: float, counter: list[int]
) -> dict[str, Any]:
    clusters, h = world["clusters"], world["h"]
    reloads_before = sum(agent.metric("k8router_reloads_total").values())
    cpu_before, started = agent.cpu_seconds(), time.monotonic()
    created: list[str] = []
    rss_peak = 0.0
    n = 0
    while time.monotonic() - started < seconds:
        cluster = clusters[n % len(clusters)]
        counter[0] += 1
        host = new_host(cluster.name, counter[0])
        create_ingress(cluster, f"load-{counter[0]:05d}", host)
        created.append(host)
        n += 1
        rss_peak = max(rss_peak, agent.rss_mib())
        time.sleep(max(0.0, started + n / rate - time.monotonic()))
    sent_s = time.monotonic() - started
    settled = wait_for(lambda: set(created) <= host_map(h), 60)
    wall = time.monotonic() - started
    cpu = agent.cpu_seconds() - cpu_before
    reloads = sum(agent.metric("k8router_reloads_total").values()) - reloads_before
    missing = sorted(set(created) - host_map(h))
    return {
        "changes": len(created),
        "seconds": round(sent_s, 1),
        "all_served_after_s": round(settled, 2) if settled is not None else None,
        "missing": missing[:5],
        "reloads": reloads,
        "reloads_per_s": round(reloads / wall, 2),
        "cpu_cores": round(cpu / wall, 3),
        "rss_peak_mib": round(max(rss_peak, agent.rss_mib("VmHWM")), 1),
    }


def outage(world: dict[str, Any], agent: AgentProcess, seconds: float) -> dict[str, Any]:
    h, victim = world["h"], world["clusters"][-1]
    before = host_map(h)
    key = f'k8router_cluster_up{{cluster="{victim.name}"}}'
    victim.kill_apiserver()
    down = wait_for(lambda: agent.metric("k8router_cluster_up").get(key) == 0, 30)
    time.sleep(seconds)
    during = host_map(h)
    started = time.monotonic()
    victim.start_apiserver()  # returns once its /readyz answers ok
    ready = time.monotonic() - started
    back = wait_for(lambda: agent.metric("k8router_cluster_up").get(key) == 1, 60)
    return {
        "cluster": victim.name,
        "seen_down_after_s": round(down, 2) if down is not None else None,
        "away_s": seconds,
        "hosts_before": len(before),
        "hosts_while_away": len(during),
        "removed_while_away": len(before - during),
        "apiserver_ready_after_start_s": round(ready, 2),
        "resumed_after_ready_s": round(back, 2) if back is not None else None,
    }


def draw(figures: dict[str, Any], timeline_file: Path) -> list[str]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    drawn = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    titles = {"new_ingress_s": "new Ingress -> served", "pod_not_ready_s": "pod not ready -> out of rotation"}
    for ax, (key, title) in zip(axes, titles.items(), strict=True):
        series = [figures["agent"][key], figures["timer"][key]]
        ax.boxplot(series, tick_labels=["agent", f"timer ({figures['setup']['timer_s']:g} s)"], showfliers=False)
        for i, values in enumerate(series, start=1):
            ax.scatter([i + random.uniform(-0.08, 0.08) for _v in values], values, s=12, alpha=0.7)  # noqa: S311
        ax.set_title(title)
        ax.set_ylabel("seconds")
        ax.set_yscale("log")
    fig.suptitle(f"{figures['setup']['clusters']} clusters x {figures['setup']['ingresses']} Ingresses, real haproxy")
    fig.tight_layout()
    path = RESULTS / "agent-latency.png"
    fig.savefig(path, dpi=110)
    drawn.append(str(path))
    if timeline_file.exists():
        timeline = json.loads(timeline_file.read_text())
        t0 = timeline[0]["t"]
        fig, ax = plt.subplots(figsize=(10, 3.5))
        pods = sorted({str(e.get("pod")) for e in timeline if e.get("ok")})
        for pod in pods:
            pts = [(e["t"] - t0, e["ms"]) for e in timeline if e.get("ok") and str(e.get("pod")) == pod]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, label=f"pod {pod}")
        failed = [(e["t"] - t0, e["ms"]) for e in timeline if not e.get("ok")]
        if failed:
            ax.scatter([p[0] for p in failed], [p[1] for p in failed], s=20, marker="x", color="red", label="failed")
        ax.set_xlabel("seconds")
        ax.set_ylabel("request ms")
        ax.set_title(f"lab rollout, agents only: {len(timeline)} requests, {len(failed)} failed")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        path = RESULTS / "rollout-timeline.png"
        fig.savefig(path, dpi=110)
        drawn.append(str(path))
    plt.close("all")
    return drawn


def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import yaml  # noqa: PLC0415

    from ansible_collections.k8router.edge.plugins.module_utils._args import options_from_params  # noqa: PLC0415
    from ansible_collections.k8router.edge.plugins.module_utils._converge import run  # noqa: PLC0415
    from tests.fixtures import kubelab, pki  # noqa: PLC0415
    from tests.fixtures.haproxylab import running_haproxy  # noqa: PLC0415

    names = [f"c{i}" for i in range(args.clusters)]
    hosts = bk.Hosts(0, PER_CERTIFICATE)
    figures: dict[str, Any] = {"setup": {"clusters": args.clusters, "ingresses": args.ingresses,
                                         "timer_s": args.timer, "cpus": os.cpu_count()}}  # fmt: skip
    clusters = kubelab.start_clusters(names, work / "kubelab")
    try:
        for index, cluster in enumerate(clusters):
            bk.load_cluster_base(cluster, index, 3)
        load_s = bk.load_ingresses(clusters, args.ingresses, hosts, 8)
        print(f"{args.clusters * args.ingresses} Ingresses loaded in {load_s:.0f} s", flush=True)
        ca = pki.CertAuthority.create("k8router agent bench CA")
        zones = {hosts.name(c, i).split(".", 1)[1] for c in names for i in range(args.ingresses)}
        zones |= {new_host(c, 0).split(".", 1)[1] for c in names}
        for zone in sorted(zones):
            bk.wildcard_certificate(work / "certs", zone, ca)
        with running_haproxy(work / "haproxy") as h:
            for index, cluster in enumerate(clusters):
                for n in range(3):
                    h.add_pod(cluster.name, bk.pod_ip(index, n))
            params = bk.module_params(clusters, h, work)
            params_file = work / "params.yml"
            params_file.write_text(yaml.safe_dump({"k8router_params": params}))
            started = time.monotonic()
            run(options_from_params(params), bk._runner)
            figures["setup"]["first_run_s"] = round(time.monotonic() - started, 2)
            world = {"clusters": clusters, "h": h, "hosts": hosts, "ingresses": args.ingresses,
                     "timeout": args.timer * 3 + 30}  # fmt: skip
            counter = [0]
            agent = AgentProcess(params_file, kubelab.free_ports(1, "127.0.0.1")[0], work / "agent.log")
            try:
                wait_for(agent.following, 120)
                figures["agent_start_rss_mib"] = round(agent.rss_mib(), 1)
                figures["agent"] = latencies(world, "agent", args.samples, counter)
                figures["load"] = under_load(world, agent, args.rate, args.load_seconds, counter)
                print(f"load: {figures['load']}", flush=True)
                figures["outage"] = outage(world, agent, args.outage)
                print(f"outage: {figures['outage']}", flush=True)
            finally:
                agent.stop()
            stop = threading.Event()
            timer = threading.Thread(target=timer_loop, args=(params, args.timer, stop))
            timer.start()
            try:
                figures["timer"] = latencies(world, "timer", args.timer_samples, counter)
            finally:
                stop.set()
                timer.join()
    finally:
        kubelab.stop_clusters(clusters)
    for key in ("new_ingress_s", "pod_not_ready_s"):
        a, t = p95(figures["agent"][key]), p95(figures["timer"][key])
        figures[f"{key}_p95"] = {"agent": a, "timer": t, "timer_over_agent": round(t / a, 1) if a and t else None}
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--ingresses", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--timer", type=float, default=15.0)
    parser.add_argument("--timer-samples", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--rollout-timeline", type=Path, default=LAB_TIMELINE / "rollout-timeline.json")
    parser.add_argument("--redraw", action="store_true", help="only draw the pictures again from agent.json")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.redraw:
        print("\n".join(draw(json.loads((RESULTS / "agent.json").read_text()), args.rollout_timeline)))
        return 0
    with tempfile.TemporaryDirectory(prefix="k8router-agent-bench-") as tmp:
        figures = bench(args, Path(tmp))
    figures["pictures"] = draw(figures, args.rollout_timeline)
    (RESULTS / "agent.json").write_text(json.dumps(figures, indent=2))
    for key in ("new_ingress_s_p95", "pod_not_ready_s_p95"):
        print(f"{key}: {figures[key]}")
    print(f"median new Ingress: agent {statistics.median(figures['agent']['new_ingress_s']):.2f} s")
    print(f"pictures: {', '.join(figures['pictures'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
