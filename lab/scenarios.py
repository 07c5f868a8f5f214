# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Day-2 scenarios against the running lab (``python lab/lab.py scenario NAME``): a router fails, an API server
stops, a cluster is drained, a certificate is added, an Ingress changes, a controller pod rolls."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from lab.certs import lab_ca, write_certificate
from lab.clusters import running_clusters
from lab.host import LabFailure, in_container, last_line, playbook, podman, probe
from lab.inventory import set_cluster_state, write_inventory
from lab.parts import Parts
from lab.summary import agent_state, bird_routes, vip_holder
from lab.topology import (
    API_OUTAGE,
    CLIENT,
    CLIENT_LAB_CA,
    CLIENT_SCRIPT,
    CLUSTERS,
    CONVERGE_INTERVAL,
    DOMAIN,
    INGRESS_VIP,
    LAB_DIR,
    ROUTERS,
)
from tests.fixtures import kubeobjects as ko

ROLLOUT_POD_IP = "10.244.1.12"  # in alpha-w1's block, the address of the rollout's new pod


def _converge_once(name: str) -> None:
    unit = "k8router-converge.service"
    if in_container(name, "systemctl", "is-active", unit, check=False).strip() == "activating":
        # A timer run that started before the change: let it finish, then run again.
        in_container(name, "systemctl", "start", unit)
    in_container(name, "systemctl", "start", unit)


def converge_now() -> None:
    """A run of each router's own timer job that starts now, on all routers at once."""
    with ThreadPoolExecutor(len(ROUTERS)) as pool:
        list(pool.map(_converge_once, ROUTERS))


def _gap(timeline: Sequence[Mapping[str, Any]]) -> float:
    """The longest time without a successful answer: from the last success before a failure to the next."""
    worst = 0.0
    last_ok: float | None = None
    failing = False
    for entry in timeline:
        if entry.get("ok"):
            if failing and last_ok is not None:
                worst = max(worst, float(entry["t"]) - last_ok)
            last_ok, failing = float(entry["t"]), False
        else:
            failing = True
    return round(worst, 3)


