"""k8router against two real clusters and a real haproxy (see conftest.py): every host served from
every cluster offering it, TLS ended at the router with certificates matched by SAN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml

from ansible_collections.k8router.edge.plugins.module_utils import _converge
from ansible_collections.k8router.edge.plugins.module_utils._args import CONVERGE_ARGS, options_from_params
from ansible_collections.k8router.edge.plugins.module_utils._cluster import read_clusters
from ansible_collections.k8router.edge.plugins.module_utils._converge import Result, run
from ansible_collections.k8router.edge.plugins.module_utils._errors import (
    ConfigInvalidError,
    K8RouterError,
    RuntimeApiError,
)
from ansible_collections.k8router.edge.plugins.module_utils._haproxy_driver import RuntimeApi
from ansible_collections.k8router.edge.plugins.module_utils._lb import plan_lb, publish
from ansible_collections.k8router.edge.plugins.module_utils._state import StateStore
from tests.fixtures import kubelab, kubeobjects, pki
from tests.fixtures.haproxylab import REPO, Haproxy, local_runner, netns_exec
from tests.fixtures.kubeobjects import BackendPod, IngressRule, ServicePort

NS = "edge-ingress"
CLASS = "edge"
PORTS = (ServicePort("http", 80, target_port=8080),)
PODS = {
    "alpha": [BackendPod("ctl-a1", "10.250.1.11", "edge-n1"), BackendPod("ctl-a2", "10.250.1.12", "edge-n1")],
    "beta": [BackendPod("ctl-b1", "10.250.2.11", "edge-n1")],
}


class Pki:
    """A CA for the ingress certificates; the TLS clients trust only it."""

    def __init__(self, root: Path) -> None:
        self.ca = pki.CertAuthority.create("k8router test CA")
        self.ca_file = root / "ca.pem"
        self.ca_file.write_bytes(self.ca.pem)

    def issue(self, path: Path, cn: str, names: list[str], days: int = 20) -> Path:
        path.write_bytes(self.ca.issue_pem(cn, names, days=days))
        return path


@pytest.fixture(scope="module")
def world(
    clusters: list[kubelab.Cluster], haproxy: Haproxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Both clusters offer shop.example.com; only alpha offers api.example.com.

    beta also claims a host outside its allow-list.
    """
    root = tmp_path_factory.mktemp("k8router")
    pki = Pki(root)
    certs = root / "certs"
    certs.mkdir()
    pki.issue(certs / "wildcard.pem", "wildcard-example", ["*.example.com"])
    by_name = {c.name: c for c in clusters}
    for name, pods in PODS.items():
        for pod in pods:
            haproxy.add_pod(name, pod.ip)
        with by_name[name].api_client() as api:
            kubeobjects.create_node(api, "edge-n1", "10.250.9.1", "10.250.0.0/24")
            kubeobjects.create_ingress_controller(api, NS, pods, ports=PORTS)
            kubeobjects.create_ingress_class(api, CLASS, controller="example.com/edge")
            kubeobjects.ensure_namespace(api, "edge-shop")
            kubeobjects.create_ingress(
                api, "edge-shop", "web", [IngressRule("shop.example.com", "web", 80)], class_name=CLASS
            )
            if name == "alpha":
                kubeobjects.create_ingress(
                    api, "edge-shop", "api", [IngressRule("api.example.com", "api", 80)], class_name=CLASS
                )
            else:
                kubeobjects.create_ingress(
                    api, "edge-shop", "steal", [IngressRule("bank.example.org", "x", 80)], class_name=CLASS
                )
    params: dict[str, Any] = {k: v.get("default") for k, v in CONVERGE_ARGS.items()}
    params.update(
        clusters=[
            {
                "name": c.name,
                "kubeconfig": str(c.kubeconfig),
                "context": None,
                "ingress_controller": {"namespace": NS, "service": "ingress-nginx-controller", "port": "http"},
                "ingress_classes": [CLASS],
                "weight": 100,
                "state": "active",
                "allowed_hosts": ["*.example.com"],
            }
            for c in clusters
        ],
        certificate_dir=str(certs),
        state_dir=str(root / "state"),
        haproxy={**haproxy.module_haproxy(), "binary": "haproxy"},
        lock_timeout=5.0,
    )
    yield {"params": params, "pki": pki, "certs": certs, "clusters": by_name, "root": root}


def converge(params: dict[str, Any], **kwargs: Any) -> Result:
    return run(options_from_params(params), local_runner, **kwargs)


def responders(haproxy: Haproxy, ca: Path, host: str, count: int = 12) -> set[str]:
    seen = set()
    for _request in range(count):
        status, body, _subject = haproxy.get(host, ca)
        assert status == 200, body
        seen.add(body.split()[0])
    return seen


