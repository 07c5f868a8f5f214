"""The agent (_agent.Agent) against the two real clusters and a real haproxy of its own: it lists and watches,
applies each change without a periodic run, takes endpoint changes through the runtime API, keeps serving a
cluster whose API server is gone and follows it again when it is back. Its objects (namespace, class, hosts)
are its own, so the module tests beside it are not disturbed. Latencies are printed, not asserted."""

from __future__ import annotations

import itertools
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest

from ansible_collections.k8router.edge.plugins.module_utils._agent import Agent, AgentSettings
from ansible_collections.k8router.edge.plugins.module_utils._args import CONVERGE_ARGS, options_from_params
from ansible_collections.k8router.edge.plugins.module_utils._converge import run
from tests.fixtures import kubelab, kubeobjects, pki
from tests.fixtures.haproxylab import Haproxy, local_runner, running_haproxy
from tests.fixtures.kubeobjects import BackendPod, IngressRule, ServicePort

NS = "agent-ingress"
SERVICE = "agent-controller"
CLASS = "agent"
PORTS = (ServicePort("http", 80, target_port=8080),)
PODS = {
    "alpha": [BackendPod("agent-a1", "10.250.3.11", "agent-n1"), BackendPod("agent-a2", "10.250.3.12", "agent-n1")],
    "beta": [BackendPod("agent-b1", "10.250.4.11", "agent-n1")],
}