@contextlib.contextmanager
def background_load(host: str, duration: float, interval: float = 0.05) -> Iterator[dict[str, Any]]:
    argv = [
        "podman", "exec", CLIENT, "python3", CLIENT_SCRIPT, "load", "--vip", INGRESS_VIP, "--host", host,
        "--ca", CLIENT_LAB_CA, "--duration", str(duration), "--interval", str(interval),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    result: dict[str, Any] = {}
    try:
        yield result
    finally:
        out, _err = proc.communicate(timeout=duration + 60)
        result.update(json.loads(last_line(out)))


def scenario_fail_master() -> dict[str, Any]:
    master = vip_holder(INGRESS_VIP)
    if master is None:
        raise LabFailure(f"no router holds the ingress VIP {INGRESS_VIP}")
    host = f"shop.{DOMAIN}"
    with background_load(host, duration=14) as load:
        time.sleep(3)
        failed_at = time.time()
        podman("pause", master)
        new_master = None
        while time.time() - failed_at < 8:
            new_master = next((r for r in ROUTERS if r != master and vip_holder(INGRESS_VIP) == r), None)
            if new_master:
                break
            time.sleep(0.1)
        moved_after = time.time() - failed_at
        time.sleep(max(0.0, 6 - moved_after))
        podman("unpause", master)
    timeline = load["timeline"]
    return {
        "scenario": "fail-master",
        "old_master": master,
        "new_master": new_master,
        "vip_moved_after_s": round(moved_after, 2),
        "gap_s": _gap(timeline),
        "requests": len(timeline),
        "failed_requests": sum(1 for e in timeline if not e.get("ok")),
        "interval_s": load["interval"],
        "ok": new_master is not None and _gap(timeline) < 4,
    }


def scenario_stop_api() -> dict[str, Any]:
    spec = CLUSTERS[1]
    clusters = running_clusters()
    if clusters is None:
        raise LabFailure("the lab's clusters are not running (make lab)")
    host = f"{spec.name}.{DOMAIN}"
    with clusters[spec.name].paused("kube-apiserver"):
        started = time.monotonic()
        time.sleep(API_OUTAGE)
        routes = {router: spec.workers[0].pod_block in bird_routes(router) for router in ROUTERS}
        converge_now()
        answers = probe(host)["answers"]
        outage = time.monotonic() - started
        journal = in_container(
            next(iter(ROUTERS)), "journalctl", "-u", "k8router-converge.service", "-n", "80", "--no-pager", check=False
        )
    warned = [line.strip() for line in journal.splitlines() if spec.name in line and "last-known-good" in line]
    served = Counter(a.get("cluster") for a in answers if a.get("ok"))
    converge_now()
    return {
        "scenario": "stop-api",
        "cluster": spec.name,
        "host": host,
        "answered_by": dict(served),
        "failed_requests": sum(1 for a in answers if not a.get("ok")),
        "warning": warned[-1] if warned else "",
        "api_stopped_s": round(outage),
        "routes_kept": routes,
        "ok": dict(served) == {spec.name: len(answers)} and all(routes.values()),
    }


def reconfigure_routers() -> None:
    """Rewrite the lab inventory and push the routers' k8router settings (site.yml, routers only), then run once."""
    clusters = running_clusters()
    if clusters is None:
        raise LabFailure("the lab's clusters are not running (make lab)")
    parts = Parts.load()
    write_inventory(clusters, parts)
    playbook("site.yml", "--limit", "routers", "--tags", "k8router_converge", quiet=True)
    converge_now()


def scenario_drain() -> dict[str, Any]:
    spec = CLUSTERS[0]
    host = f"shop.{DOMAIN}"
    set_cluster_state(spec.name, "drain")
    try:
        reconfigure_routers()
        drained = Counter(a.get("cluster") for a in probe(host, 12)["answers"] if a.get("ok"))
    finally:
        set_cluster_state(spec.name, "active")
        reconfigure_routers()
    restored = Counter(a.get("cluster") for a in probe(host, 12)["answers"] if a.get("ok"))
    return {
        "scenario": "drain",
        "cluster": spec.name,
        "host": host,
        "while_drained": dict(drained),
        "after_undrain": dict(restored),
        "ok": spec.name not in drained and sum(drained.values()) == 12 and spec.name in restored,
    }


def scenario_add_cert() -> dict[str, Any]:
    host = f"beta.{DOMAIN}"
    before = probe(host, 1)["answers"][0]
    path = write_certificate(lab_ca(), "beta", [host])
    try:
        reconfigure_routers()
        after = probe(host, 1)["answers"][0]
    finally:
        path.unlink()
        reconfigure_routers()
    back = probe(host, 1)["answers"][0]
    return {
        "scenario": "add-cert",
        "host": host,
        "before": before.get("cert_cn"),
        "after_one_run": after.get("cert_cn"),
        "after_removal": back.get("cert_cn"),
        "ok": after.get("cert_cn") == host and before.get("cert_cn") != host and back.get("cert_cn") != host,
    }


def _units(action: str, unit: str) -> None:
    """``systemctl ACTION UNIT`` on every router at once."""
    with ThreadPoolExecutor(len(ROUTERS)) as pool:
        list(pool.map(lambda name: in_container(name, "systemctl", action, unit), ROUTERS))


def _agent_following(timeout: float = 60) -> None:
    """Until every router's agent answers ``following`` on its /healthz."""
    deadline = time.monotonic() + timeout
    while not all(agent_state(name)["ok"] for name in ROUTERS):
        if time.monotonic() > deadline:
            raise LabFailure(f"the agents are not following after {timeout:.0f} s: {[agent_state(n) for n in ROUTERS]}")
        time.sleep(0.5)


def _time_new_ingress(clusters: Mapping[str, Any], timeout: float) -> float | None:
    """Seconds from creating an Ingress for a new host in alpha to its first answer through the VIP (None: never)."""
    spec = CLUSTERS[0]
    name = f"new-{time.time_ns()}"
    host = f"{name}.{DOMAIN}"
    argv = [
        "podman", "exec", CLIENT, "python3", CLIENT_SCRIPT, "wait", "--vip", INGRESS_VIP, "--host", host,
        "--ca", CLIENT_LAB_CA, "--cluster", spec.name, "--timeout", str(timeout),
    ]  # fmt: skip
    waiter = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    with clusters[spec.name].api_client() as api:
        created = time.time()
        ko.create_ingress(api, "shop", name, [ko.IngressRule(host, "web", 80)])
        out, _err = waiter.communicate(timeout=timeout + 30)
        k8s.NetworkingV1Api(api).delete_namespaced_ingress(name, "shop")
    served = json.loads(last_line(out)).get("served_at")
    return round(float(served) - created, 2) if served else None


def scenario_ingress_change() -> dict[str, Any]:
    """A new Ingress in alpha: change to served with the agents running, then with the timers alone."""
    clusters = running_clusters()
    if clusters is None:
        raise LabFailure("the lab's clusters are not running (make lab)")
    _agent_following()
    with_agent = _time_new_ingress(clusters, 60)
    _units("stop", "k8router-agent.service")
    try:
        timer_only = _time_new_ingress(clusters, 4 * CONVERGE_INTERVAL + 60)
    finally:
        _units("start", "k8router-agent.service")
    return {
        "scenario": "ingress-change",
        "seconds_with_agent": with_agent,
        "seconds_timer_only": timer_only,
        "timer_interval_s": CONVERGE_INTERVAL,
        "timer_over_agent": round(timer_only / with_agent, 1) if with_agent and timer_only else None,
        "ok": with_agent is not None and timer_only is not None,
    }


def _controller_slice(api: k8s.ApiClient, endpoints: Sequence[tuple[str, str, str]]) -> None:
    """The ingress controller's EndpointSlice rewritten in place: (address, node, ready|terminating) per pod."""
    discovery = k8s.DiscoveryV1Api(api)
    (eps,) = discovery.list_namespaced_endpoint_slice(
        "ingress-nginx", label_selector="kubernetes.io/service-name=ingress-nginx-controller"
    ).items
    eps.endpoints = [
        k8s.V1Endpoint(
            addresses=[ip],
            node_name=node,
            conditions=k8s.V1EndpointConditions(ready=state == "ready", serving=True, terminating=state != "ready"),
        )
        for ip, node, state in endpoints
    ]
    assert eps.metadata is not None and eps.metadata.name is not None
    discovery.replace_namespaced_endpoint_slice(eps.metadata.name, "ingress-nginx", eps)


def _save_timeline(name: str, timeline: Sequence[Mapping[str, Any]]) -> Path:
    """Every request of a scenario (time, ok, cluster, pod, ms), for the bench's pictures."""
    path = LAB_DIR / f"{name}-timeline.json"
    path.write_text(json.dumps(list(timeline)))
    return path


def scenario_rollout() -> dict[str, Any]:
    """alpha's controller rolls a pod with the timers stopped and only the agents running: a new pod comes up
    ready, the old one terminates (serving), leaves the slice, and its address goes away. Requests for alpha's
    own host all the while: none may fail, and the new pod answers at the end."""
    clusters = running_clusters()
    if clusters is None:
        raise LabFailure("the lab's clusters are not running (make lab)")
    spec = CLUSTERS[0]
    worker = spec.workers[0]
    keep, old = worker.ingress_pod_ips
    new = ROLLOUT_POD_IP
    host = f"alpha.{DOMAIN}"
    _agent_following()
    _units("stop", "k8router-converge.timer")
    load: dict[str, Any] = {}
    with clusters[spec.name].api_client() as api:
        try:
            with background_load(host, duration=16) as load:
                time.sleep(2)
                in_container(worker.name, "ip", "addr", "add", f"{new}/32", "dev", "lo")
                _controller_slice(api, [(keep, worker.name, "ready"), (old, worker.name, "terminating"),
                                        (new, worker.name, "ready")])  # fmt: skip
                time.sleep(3)
                _controller_slice(api, [(keep, worker.name, "ready"), (new, worker.name, "ready")])
                time.sleep(1)
                in_container(worker.name, "ip", "addr", "del", f"{old}/32", "dev", "lo")
                gone_at = time.time()
        finally:
            in_container(worker.name, "sh", "-c", f"ip addr add {old}/32 dev lo 2>/dev/null; true")
            _controller_slice(api, [(keep, worker.name, "ready"), (old, worker.name, "ready")])
            time.sleep(2)
            in_container(worker.name, "ip", "addr", "del", f"{new}/32", "dev", "lo", check=False)
            _units("start", "k8router-converge.timer")
    timeline = load["timeline"]
    failed = [e for e in timeline if not e.get("ok")]
    after = [e.get("pod") for e in timeline if float(e["t"]) > gone_at and e.get("ok")]
    return {
        "scenario": "rollout",
        "host": host,
        "requests": len(timeline),
        "failed_requests": len(failed),
        "first_failures": failed[:3],
        "pods_after_old_gone": dict(Counter(after)),
        "timeline_file": str(_save_timeline("rollout", timeline)),
        "ok": not failed and len(timeline) > 50 and new in after and old not in after,
    }


SCENARIOS = {
    "fail-master": scenario_fail_master,
    "stop-api": scenario_stop_api,
    "drain": scenario_drain,
    "add-cert": scenario_add_cert,
    "ingress-change": scenario_ingress_change,
    "rollout": scenario_rollout,
}