def test_first_run_serves_every_host_from_every_cluster(world: dict[str, Any], haproxy: Haproxy) -> None:
    result = converge(world["params"])
    assert result.changed and result.reloaded
    hosts = {row["host"]: row for row in result.hosts}
    assert hosts["shop.example.com"]["clusters"] == ["alpha", "beta"]
    assert hosts["shop.example.com"]["backends"] == 3
    assert hosts["api.example.com"]["clusters"] == ["alpha"]
    assert hosts["shop.example.com"]["certificate"].endswith("wildcard.pem")
    assert "bank.example.org" not in hosts
    assert any("host bank.example.org refused: not in the cluster's allowed_hosts" in w for w in result.warnings)
    assert responders(haproxy, world["pki"].ca_file, "shop.example.com") == {"cluster=alpha", "cluster=beta"}
    assert responders(haproxy, world["pki"].ca_file, "api.example.com", 4) == {"cluster=alpha"}
    status, _body, subject = haproxy.get("shop.example.com", world["pki"].ca_file)
    assert (status, subject) == (200, "wildcard-example")
    # a host nobody serves gets the fallback certificate, never one of the served hosts'
    status, body, _subject = haproxy.get("unknown.example.com", world["pki"].ca_file)
    assert status == 0
    assert "self-signed certificate" in body, body


def test_second_run_changes_nothing(world: dict[str, Any], haproxy: Haproxy) -> None:
    converge(world["params"])
    workers = haproxy.worker_pids()
    result = converge(world["params"])
    assert not result.changed and not result.reloaded and result.commands == []
    assert haproxy.worker_pids() == workers


@contextmanager
def requests_under_load(haproxy: Haproxy, ca: Path, hosts: Sequence[str]) -> Iterator[list[str]]:
    """HTTPS requests to ``hosts`` in turn, one after the other, until the block ends; yields the failures."""
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for host in hosts:
                status, body, _subject = haproxy.get(host, ca)
                if status != 200:
                    failures.append(f"{host}: {body}")

    thread = threading.Thread(target=load)
    thread.start()
    try:
        yield failures
    finally:
        stop.set()
        thread.join()


def test_pod_leaving_is_a_runtime_change_without_failed_requests(world: dict[str, Any], haproxy: Haproxy) -> None:
    converge(world["params"])
    workers = haproxy.worker_pids()
    with requests_under_load(haproxy, world["pki"].ca_file, ["shop.example.com"]) as failures:
        with world["clusters"]["alpha"].api_client() as api:
            remaining = [PODS["alpha"][0], BackendPod("ctl-a2", "10.250.1.12", "edge-n1", ready=False)]
            k8s.DiscoveryV1Api(api).delete_namespaced_endpoint_slice(_slice_name(api), NS)
            kubeobjects.create_endpoint_slice(api, NS, "ingress-nginx-controller", remaining, PORTS)
        result = converge(world["params"])
    assert result.changed and not result.reloaded
    assert any(c.endswith("state maint") for c in result.commands), result.commands
    assert haproxy.worker_pids() == workers
    assert failures == []
    bodies = {haproxy.get("shop.example.com", world["pki"].ca_file)[1].split()[1] for _request in range(9)}
    assert "pod=10.250.1.12" not in bodies
    # the files say the same as the runtime, so a later reload keeps it
    assert converge(world["params"]).changed is False


def _slice_name(api: k8s.ApiClient) -> str:
    (eps,) = k8s.DiscoveryV1Api(api).list_namespaced_endpoint_slice(NS).items
    assert eps.metadata is not None
    return str(eps.metadata.name)