@pytest.fixture(scope="module")
def agent_world(clusters: list[kubelab.Cluster], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("agent")
    ca = pki.CertAuthority.create("k8router agent test CA")
    (root / "ca.pem").write_bytes(ca.pem)
    certs = root / "certs"
    certs.mkdir()
    (certs / "wildcard.pem").write_bytes(ca.issue_pem("agent-wildcard", ["*.agent.test"], days=30))
    by_name = {c.name: c for c in clusters}
    with running_haproxy(root / "haproxy") as haproxy:
        for name, pods in PODS.items():
            for pod in pods:
                haproxy.add_pod(name, pod.ip)
            with by_name[name].api_client() as api:
                kubeobjects.create_node(api, "agent-n1", "10.250.9.2", "10.250.3.0/24")
                kubeobjects.create_ingress_controller(api, NS, pods, name=SERVICE, ports=PORTS)
                kubeobjects.create_ingress_class(api, CLASS, controller="example.com/agent")
                kubeobjects.ensure_namespace(api, "agent-shop")
                kubeobjects.create_ingress(
                    api, "agent-shop", "web", [IngressRule("web.agent.test", "web", 80)], class_name=CLASS
                )
        params: dict[str, Any] = {k: v.get("default") for k, v in CONVERGE_ARGS.items()}
        params.update(
            clusters=[
                {
                    "name": c.name,
                    "kubeconfig": str(c.kubeconfig),
                    "context": None,
                    "ingress_controller": {"namespace": NS, "service": SERVICE, "port": "http"},
                    "ingress_classes": [CLASS],
                    "weight": 100,
                    "state": "active",
                    "allowed_hosts": ["*.agent.test"],
                }
                for c in clusters
            ],
            certificate_dir=str(certs),
            state_dir=str(root / "state"),
            haproxy={**haproxy.module_haproxy(), "binary": "haproxy"},
            lock_timeout=10.0,
            request_timeout=3,
        )
        settings = AgentSettings(window=0.1, reload_interval=1.0, resync=3600, metrics_address=("127.0.0.1", 0))
        agent = Agent(lambda: options_from_params(params), settings, runner=local_runner)
        agent.start()
        thread = threading.Thread(target=agent.run_forever, name="agent")
        thread.start()
        try:
            wait_for(lambda: agent.runs > 0, 30, "the agent's first run")
            yield {"agent": agent, "haproxy": haproxy, "ca": root / "ca.pem", "clusters": by_name, "params": params}
        finally:
            agent.close()
            thread.join(10)
            for name in PODS:
                with by_name[name].api_client() as api:
                    k8s.CoreV1Api(api).delete_namespace(NS)
                    k8s.CoreV1Api(api).delete_namespace("agent-shop")
                    k8s.NetworkingV1Api(api).delete_ingress_class(CLASS)
                    k8s.CoreV1Api(api).delete_node("agent-n1")


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> float:
    """Seconds until ``check()`` is true (polled every 20 ms); fails naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - started


def settle(agent: Agent) -> None:
    """Until the agent has nothing pending (a change held back for the reload interval included) for 1.5 s."""
    quiet = 0.0
    while quiet < 1.5:
        time.sleep(0.1)
        quiet = 0.0 if agent._pending_since is not None else quiet + 0.1


def answers(haproxy: Haproxy, ca: Path, host: str, count: int = 9) -> set[str]:
    """``cluster=... pod=...`` of each answer for ``host``; ``failed`` for a request that was not answered 200."""
    seen = set()
    for _request in range(count):
        status, body, _subject = haproxy.get(host, ca)
        seen.add(" ".join(body.split()[:2]) if status == 200 else f"failed {status}")
    return seen


def metric(agent: Agent, name: str, **labels: str) -> float:
    """One value of the agent's metrics, read over HTTP as Prometheus would."""
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        key, _sep, value = line.rpartition(" ")
        if key == want:
            return float(value)
    raise AssertionError(f"{want} not in the metrics:\n{text}")


def test_first_run_serves_every_cluster_and_the_metrics_say_so(agent_world: dict[str, Any]) -> None:
    agent, haproxy, ca = agent_world["agent"], agent_world["haproxy"], agent_world["ca"]
    assert answers(haproxy, ca, "web.agent.test") == {
        "cluster=alpha pod=10.250.3.11", "cluster=alpha pod=10.250.3.12", "cluster=beta pod=10.250.4.11"
    }  # fmt: skip
    assert metric(agent, "k8router_cluster_up", cluster="alpha") == 1
    assert metric(agent, "k8router_cluster_up", cluster="beta") == 1
    assert metric(agent, "k8router_reloads_total") >= 1
    wildcard = str(Path(agent_world["params"]["certificate_dir"]) / "wildcard.pem")
    assert 29 < metric(agent, "k8router_certificate_expiry_days", certificate=wildcard) <= 30
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/healthz", timeout=5) as resp:
        assert resp.read() == b"following\n"


def test_new_ingress_is_served_without_a_periodic_run(agent_world: dict[str, Any]) -> None:
    agent, haproxy, ca = agent_world["agent"], agent_world["haproxy"], agent_world["ca"]
    settle(agent)
    reloads = metric(agent, "k8router_reloads_total")
    with agent_world["clusters"]["beta"].api_client() as api:
        kubeobjects.create_ingress(
            api, "agent-shop", "new", [IngressRule("new.agent.test", "web", 80)], class_name=CLASS
        )
    took = wait_for(lambda: answers(haproxy, ca, "new.agent.test", 1) == {"cluster=beta pod=10.250.4.11"}, 20, "new")
    print(f"agent: new Ingress served {took:.2f} s after it was created")
    # a new host is a new map entry: one reload (counted once its run returns, just after haproxy serves it)
    wait_for(lambda: metric(agent, "k8router_reloads_total") > reloads, 5, "the reload counted")
    settle(agent)
    assert metric(agent, "k8router_reloads_total") == reloads + 1


def test_structural_changes_reload_at_most_once_an_interval(agent_world: dict[str, Any]) -> None:
    """Six new hosts, one every 0.3 s (each its own run with a 0.1 s window): all served, reloads 1 s apart."""
    agent, haproxy, ca = agent_world["agent"], agent_world["haproxy"], agent_world["ca"]
    before = len(agent.figures.reload_times)
    hosts = [f"burst{i}.agent.test" for i in range(6)]
    with agent_world["clusters"]["alpha"].api_client() as api:
        for i, host in enumerate(hosts):
            kubeobjects.create_ingress(api, "agent-shop", f"burst{i}", [IngressRule(host, "web", 80)], class_name=CLASS)
            time.sleep(0.3)
    took = wait_for(lambda: all(answers(haproxy, ca, h, 1) != {"failed 503"} for h in hosts), 20, "every burst host")
    times = agent.figures.reload_times[before:]
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(times)]
    print(f"agent: 6 new hosts in 1.8 s served within {took + 1.8:.1f} s with {len(times)} reloads, gaps {gaps} s")
    assert 1 <= len(times) <= 4
    assert all(gap >= 0.99 for gap in gaps), gaps


def test_pod_not_ready_leaves_rotation_by_the_runtime_api(agent_world: dict[str, Any]) -> None:
    agent, haproxy = agent_world["agent"], agent_world["haproxy"]
    settle(agent)
    workers = haproxy.worker_pids()
    reloads, commands = metric(agent, "k8router_reloads_total"), metric(agent, "k8router_runtime_commands_total")
    pods = [PODS["alpha"][0], BackendPod("agent-a2", "10.250.3.12", "agent-n1", ready=False)]
    with agent_world["clusters"]["alpha"].api_client() as api:
        set_slice(api, pods)
    took = wait_for(lambda: "MAINT" in pod_states(haproxy, "10.250.3.12"), 20, "pod out of rotation")
    print(f"agent: pod not ready out of rotation {took:.2f} s after its EndpointSlice changed")
    assert metric(agent, "k8router_reloads_total") == reloads
    assert metric(agent, "k8router_runtime_commands_total") > commands
    assert haproxy.worker_pids() == workers
    with agent_world["clusters"]["alpha"].api_client() as api:
        set_slice(api, PODS["alpha"])
    wait_for(lambda: "MAINT" not in pod_states(haproxy, "10.250.3.12"), 20, "pod back in rotation")


def set_slice(api: k8s.ApiClient, pods: list[BackendPod]) -> None:
    """The controller's EndpointSlice rewritten in place (as the EndpointSlice controller does)."""
    discovery = k8s.DiscoveryV1Api(api)
    (eps,) = discovery.list_namespaced_endpoint_slice(NS, label_selector=f"kubernetes.io/service-name={SERVICE}").items
    eps.endpoints = [
        k8s.V1Endpoint(addresses=[p.ip], conditions=k8s.V1EndpointConditions(ready=p.ready, serving=p.ready))
        for p in pods
    ]
    assert eps.metadata is not None and eps.metadata.name is not None
    discovery.replace_namespaced_endpoint_slice(eps.metadata.name, NS, eps)


def pod_states(haproxy: Haproxy, address: str) -> set[str]:
    """haproxy's states of the servers in the slots that hold ``address`` (from the layout's runtime addresses)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(haproxy.socket))
        sock.sendall(b"show servers state\n")
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    states = haproxy.server_states()
    found = set()
    for line in data.decode().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == address:
            found.add(states.get(f"{fields[1]}/{fields[3]}", "?"))
    return found


def test_api_server_away_keeps_serving_and_is_followed_again_after_410(agent_world: dict[str, Any]) -> None:
    agent, haproxy, ca = agent_world["agent"], agent_world["haproxy"], agent_world["ca"]
    alpha, beta = agent_world["clusters"]["alpha"], agent_world["clusters"]["beta"]
    beta.kill_apiserver()
    try:
        wait_for(lambda: metric(agent, "k8router_cluster_up", cluster="beta") == 0, 10, "beta seen down")
        with alpha.api_client() as api:  # a change elsewhere makes a run while beta is away
            kubeobjects.create_ingress(
                api, "agent-shop", "away", [IngressRule("away.agent.test", "web", 80)], class_name=CLASS
            )
        wait_for(lambda: answers(haproxy, ca, "away.agent.test", 1) != {"failed 503"}, 20, "alpha's change")
        assert "cluster=beta pod=10.250.4.11" in answers(haproxy, ca, "web.agent.test")  # nothing of beta removed
        assert answers(haproxy, ca, "new.agent.test", 3) == {"cluster=beta pod=10.250.4.11"}
        assert metric(agent, "k8router_watch_errors_total", cluster="beta", kind="ingresses") >= 1
        relists = metric(agent, "k8router_watch_relists_total", cluster="beta", kind="ingresses")
        beta.etcd_compact()  # what the agent last saw of beta is history now: it resumes with a 410 and lists
    finally:
        beta.start_apiserver()
    back = time.monotonic()
    took = wait_for(lambda: metric(agent, "k8router_cluster_up", cluster="beta") == 1, 5, "beta followed again")
    print(f"agent: beta followed again {took:.2f} s after its API server answered again")
    with beta.api_client() as api:
        kubeobjects.create_ingress(
            api, "agent-shop", "back", [IngressRule("back.agent.test", "web", 80)], class_name=CLASS
        )
    wait_for(
        lambda: answers(haproxy, ca, "back.agent.test", 1) == {"cluster=beta pod=10.250.4.11"}, 20, "beta's change"
    )
    print(f"agent: a change in beta served {time.monotonic() - back:.2f} s after its API server was back")
    assert metric(agent, "k8router_watch_relists_total", cluster="beta", kind="ingresses") == relists + 1


def test_periodic_run_takes_the_same_lock_and_agrees(agent_world: dict[str, Any]) -> None:
    """The periodic run beside the agent: it waits for the lock, then finds nothing to change."""
    result = run(options_from_params(agent_world["params"]), local_runner)
    assert not result.changed, result.commands