def test_unreachable_cluster_keeps_serving_from_last_known_good(world: dict[str, Any], haproxy: Haproxy) -> None:
    converge(world["params"])
    params = json.loads(json.dumps(world["params"]))
    dead = world["root"] / "beta-dead.kubeconfig"
    config = yaml.safe_load(world["clusters"]["beta"].kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{kubelab.free_ports(1, '127.0.0.1')[0]}"
    dead.write_text(yaml.safe_dump(config))
    params["clusters"][1]["kubeconfig"] = str(dead)
    params["request_timeout"] = 3
    result = converge(params)
    assert not result.changed
    assert any("cluster beta" in w and "last-known-good" in w for w in result.warnings), result.warnings
    assert {c["name"]: c["read"] for c in result.clusters} == {"alpha": "fresh", "beta": "last-known-good"}
    assert "cluster=beta" in responders(haproxy, world["pki"].ca_file, "shop.example.com")
    params["max_age"] = 0
    result = converge(params)
    assert result.changed
    assert {row["host"]: row["clusters"] for row in result.hosts}["shop.example.com"] == ["alpha"]
    assert converge(world["params"]).changed  # beta back


def test_new_certificate_is_served_after_one_run(world: dict[str, Any], haproxy: Haproxy) -> None:
    converge(world["params"])
    path = world["pki"].issue(world["certs"] / "shop.pem", "shop-exact", ["shop.example.com"], days=25)
    try:
        result = converge(world["params"])
        assert result.changed
        assert haproxy.get("shop.example.com", world["pki"].ca_file)[2] == "shop-exact"
        assert haproxy.get("api.example.com", world["pki"].ca_file)[2] == "wildcard-example"
    finally:
        path.unlink()
    converge(world["params"])
    assert haproxy.get("shop.example.com", world["pki"].ca_file)[2] == "wildcard-example"


def test_certificates_change_without_a_reload_and_lose_no_request(world: dict[str, Any], haproxy: Haproxy) -> None:
    """Renewed, new and removed certificates go through the runtime API: no reload, no failed request, and the
    files on disk say the same, so a reload afterwards serves the same certificates."""
    ca, wildcard = world["pki"].ca_file, world["certs"] / "wildcard.pem"
    converge(world["params"])
    workers = haproxy.worker_pids()

    def subjects() -> tuple[str, str]:
        return haproxy.get("shop.example.com", ca)[2], haproxy.get("api.example.com", ca)[2]

    shop = world["certs"] / "shop.pem"
    try:
        with requests_under_load(haproxy, ca, ["shop.example.com", "api.example.com"]) as failures:
            world["pki"].issue(wildcard, "wildcard-renewed", ["*.example.com"], days=40)
            renewed = converge(world["params"])
            assert subjects() == ("wildcard-renewed", "wildcard-renewed")
            world["pki"].issue(shop, "shop-exact", ["shop.example.com"], days=45)  # the newest covering shop: chosen
            added = converge(world["params"])
            assert subjects() == ("shop-exact", "wildcard-renewed")
            shop.unlink()
            removed = converge(world["params"])
            assert subjects() == ("wildcard-renewed", "wildcard-renewed")
    finally:
        shop.unlink(missing_ok=True)
    for result in (renewed, added, removed):
        assert result.changed and not result.reloaded, result
        assert result.commands and all(" ssl " in c for c in result.commands), result.commands
    assert any(c.startswith("set ssl cert") and c.endswith("<<(certificate and key)") for c in renewed.commands)
    assert any(c.startswith("add ssl crt-list") for c in added.commands), added.commands
    assert any(c.startswith("del ssl cert") for c in removed.commands), removed.commands
    assert not any("BEGIN" in c for c in [*renewed.commands, *added.commands]), "key material in the commands"
    assert haproxy.worker_pids() == workers
    assert failures == []
    assert converge(world["params"]).changed is False
    # what a reload loads from disk is what the runtime was told
    assert haproxy.proc is not None
    subprocess.run(["kill", "-USR2", str(haproxy.proc.pid)], check=True)
    assert RuntimeApi(str(haproxy.socket)).wait_for_new_worker(next(iter(workers)))
    assert subjects() == ("wildcard-renewed", "wildcard-renewed")
    assert converge(world["params"]).changed is False
    world["pki"].issue(wildcard, "wildcard-example", ["*.example.com"])
    assert not converge(world["params"]).reloaded
    assert subjects() == ("wildcard-example", "wildcard-example")


def test_broken_certificate_is_reported_and_loses_nothing(world: dict[str, Any], haproxy: Haproxy) -> None:
    converge(world["params"])
    broken = world["certs"] / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    try:
        result = converge(world["params"])
    finally:
        broken.unlink()
    assert not result.changed
    assert any(str(broken) in w for w in result.warnings), result.warnings
    assert haproxy.get("shop.example.com", world["pki"].ca_file)[0] == 200


def test_rejected_candidate_never_goes_live(world: dict[str, Any], haproxy: Haproxy) -> None:
    converge(world["params"])
    live = (haproxy.conf_dir / "50-k8router.cfg").read_bytes()
    params = {**world["params"], "backend_tls": True, "backend_ca_file": str(world["root"] / "missing-ca.pem")}
    with pytest.raises(ConfigInvalidError, match=r"missing-ca\.pem"):
        converge(params)
    assert (haproxy.conf_dir / "50-k8router.cfg").read_bytes() == live
    assert (haproxy.conf_dir / "50-k8router.cfg.rejected").exists()
    assert haproxy.get("shop.example.com", world["pki"].ca_file)[0] == 200


def test_two_runs_at_once_take_turns(world: dict[str, Any], haproxy: Haproxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second run reads the clusters only after the first released the lock."""
    events: list[tuple[str, str]] = []
    real_read, real_lock = _converge.read_clusters, StateStore.lock  # type: ignore[attr-defined]

    def read(sources: Any) -> Any:
        events.append(("read", threading.current_thread().name))
        time.sleep(0.5)  # a slow cluster: without the lock the two runs would overlap here
        return real_read(sources)

    @contextmanager
    def lock(self: StateStore, timeout: float) -> Iterator[None]:
        held = real_lock(self, timeout)
        held.__enter__()
        events.append(("acquired", threading.current_thread().name))
        try:
            yield
        finally:
            held.__exit__(None, None, None)
            events.append(("released", threading.current_thread().name))

    monkeypatch.setattr(_converge, "read_clusters", read)
    monkeypatch.setattr(StateStore, "lock", lock)
    results: list[Result | Exception] = []

    def one() -> None:
        try:
            results.append(converge(world["params"]))
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=one, name=f"run{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, Result) for r in results), results
    first, second = events[0][1], events[3][1]
    assert events == [("acquired", first), ("read", first), ("released", first),
                      ("acquired", second), ("read", second), ("released", second)]  # fmt: skip
    assert first != second
    assert haproxy.get("shop.example.com", world["pki"].ca_file)[0] == 200


def test_module_check_diff_rendered_and_idempotence(world: dict[str, Any], haproxy: Haproxy, tmp_path: Path) -> None:
    """The module itself, through ansible-playbook: check mode and diff, state: rendered, a no-change run."""
    args = {k: v for k, v in world["params"].items() if v is not None}
    (tmp_path / "args.json").write_text(json.dumps({"k8router_args": args}))
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - k8router.edge.k8router: '{{ k8router_args }}'\n      register: out\n"
        "    - ansible.builtin.copy: {content: '{{ out | to_json }}', dest: '" + str(tmp_path / "out.json") + "'}\n"
        "      check_mode: false\n      diff: false\n"
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_PYTHON_INTERPRETER": sys.executable}

    def play(*extra: str, state: str = "present") -> dict[str, Any]:
        args["state"] = state
        (tmp_path / "args.json").write_text(json.dumps({"k8router_args": args}))
        out = subprocess.run(
            ["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", f"@{tmp_path / 'args.json'}", *extra,
             str(tmp_path / "play.yml")],
            capture_output=True, text=True, env=env, cwd=REPO, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        outputs.append(out.stdout + out.stderr)
        return dict(json.loads((tmp_path / "out.json").read_text()))

    outputs: list[str] = []
    converge(world["params"])
    assert play()["changed"] is False
    info_args = {k: args[k] for k in ("clusters", "certificate_dir", "state_dir", "request_timeout", "max_age")}
    (tmp_path / "info.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - k8router.edge.k8router_info: {json.dumps(info_args)}\n      register: out\n"
        "    - ansible.builtin.copy: {content: '{{ out | to_json }}', dest: '" + str(tmp_path / "info.json") + "'}\n"
    )
    out = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "info.yml")],
                         capture_output=True, text=True, env=env, cwd=REPO, check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["changed"] is False
    assert {h["host"]: h["clusters"] for h in info["hosts"]}["shop.example.com"] == ["alpha", "beta"]
    rendered = play(state="rendered")
    assert rendered["changed"] is False
    files = rendered["rendered"]
    backends = files[str(haproxy.conf_dir / "50-k8router.cfg")]
    assert "server alpha_1 10.250.1.11:8080" in backends
    assert any(v == "(certificate and key)" for v in files.values())
    # a drained cluster: check mode shows the runtime change and touches nothing
    args["clusters"][1]["state"] = "drain"
    live = (haproxy.conf_dir / "50-k8router.cfg").read_bytes()
    try:
        checked = play("--check", "--diff", "-vvv")
        # what the run read (the certificates' keys, the kubeconfigs' credentials) never shows at -vvv --diff
        keys = [yaml.safe_load(Path(c["kubeconfig"]).read_text())["users"][0]["user"] for c in args["clusters"]]
        secrets = ["PRIVATE KEY", *(str(k.get("client-key-data") or k.get("token"))[:40] for k in keys)]
        assert all(len(s) > 10 for s in secrets)
        assert [s for s in secrets if s in outputs[-1]] == []
        assert checked["changed"] is True
        assert any(c.endswith("weight 0") for c in checked["commands"]), checked["commands"]
        diffs = {d["after_header"]: d for d in checked["diff"]}
        backends = diffs[str(haproxy.conf_dir / "50-k8router.cfg")]
        assert "server beta_1 10.250.2.11:8080 weight 256 track" in backends["before"]
        assert "server beta_1 10.250.2.11:8080 weight 0 track" in backends["after"]
        runtime = diffs["haproxy runtime API"]["after"].splitlines()
        assert [c for c in runtime if "beta_1" in c and "k8r_pods" not in c] != []
        assert all(c.endswith("weight 0") for c in runtime if "/beta_1 " in c)
        assert "haproxy" not in diffs  # runtime only, no reload
        assert (haproxy.conf_dir / "50-k8router.cfg").read_bytes() == live
        applied = play()
        assert applied["changed"] is True and applied["reloaded"] is False
        figures = applied["figures"]  # what the periodic run logs, the agent's metrics
        assert figures["reloaded"] is False and figures["runtime_commands"] == len(applied["commands"]) > 0
        assert figures["clusters"] == {"alpha": {"read": "fresh", "age": 0}, "beta": {"read": "fresh", "age": 0}}
        assert 19 < figures["certificate_expiry_days"][str(world["certs"] / "wildcard.pem")] <= 20
        assert play()["changed"] is False
    finally:
        args["clusters"][1]["state"] = "active"
    assert converge(world["params"]).changed is True


# Day 2: what must hold between runs and through failures.

KILL_MID_APPLY = """
import json, os, signal, sys
from ansible_collections.k8router.edge.plugins.module_utils import _converge, _haproxy_driver
from ansible_collections.k8router.edge.plugins.module_utils._args import options_from_params
from tests.fixtures.haproxylab import local_runner
params, step = json.load(open(sys.argv[1])), sys.argv[2]
real_write = _haproxy_driver.write_atomic
def write(path, data, mode=0o640):
    real_write(path, data, mode)
    if (step == "certificates" and path.endswith(".pem")) or (step == "maps" and path.endswith(".map")):
        os.kill(os.getpid(), signal.SIGKILL)
_haproxy_driver.write_atomic = write
def runner(argv):
    if step == "reload" and list(argv) == params["haproxy"]["reload_command"]:
        os.kill(os.getpid(), signal.SIGKILL)
    return local_runner(argv)
_converge.run(options_from_params(params), runner)
"""


@contextmanager
def new_host(world: dict[str, Any], host: str) -> Iterator[Path]:
    """An Ingress for ``host`` in alpha and a certificate of its own; both gone afterwards."""
    cert = world["pki"].issue(world["certs"] / f"{host}.pem", host, [host], days=25)
    with world["clusters"]["alpha"].api_client() as api:
        kubeobjects.create_ingress(
            api, "edge-shop", host.split(".", maxsplit=1)[0], [IngressRule(host, "web", 80)], class_name=CLASS
        )
    try:
        yield cert
    finally:
        cert.unlink()
        with world["clusters"]["alpha"].api_client() as api:
            k8s.NetworkingV1Api(api).delete_namespaced_ingress(host.split(".", maxsplit=1)[0], "edge-shop")


def served_by_alpha_with_its_certificate(haproxy: Haproxy, world: dict[str, Any], host: str) -> bool:
    status, body, subject = haproxy.get(host, world["pki"].ca_file)
    return bool(status == 200 and body.startswith("cluster=alpha") and subject == host)


def test_failed_reload_is_redone_by_the_next_run(world: dict[str, Any], haproxy: Haproxy) -> None:
    converge(world["params"])
    failing = json.loads(json.dumps(world["params"]))
    failing["haproxy"]["reload_command"] = ["false"]
    with new_host(world, "retry.example.com"):
        with pytest.raises(RuntimeApiError, match="the next run reloads again"):
            converge(failing)
        assert not served_by_alpha_with_its_certificate(haproxy, world, "retry.example.com")  # written, not loaded
        result = converge(world["params"])
        assert result.changed and result.reloaded
        assert served_by_alpha_with_its_certificate(haproxy, world, "retry.example.com")
        assert converge(world["params"]).changed is False
    converge(world["params"])


@pytest.mark.parametrize("step", ["certificates", "maps", "reload"])
def test_run_killed_mid_apply_is_redone_by_the_next_run(
    world: dict[str, Any], haproxy: Haproxy, tmp_path: Path, step: str
) -> None:
    """SIGKILL after the certificates, after the maps, and just before the reload: the next run reloads and serves."""
    converge(world["params"])
    host = f"killed-{step}.example.com"
    (tmp_path / "params.json").write_text(json.dumps(world["params"]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with new_host(world, host):
        proc = subprocess.run([sys.executable, "-c", KILL_MID_APPLY, str(tmp_path / "params.json"), step],
                              capture_output=True, text=True, env=env, cwd=REPO, check=False)  # fmt: skip
        assert proc.returncode == -9, proc.stdout + proc.stderr
        assert not served_by_alpha_with_its_certificate(haproxy, world, host)
        result = converge(world["params"])
        assert result.changed and result.reloaded
        assert served_by_alpha_with_its_certificate(haproxy, world, host)
    converge(world["params"])


def test_controller_rollout_between_runs_loses_no_request(world: dict[str, Any], haproxy: Haproxy) -> None:
    """alpha's ctl-a2 is replaced by ctl-a3 between two runs: ctl-a3 ready, ctl-a2 terminating, ctl-a2's process
    and address gone 3 s later. No run happens until well after it is gone (as with a timer of minutes); the health
    checks take it out of rotation and failed connections are retried elsewhere. Then a run brings ctl-a3 in."""
    ca = world["pki"].ca_file
    with world["clusters"]["alpha"].api_client() as api:  # both of alpha's pods ready, as at the start
        k8s.DiscoveryV1Api(api).delete_namespaced_endpoint_slice(_slice_name(api), NS)
        kubeobjects.create_endpoint_slice(api, NS, "ingress-nginx-controller", PODS["alpha"], PORTS)
    converge(world["params"])
    old, new = PODS["alpha"][1], BackendPod("ctl-a3", "10.250.1.13", "edge-n1")
    slot = next(k for k, v in StateStore(world["params"]["state_dir"]).load_layout()["slots"].items()
                if k.startswith("k8r_pods_alpha/") and v[0] == old.ip)  # fmt: skip
    answers: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            answers.extend(haproxy.get_many("api.example.com", ca, 20))

    haproxy.add_pod("alpha", new.ip)
    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(1)
        with world["clusters"]["alpha"].api_client() as api:
            k8s.DiscoveryV1Api(api).delete_namespaced_endpoint_slice(_slice_name(api), NS)
            slice_body = kubeobjects.create_endpoint_slice(api, NS, "ingress-nginx-controller",
                                                           [PODS["alpha"][0], old, new], PORTS)  # fmt: skip
            assert slice_body.endpoints is not None
            slice_body.endpoints[1].conditions = k8s.V1EndpointConditions(ready=False, serving=True, terminating=True)
            assert slice_body.metadata is not None and slice_body.metadata.name is not None
            k8s.DiscoveryV1Api(api).replace_namespaced_endpoint_slice(slice_body.metadata.name, NS, slice_body)
        time.sleep(3)
        haproxy.remove_pod(old.ip)
        gone_at = time.monotonic()
        time.sleep(8)
        states = haproxy.server_states()
        assert states[slot] == "DOWN", states  # taken out by its health check, between runs
        result = converge(world["params"])  # the timer's next run
        assert result.changed and not result.reloaded
        time.sleep(2)
    finally:
        stop.set()
        thread.join()
    failed = [a for a in answers if a.startswith("failed")]
    print(f"rollout between runs: {len(answers)} requests, {len(failed)} failed; "
          f"no run for {time.monotonic() - gone_at - 2:.0f} s after the old pod was gone")  # fmt: skip
    assert failed == []
    assert len(answers) > 100
    assert "pod=10.250.1.13" in {a.split(",")[1] for a in answers[-20:]}
    # back to the module's pods for the tests after this one
    haproxy.remove_pod(new.ip)
    haproxy.add_pod("alpha", old.ip)
    with world["clusters"]["alpha"].api_client() as api:
        k8s.DiscoveryV1Api(api).delete_namespaced_endpoint_slice(_slice_name(api), NS)
        kubeobjects.create_endpoint_slice(api, NS, "ingress-nginx-controller", PODS["alpha"], PORTS)
    assert converge(world["params"]).changed


def wait_until_checked_up(haproxy: Haproxy, timeout: float = 15) -> None:
    """Until every pod in rotation passes its health check (a pod that was down needs ``rise`` checks)."""
    deadline = time.monotonic() + timeout
    while True:
        states = {k: v for k, v in haproxy.server_states().items() if k.startswith("k8r_pods_") and v != "MAINT"}
        if all(v == "UP" for v in states.values()):
            return
        assert time.monotonic() < deadline, states
        time.sleep(0.2)


def test_cluster_weights_are_cluster_shares(world: dict[str, Any], haproxy: Haproxy) -> None:
    """alpha (two pods) weight 10, beta (one pod) weight 90: a tenth of shop.example.com's requests go to alpha."""
    params = json.loads(json.dumps(world["params"]))
    params["clusters"][0]["weight"], params["clusters"][1]["weight"] = 10, 90
    result = converge(params)
    assert result.changed and not result.reloaded  # weights go through the runtime API
    wait_until_checked_up(haproxy)
    answers = haproxy.get_many("shop.example.com", world["pki"].ca_file, 2000)
    share = sum(a.startswith("cluster=alpha") for a in answers) / len(answers)
    print(f"weights 10/90: alpha served {share:.1%} of {len(answers)} requests")
    assert not [a for a in answers if a.startswith("failed")]
    assert 0.07 <= share <= 0.13
    converge(world["params"])


# L4: LoadBalancer Services (the planning and the status against real API servers; IPVS itself is proven in
# tests/integration/test_ipvs_kernel.py, this kernel has none).

LB_NS = "edge-l4"
LB_CLASS = "edge-lb"
LB_POOL = ["192.0.2.0/28", "2001:db8:5::/124"]


def lb_service(api: k8s.ApiClient, name: str, annotations: dict[str, str] | None = None, port: int = 80) -> None:
    body = {
        "metadata": {"name": name, "namespace": LB_NS, "annotations": annotations or {}},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": LB_CLASS, "allocateLoadBalancerNodePorts": False,
                 "ports": [{"name": "p", "port": port, "protocol": "TCP"}]},
    }  # fmt: skip
    service = k8s.V1Service.from_dict(body)
    assert service is not None
    k8s.CoreV1Api(api).create_namespaced_service(LB_NS, service)


def lb_params(world: dict[str, Any], **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = json.loads(json.dumps(world["params"]))
    params["load_balancer"] = {
        **{k: v.get("default") for k, v in CONVERGE_ARGS["load_balancer"]["options"].items()},
        "pool": LB_POOL, "classes": [LB_CLASS], **extra,
    }  # fmt: skip
    return params


def lb_plan(params: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """What one router of the set plans from a fresh read of the clusters (its own state plays no part)."""
    opts = options_from_params(params)
    snapshots, errors = read_clusters([src for src, _cfg in opts.clusters])
    assert errors == {}
    return plan_lb(opts.load_balancer, [cfg for _src, cfg in opts.clusters], snapshots)


@pytest.fixture(scope="module")
def lb_services(world: dict[str, Any]) -> Iterator[None]:
    """alpha: a Service asking for an IPv6 address (its cluster IP is IPv4), a plain one, one asking through the
    MetalLB annotation; beta: the same address through Cilium's annotation (shared), a hostile scheduler and
    address, and one whose status another owner published."""
    alpha, beta = world["clusters"]["alpha"], world["clusters"]["beta"]
    with alpha.api_client() as api:
        kubeobjects.ensure_namespace(api, LB_NS)
        lb_service(api, "v6req", {"k8router.edge/address": "2001:db8:5::3"})
        lb_service(api, "web")
        lb_service(api, "dns", {"metallb.io/loadBalancerIPs": "192.0.2.5"}, port=53)
    with beta.api_client() as api:
        kubeobjects.ensure_namespace(api, LB_NS)
        lb_service(api, "dns", {"lbipam.cilium.io/ips": "192.0.2.5"}, port=53)
        lb_service(
            api, "hostile", {"k8router.edge/scheduler": "rr\n-s wlc", "kube-vip.io/loadbalancerIPs": "192.0.2.1;id"}
        )
        lb_service(api, "foreign")
        kubeobjects.set_load_balancer_ingress(api, LB_NS, "foreign", ["198.51.100.9"])
    yield
    for cluster in (alpha, beta):
        with cluster.api_client() as api:
            k8s.CoreV1Api(api).delete_namespace(LB_NS)


def test_hostile_services_are_reported_and_stop_nothing(
    world: dict[str, Any], haproxy: Haproxy, lb_services: None
) -> None:
    """The run that used to fail before haproxy converged: each bad Service is a warning naming it, the others
    get their addresses, and the HTTP half converges whatever the L4 half meets."""
    params = lb_params(world)
    lb, rows = lb_plan(params)
    assert {r["service"]: r["address"] for r in rows} == {
        "alpha/edge-l4/dns": "192.0.2.5", "beta/edge-l4/dns": "192.0.2.5", "alpha/edge-l4/web": "192.0.2.1",
    }  # fmt: skip
    problems = sorted(lb.problems)
    assert len(problems) == 4, problems
    assert problems[0].startswith("service alpha/edge-l4/v6req: requested address 2001:db8:5::3 (k8router.edge/address) "
                                  "is not of the Service's IP family (IPv4, cluster IP 10.")  # fmt: skip
    assert problems[1] == (
        "service beta/edge-l4/foreign: status.loadBalancer.ingress holds '198.51.100.9', outside this router set's "
        "pool (published by another owner): not served by this set, status left alone"
    )
    assert problems[2] == (
        "service beta/edge-l4/hostile: requested address in kube-vip.io/loadbalancerIPs '192.0.2.1;id' is not an "
        "IP address; request ignored; not served"
    )
    assert problems[3] == (
        "service beta/edge-l4/hostile: scheduler 'rr\\n-s wlc' (k8router.edge/scheduler) is not one of rr, wrr, lc, "
        "wlc, sh, mh; using wrr"
    )
    assert [r.address[:3] for r in next(v for v in lb.virtuals if v.address == "192.0.2.5").reals] == ["10.", "10."]
    # the whole run: ipvsadm runs in the lab's network namespace (on this kernel it has no IPVS to talk to)
    ipvs_here = netns_exec(haproxy.ns, "ipvsadm", "-Sn").returncode == 0

    def runner(argv: Sequence[str]) -> tuple[int, str, str]:
        if argv[0] == "ipvsadm":
            proc: subprocess.CompletedProcess[str] = netns_exec(haproxy.ns, *argv)
        else:
            proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    with new_host(world, "l4-run.example.com"):
        if ipvs_here:
            result = run(options_from_params(params), runner)
            assert set(problems) <= set(result.warnings)
        else:
            with pytest.raises(
                K8RouterError, match=r"(?s)IPVS: ipvsadm -Sn failed .*\(haproxy is reloaded; the L4 half is not\)"
            ) as failed:
                run(options_from_params(params), runner)
            # the failure still reports every bad Service (the module shows these warnings with it)
            assert set(problems) <= set(failed.value.warnings)
        assert served_by_alpha_with_its_certificate(haproxy, world, "l4-run.example.com")
    # The same Services through the nftables engine, which this kernel has: the whole run converges, HTTP and L4,
    # and the good Services are in k8router's table (in the lab's namespace), the bad ones reported.
    nft_params = lb_params(world, engine="nftables")

    def nft_runner(argv: Sequence[str]) -> tuple[int, str, str]:
        proc = netns_exec(haproxy.ns, *argv) if argv[0] == "nft" else subprocess.run(
            list(argv), capture_output=True, text=True, check=False
        )  # fmt: skip
        return proc.returncode, proc.stdout, proc.stderr

    def nft_stdin(argv: Sequence[str], data: str) -> tuple[int, str, str]:
        proc = netns_exec(haproxy.ns, *argv, input=data)
        return proc.returncode, proc.stdout, proc.stderr

    try:
        with new_host(world, "l4-nft.example.com"):
            result = run(options_from_params(nft_params), nft_runner, stdin_runner=nft_stdin)
            assert set(problems) <= set(result.warnings)
            assert served_by_alpha_with_its_certificate(haproxy, world, "l4-nft.example.com")
        table = netns_exec(haproxy.ns, "nft", "list", "table", "inet", "k8router_lb").stdout
        assert "192.0.2.5 . tcp . 53" in table and "192.0.2.1 . tcp . 80" in table, table
        assert "2001:db8:5::3" not in table and "198.51.100.9" not in table
    finally:
        netns_exec(haproxy.ns, "nft", "delete", "table", "inet", "k8router_lb")
    converge(world["params"])


def test_routers_of_a_set_agree_through_published_status(world: dict[str, Any], lb_services: None) -> None:
    """Router A (it owns the class: write_status) publishes; router B, which never ran, computes the same table
    from the clusters alone, and keeps it when a Service that got its address first goes away. Another owner's
    status is never overwritten."""
    owner = lb_params(world, write_status=True)
    first, _rows = lb_plan(owner)
    assert first.status_writes == first.addresses
    sources = [src for src, _cfg in options_from_params(owner).clusters]
    assert publish(first, sources) == []
    other_router, _rows = lb_plan(lb_params(world))  # another router of the set: a fresh read, no history
    assert other_router.virtuals == first.virtuals and other_router.addresses == first.addresses
    assert other_router.status_writes == {}
    with world["clusters"]["alpha"].api_client() as api:
        lb_service(api, "later")  # created after web: the next free address
    second, _rows = lb_plan(owner)
    assert second.addresses["alpha/edge-l4/later"] == "192.0.2.2"
    assert second.status_writes == {"alpha/edge-l4/later": "192.0.2.2"}
    assert publish(second, sources) == []
    with world["clusters"]["alpha"].api_client() as api:
        k8s.CoreV1Api(api).delete_namespaced_service("web", LB_NS)  # the lowest address is free again
    final_a, _rows = lb_plan(owner)
    final_b, _rows = lb_plan(lb_params(world))
    assert final_a.virtuals == final_b.virtuals and final_a.addresses == final_b.addresses
    assert final_a.addresses["alpha/edge-l4/later"] == "192.0.2.2"  # its published address, not the lowest free
    assert "alpha/edge-l4/web" not in final_a.addresses and final_a.status_writes == {}
    with world["clusters"]["beta"].api_client() as api:
        status = k8s.CoreV1Api(api).read_namespaced_service_status("foreign", LB_NS).status
    assert status is not None and status.load_balancer is not None
    assert [i.ip for i in status.load_balancer.ingress or []] == ["198.51.100.9"]
