"""k8router at scale, against real clusters and a real haproxy.

Starts ``--clusters`` real kube-apiserver + etcd clusters (``tests/fixtures/kubelab.py``) and loads into each
``--ingresses`` Ingresses of class ``bench`` (``--shared`` of their hosts are offered by every cluster,
the others are the cluster's own), an ingress-controller Service with an EndpointSlice of ``--pods``
ready pods (10.251.<cluster>.<11+n>) and the IngressClass. Starts the real haproxy of
``tests/fixtures/haproxylab.py`` (network namespace, the router role's main configuration). The hosts are covered by
wildcard certificates of ``--hosts-per-certificate`` hosts each: k8router writes one crt-list line per
certificate naming all its hosts, and haproxy refuses lines longer than 65,535 characters, so one
certificate for all of 3,000 hosts (``--hosts-per-certificate 0``) fails ``haproxy -c``. Then measures:

(a) the first converge, from scratch (render, ``haproxy -c``, write, reload);
(b) a no-change run: wall time and peak memory, median of ``--runs``;
(c) ``kubectl get ingress,endpointslices -A -o json`` against the same clusters, one after the other
    (as an operator would) and all at once, and the ratio k8router no-change run / kubectl;
(d) one pod of the first cluster marked not ready in its EndpointSlice -> the run applying it
    (wall time, reload or not, number of runtime API commands);
(e) one new Ingress (a new host) -> the run applying it (with a reload);
(f) every certificate renewed (new files under the same names) while clients open a new TLS connection
    per request to hosts of every certificate: the run applying it (wall time, reloads, runtime
    commands), the requests that failed, and whether the clients saw the new certificates. The
    controller pods answer for real here (HTTP servers on their pod IPs in haproxy's namespace).

Every k8router run is a child process (``python bench_k8router.py --child-run``: interpreter start,
imports, ``run()``), so its wall time and peak RSS (``os.wait4``; the run's own ``haproxy -c`` and
reload command included) are those of the run alone; the child also reports the time spent in
``run()`` and its own peak RSS. Needs root (network namespace). Everything started is stopped at
the end, whatever happens. Figures are printed and written to ``bench/results/k8router.json``.

    .venv/bin/python bench/bench_k8router.py [--ingresses 1000] [--clusters 3] [--pods 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[1]
for _entry in (REPO, REPO / ".collections"):  # run as a script: tests.fixtures, and the collection through its link
    if str(_entry) not in sys.path:
        sys.path.insert(0, str(_entry))

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.fixtures.haproxylab import Haproxy
    from tests.fixtures.kubelab import Cluster
    from tests.fixtures.pki import CertAuthority

RESULTS = REPO / "bench" / "results"
INGRESS_CLASS = "bench"
CONTROLLER_NS = "ingress-bench"
CONTROLLER_SERVICE = "ingress-nginx-controller"
NAMESPACES = 10
DOMAIN = "bench.example"
NODE = "bench-n1"


# --------------------------------------------------------------------------------------------------------------
# the measured child: one k8router run


def _runner(argv: Sequence[str]) -> tuple[int, str, str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


PHASES = ("read_clusters", "render", "make_plan", "_validate", "_apply")


def _time_phases(module: Any, phases: dict[str, float]) -> None:
    """Wrap the engine's steps (names looked up in ``_converge`` at call time) to add up their durations."""

    def wrap(name: str, inner: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started

        return timed

    for name in PHASES:
        setattr(module, name, wrap(name, getattr(module, name)))


def child_run(params_file: str, out_file: str) -> int:
    """One k8router run as the module does it (options from params, ``run``); a summary into ``out_file``."""
    import resource  # noqa: PLC0415

    entered = time.time()
    started = time.perf_counter()
    from ansible_collections.k8router.edge.plugins.module_utils import _converge  # noqa: PLC0415
    from ansible_collections.k8router.edge.plugins.module_utils._args import options_from_params  # noqa: PLC0415

    imported = time.perf_counter()
    phases: dict[str, float] = {}
    _time_phases(_converge, phases)
    params = json.loads(Path(params_file).read_text())
    result = _converge.run(options_from_params(params), _runner)
    done = time.perf_counter()
    summary = {
        "import_s": imported - started,
        "run_s": done - imported,
        "phases_s": {name.lstrip("_"): round(phases.get(name, 0.0), 4) for name in PHASES},
        "changed": result.changed,
        "reloaded": result.reloaded,
        "commands": len(result.commands),
        "first_commands": result.commands[:3],
        "hosts": len(result.hosts),
        "multi_cluster_hosts": sum(1 for h in result.hosts if len(h["clusters"]) > 1),
        "warnings": len(result.warnings),
        "first_warnings": result.warnings[:3],
        "clusters": result.clusters,
        "self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "entered_at": entered,
    }
    summary["done_at"] = time.time()
    Path(out_file).write_text(json.dumps(summary))
    return 0


# --------------------------------------------------------------------------------------------------------------
# measuring processes


TIME = "/usr/bin/time"  # GNU time: peak RSS of a process started from a small one (see measure())


@dataclass
class Measured:
    wall_s: float
    maxrss_kb: list[int]  # per process, with the children it waited for
    returncodes: list[int]


def measure(argvs: Sequence[Sequence[str]], log: Path, *, stdout: Path | None = None) -> Measured:
    """Start all of ``argvs`` at once: wall time until the last one ends, and each one's peak RSS.

    The peak comes from GNU time (``%M``): a process keeps the peak RSS of the process it was forked from
    across exec, so rusage of a direct child of this (large) Python process would report at least this
    process's size. Without GNU time, os.wait4's figures are kept (then an upper bound).
    """
    use_time = os.access(TIME, os.X_OK)
    procs: list[subprocess.Popen[bytes]] = []
    rss_files = [log.with_name(f"{log.stem}.rss{n}") for n in range(len(argvs))]
    with log.open("ab") as err:
        out = stdout.open("wb") if stdout is not None else None
        try:
            started = time.perf_counter()
            for argv, rss_file in zip(argvs, rss_files, strict=True):
                full = [TIME, "-f", "%M", "-o", str(rss_file), "--", *argv] if use_time else list(argv)
                target = out if out is not None else subprocess.DEVNULL
                procs.append(subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=target, stderr=err))
            rss: list[int] = []
            codes: list[int] = []
            for proc, rss_file in zip(procs, rss_files, strict=True):
                _pid, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                codes.append(proc.returncode)
                rss.append(int(rss_file.read_text().split()[-1]) if use_time else usage.ru_maxrss)
            wall = time.perf_counter() - started
        finally:
            if out is not None:
                out.close()
    return Measured(wall, rss, codes)


@dataclass
class RunFigures:
    wall_s: float
    run_s: float
    import_s: float
    maxrss_kb: int
    self_maxrss_kb: int
    summary: dict[str, Any]


def k8router_run(params: dict[str, Any], work: Path, label: str) -> RunFigures:
    params_file = work / "params.json"
    params_file.write_text(json.dumps(params))
    out_file = work / f"run-{label}.json"
    argv = [sys.executable, str(Path(__file__).resolve()), "--child-run", str(params_file), str(out_file)]
    spawned = time.time()
    m = measure([argv], work / "runs.log")
    reaped = time.time()
    if m.returncodes != [0]:
        tail = (work / "runs.log").read_text(errors="replace").splitlines()[-20:]
        raise RuntimeError(f"k8router run {label} failed ({m.returncodes[0]}):\n" + "\n".join(tail))
    summary = json.loads(out_file.read_text())
    summary["startup_s"] = summary["entered_at"] - spawned  # interpreter start, this file's module body
    summary["exit_s"] = reaped - summary["done_at"]  # interpreter shutdown
    return RunFigures(
        m.wall_s, summary["run_s"], summary["import_s"], m.maxrss_kb[0], summary["self_maxrss_kb"], summary
    )


# --------------------------------------------------------------------------------------------------------------
# the world: clusters with objects, a wildcard certificate, haproxy


@dataclass(frozen=True)
class Hosts:
    """The hosts' names: ``shared`` in every cluster, the others the cluster's own.

    With ``per_certificate`` > 0 the hosts are put in subdomains of at most that many hosts, each covered
    by its own wildcard certificate (``*.c0-0.bench.example``); with 0 they are all directly below
    ``bench.example`` and one wildcard certificate covers them all.
    """

    shared: int
    per_certificate: int

    def name(self, cluster: str, index: int) -> str:
        if index < self.shared:
            label, zone = f"shared-{index:05d}", "shared"
        else:
            label, zone = f"app-{index:05d}", cluster
        if not self.per_certificate:
            return f"{zone}-{label}.{DOMAIN}"
        return f"{label}.{zone}-{index // self.per_certificate}.{DOMAIN}"

    def new(self, cluster: str) -> str:
        """A host no Ingress has yet, covered by a certificate."""
        if not self.per_certificate:
            return f"{cluster}-new-00000.{DOMAIN}"
        return f"new-00000.{cluster}-0.{DOMAIN}"


def zones(names: Sequence[str]) -> list[str]:
    """The parent domains of ``names`` (what wildcard certificates must cover)."""
    return sorted({n.split(".", 1)[1] for n in names})


def pod_ip(cluster_index: int, n: int) -> str:
    return f"10.251.{cluster_index}.{11 + n}"


def ingress_body(namespace: str, name: str, host: str) -> dict[str, Any]:
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}],
        },
    }


def _create_ingress(api: ApiClient, body: dict[str, Any]) -> None:
    from kubernetes import client as k8s  # noqa: PLC0415
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    # a plain dict body and no decoding of the answer: the client's model classes cost more than the request
    create: Any = k8s.NetworkingV1Api(api).create_namespaced_ingress
    for attempt in range(5):
        try:
            resp = create(body["metadata"]["namespace"], body, _preload_content=False)
            resp.data  # noqa: B018 - read the body so the connection goes back to the pool
            resp.release_conn()
            return
        except ApiException as exc:
            if exc.status == 409:
                return
            if attempt == 4 or (exc.status or 0) < 429:
                raise
        time.sleep(0.2 * (attempt + 1))


def load_cluster_base(cluster: Cluster, index: int, pods: int) -> None:
    """Node, ingress controller (Service, Pods, EndpointSlice), IngressClass, namespaces."""
    from tests.fixtures import kubeobjects  # noqa: PLC0415

    ports = (kubeobjects.ServicePort("http", 80, target_port=8080),)
    backends = [kubeobjects.BackendPod(f"ctl-{n + 1}", pod_ip(index, n), NODE) for n in range(pods)]
    with cluster.api_client() as api:
        kubeobjects.create_node(api, NODE, f"10.251.{index}.1", f"10.251.{index}.0/24")
        kubeobjects.create_ingress_controller(api, CONTROLLER_NS, backends, name=CONTROLLER_SERVICE, ports=ports)
        kubeobjects.create_ingress_class(api, INGRESS_CLASS, controller="example.com/bench")
        for n in range(NAMESPACES):
            kubeobjects.ensure_namespace(api, f"bench-{n}")


def load_ingresses(clusters: Sequence[Cluster], ingresses: int, hosts: Hosts, threads: int) -> float:
    """Create every Ingress through the API, ``threads`` requests at a time over all clusters."""
    started = time.perf_counter()
    apis = [c.api_client() for c in clusters]
    try:
        jobs = [
            (api, ingress_body(f"bench-{i % NAMESPACES}", f"ing-{i:05d}", hosts.name(c.name, i)))
            for c, api in zip(clusters, apis, strict=True)
            for i in range(ingresses)
        ]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(_create_ingress, api, body) for api, body in jobs]
            for future in as_completed(futures):
                future.result()
    finally:
        for api in apis:
            api.close()  # type: ignore[no-untyped-call]
    return time.perf_counter() - started


def wildcard_certificate(directory: Path, zone: str, ca: CertAuthority, days: int = 60) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{zone}.pem").write_bytes(ca.issue_pem(f"*.{zone}", [f"*.{zone}"], days=days))


# A client in haproxy's namespace: a new TLS connection per request (SNI and Host one of the given hosts, in
# turn), the certificate verified against the bench CA; counts answers, failures, and the certificates' notAfter.
TLS_CLIENT = r"""
import json, os, socket, ssl, sys
vip, ca, stop_file, hosts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
ctx = ssl.create_default_context(cafile=ca)
ok = failed = 0
errors, seen = {}, {}
n, last = 0, ""
while not os.path.exists(stop_file):
    host = hosts[n % len(hosts)]; n += 1
    try:
        with socket.create_connection((vip, 443), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as t:
            after = t.getpeercert()["notAfter"]
            t.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := t.recv(65536):
                data += chunk
        status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "no answer"
        if status == "200":
            ok += 1; seen[after] = seen.get(after, 0) + 1; last = after
        else:
            failed += 1; errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1
    except Exception as exc:
        failed += 1; errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
print(json.dumps({"ok": ok, "failed": failed, "errors": errors, "not_after_seen": seen, "last_not_after": last}))
"""


def module_params(clusters: Sequence[Cluster], h: Haproxy, work: Path) -> dict[str, Any]:
    from ansible_collections.k8router.edge.plugins.module_utils._args import CONVERGE_ARGS  # noqa: PLC0415

    params: dict[str, Any] = {k: v.get("default") for k, v in CONVERGE_ARGS.items()}
    params.update(
        clusters=[
            {
                "name": c.name,
                "kubeconfig": str(c.kubeconfig),
                "context": None,
                "ingress_controller": {"namespace": CONTROLLER_NS, "service": CONTROLLER_SERVICE, "port": "http"},
                "ingress_classes": [INGRESS_CLASS],
                "weight": 100,
                "state": "active",
                "allowed_hosts": [f"*.{DOMAIN}"],
            }
            for c in clusters
        ],
        certificate_dir=str(work / "certs"),
        state_dir=str(work / "state"),
        haproxy={**h.module_haproxy(), "binary": "haproxy"},
        request_timeout=60.0,
        lock_timeout=30.0,
    )
    return params


# --------------------------------------------------------------------------------------------------------------
# changes and checks


def mark_first_pod_not_ready(cluster: Cluster) -> tuple[str, float]:
    """Replace the controller's EndpointSlice with its first endpoint not ready: (that pod's IP, API time)."""
    from kubernetes import client as k8s  # noqa: PLC0415

    with cluster.api_client() as api:
        disc = k8s.DiscoveryV1Api(api)
        started = time.perf_counter()
        (eps,) = disc.list_namespaced_endpoint_slice(
            CONTROLLER_NS, label_selector=f"kubernetes.io/service-name={CONTROLLER_SERVICE}"
        ).items
        if not eps.endpoints or eps.metadata is None or eps.metadata.name is None:
            raise RuntimeError(f"cluster {cluster.name}: the controller's EndpointSlice has no endpoints")
        first = eps.endpoints[0]
        first.conditions = k8s.V1EndpointConditions(ready=False, serving=False, terminating=False)
        disc.replace_namespaced_endpoint_slice(eps.metadata.name, CONTROLLER_NS, eps)
        return str(first.addresses[0]), time.perf_counter() - started


def add_ingress(cluster: Cluster, host: str) -> float:
    from tests.fixtures import kubeobjects  # noqa: PLC0415

    started = time.perf_counter()
    with cluster.api_client() as api:
        kubeobjects.create_ingress(
            api, "bench-0", "ing-new", [kubeobjects.IngressRule(host, "web", 80)], class_name=INGRESS_CLASS
        )
    return time.perf_counter() - started


def runtime_api(path: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def address_in_service(h: Haproxy, host: str, address: str) -> bool:
    """Whether a server of the backend that serves ``host`` (per the live host map) points at ``address``
    and is not in maintenance, forced or inherited from its health check's server (runtime view)."""
    backend = runtime_api(h.socket, f"get map {h.data_dir / 'hosts.map'} {host}")
    match = re.search(r'value="([^"]+)"', backend)
    if match is None:
        raise RuntimeError(f"haproxy's host map has no backend for {host}: {backend.strip()}")
    state = runtime_api(h.socket, f"show servers state {match.group(1)}")
    servers = [line.split() for line in state.splitlines() if line[:1].isdigit()]
    if not servers:
        raise RuntimeError(f"backend {match.group(1)} of {host} has no server: {state.strip()}")
    # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
    return any(f[4] == address and not int(f[6]) & 0x3 for f in servers if len(f) > 6)


def count_servers(h: Haproxy) -> tuple[int, int]:
    """(backends, servers) that k8router wrote in its backends file."""
    text = (h.conf_dir / "50-k8router.cfg").read_text()
    return text.count("\nbackend "), text.count("\n    server ")


# --------------------------------------------------------------------------------------------------------------
# reporting


def mib(kb: float) -> float:
    return kb / 1024.0


def med(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1], strict=True))]
        print("  ".join([*cells, row[-1]]).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def tool_version(argv: Sequence[str]) -> str:
    out = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


# --------------------------------------------------------------------------------------------------------------
# the bench


def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from tests.fixtures import kubelab, pki  # noqa: PLC0415
    from tests.fixtures.haproxylab import running_haproxy  # noqa: PLC0415

    figures: dict[str, Any] = {}
    log = work / "bench.log"
    bins = kubelab.Binaries.locate()
    kubectl = str(bins.kubectl)
    shared = min(args.shared, args.ingresses)
    hosts = Hosts(shared, args.hosts_per_certificate)
    names = [hosts.name(f"c{c}", i) for c in range(args.clusters) for i in range(args.ingresses)]
    names += [hosts.new(f"c{c}") for c in range(args.clusters)]
    figures["load_average_at_start"] = os.getloadavg()
    figures["setup"] = {
        "clusters": args.clusters,
        "ingresses_per_cluster": args.ingresses,
        "shared_hosts": shared,
        "pods_per_cluster": args.pods,
        "hosts_per_certificate": args.hosts_per_certificate or "all",
        "certificates": len(zones(names)),
        "ingresses_total": args.clusters * args.ingresses,
        "hosts_total": shared + args.clusters * (args.ingresses - shared),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "haproxy": tool_version(["haproxy", "-v"]),
        "kubectl": tool_version([kubectl, "version", "--client"]),
    }

    started = time.perf_counter()
    clusters = kubelab.start_clusters([f"c{i}" for i in range(args.clusters)], work / "kubelab", binaries=bins)
    try:
        figures["setup"]["clusters_start_s"] = time.perf_counter() - started
        print(f"clusters up in {figures['setup']['clusters_start_s']:.1f} s", flush=True)
        started = time.perf_counter()
        for index, cluster in enumerate(clusters):
            load_cluster_base(cluster, index, args.pods)
        figures["setup"]["base_objects_s"] = time.perf_counter() - started
        load_s = load_ingresses(clusters, args.ingresses, hosts, args.threads)
        figures["setup"]["ingress_load_s"] = load_s
        figures["setup"]["ingress_load_per_s"] = args.clusters * args.ingresses / load_s
        print(f"{args.clusters * args.ingresses} ingresses loaded in {load_s:.1f} s", flush=True)
        bench_ca = pki.CertAuthority.create("k8router bench CA")
        for zone in zones(names):
            wildcard_certificate(work / "certs", zone, bench_ca)
        with running_haproxy(work / "haproxy") as h:
            for index, cluster in enumerate(clusters):  # the controller pods answer (the stand-in: HTTP servers)
                for n in range(args.pods):
                    h.add_pod(cluster.name, pod_ip(index, n))
            params = module_params(clusters, h, work)
            world: dict[str, Any] = {"clusters": clusters, "h": h, "hosts": hosts, "params": params, "ca": bench_ca}
            figures.update(measure_all(args, work, kubectl=kubectl, log=log, **world))
    finally:
        kubelab.stop_clusters(clusters)
    return figures


def measure_all(
    args: argparse.Namespace,
    work: Path,
    *,
    clusters: Sequence[Cluster],
    h: Haproxy,
    hosts: Hosts,
    params: dict[str, Any],
    kubectl: str,
    log: Path,
    ca: CertAuthority,
) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def record(run: RunFigures) -> dict[str, Any]:
        s = run.summary
        return {
            "wall_s": run.wall_s,
            "run_s": run.run_s,
            "import_s": run.import_s,
            "startup_s": s["startup_s"],
            "exit_s": s["exit_s"],
            "phases_s": s["phases_s"],
            "maxrss_mib": mib(run.maxrss_kb),
            "python_maxrss_mib": mib(run.self_maxrss_kb),
            "changed": s["changed"],
            "reloaded": s["reloaded"],
            "runtime_commands": s["commands"],
            "hosts": s["hosts"],
            "multi_cluster_hosts": s["multi_cluster_hosts"],
            "warnings": s["warnings"],
            "first_warnings": s["first_warnings"],
        }

    # (a) first converge
    first = k8router_run(params, work, "first")
    out["a_first_converge"] = record(first)
    backends, servers = count_servers(h)
    out["a_first_converge"].update(
        haproxy_backends=backends,
        haproxy_servers=servers,
        backends_file_kib=(h.conf_dir / "50-k8router.cfg").stat().st_size / 1024,
    )
    print(f"(a) first converge: {first.wall_s:.2f} s, reloaded={first.summary['reloaded']}", flush=True)
    k8router_run(params, work, "settle")  # the first no-change run after a reload (not measured)

    # (b) no-change runs
    runs = [k8router_run(params, work, f"nochange-{n}") for n in range(args.runs)]
    changed = [r.summary["changed"] or r.summary["reloaded"] for r in runs]
    out["b_no_change"] = {
        "runs": args.runs,
        "wall_s_median": med([r.wall_s for r in runs]),
        "run_s_median": med([r.run_s for r in runs]),
        "import_s_median": med([r.import_s for r in runs]),
        "startup_s_median": med([r.summary["startup_s"] for r in runs]),
        "exit_s_median": med([r.summary["exit_s"] for r in runs]),
        "phases_s_median": {
            name: med([r.summary["phases_s"][name] for r in runs]) for name in runs[0].summary["phases_s"]
        },
        "maxrss_mib_median": med([mib(r.maxrss_kb) for r in runs]),
        "python_maxrss_mib_median": med([mib(r.self_maxrss_kb) for r in runs]),
        "wall_s_all": [r.wall_s for r in runs],
        "any_changed": any(changed),
    }
    print(f"(b) no-change run: median {out['b_no_change']['wall_s_median']:.2f} s", flush=True)

    # (c) kubectl, the same clusters
    cache = work / "kubectl-cache"
    argvs = [
        [kubectl, "--kubeconfig", str(c.kubeconfig), "--cache-dir", str(cache), "get", "ingress,endpointslices",
         "-A", "-o", "json"]
        for c in clusters
    ]  # fmt: skip
    sizes = []
    for n, argv in enumerate(argvs):  # warm the discovery cache; keep one output of each to size it
        listing = work / f"kubectl-{n}.json"
        measure([argv], log, stdout=listing)
        data = json.loads(listing.read_text())
        sizes.append((len(data["items"]), listing.stat().st_size))
    sequential = []
    for _n in range(args.runs):
        each = [measure([argv], log) for argv in argvs]
        if any(code != 0 for m in each for code in m.returncodes):
            raise RuntimeError(f"kubectl failed; see {log}")
        sequential.append((sum(m.wall_s for m in each), max(m.maxrss_kb[0] for m in each)))
    parallel = [measure(argvs, log) for _n in range(args.runs)]
    if any(code != 0 for m in parallel for code in m.returncodes):
        raise RuntimeError(f"kubectl failed; see {log}")
    seq_wall = med([pair[0] for pair in sequential])
    seq_rss = med([mib(pair[1]) for pair in sequential])
    par_wall = med([m.wall_s for m in parallel])
    par_rss_max = med([mib(max(m.maxrss_kb)) for m in parallel])
    par_rss_sum = med([mib(sum(m.maxrss_kb)) for m in parallel])
    nochange = out["b_no_change"]
    out["c_kubectl"] = {
        "command": "kubectl get ingress,endpointslices -A -o json (per cluster)",
        "items_per_cluster": [pair[0] for pair in sizes],
        "output_kib_per_cluster": [round(pair[1] / 1024, 1) for pair in sizes],
        "sequential_wall_s_median": seq_wall,
        "sequential_maxrss_mib_median": seq_rss,
        "parallel_wall_s_median": par_wall,
        "parallel_maxrss_mib_median_max": par_rss_max,
        "parallel_maxrss_mib_median_sum": par_rss_sum,
        "ratio_wall_k8router_vs_sequential": nochange["wall_s_median"] / seq_wall,
        "ratio_wall_k8router_vs_parallel": nochange["wall_s_median"] / par_wall,
        "ratio_run_only_k8router_vs_sequential": nochange["run_s_median"] / seq_wall,
        "ratio_maxrss_k8router_vs_kubectl": nochange["maxrss_mib_median"] / seq_rss,
        "ratio_maxrss_k8router_vs_parallel_sum": nochange["maxrss_mib_median"] / par_rss_sum,
    }
    print(f"(c) kubectl sequential: median {seq_wall:.2f} s, parallel {par_wall:.2f} s", flush=True)

    # (d) one pod not ready -> runtime update, no reload
    probe = hosts.name(clusters[0].name, args.ingresses - 1)  # a host the first cluster offers
    workers = h.worker_pids()
    before = time.perf_counter()
    address, api_s = mark_first_pod_not_ready(clusters[0])
    pod = k8router_run(params, work, "pod-not-ready")
    total = time.perf_counter() - before
    out["d_pod_not_ready"] = record(pod) | {
        "pod": address,
        "cluster": clusters[0].name,
        "endpointslice_update_s": api_s,
        "change_to_applied_s": total,
        "worker_pids_unchanged": h.worker_pids() == workers,
        "pod_out_of_service_at_runtime": not address_in_service(h, probe, address),
    }
    print(f"(d) pod not ready: {pod.wall_s:.2f} s, {pod.summary['commands']} runtime commands", flush=True)

    # (e) one new host -> reload
    new_host = hosts.new(clusters[0].name)
    before = time.perf_counter()
    api_s = add_ingress(clusters[0], new_host)
    added = k8router_run(params, work, "new-host")
    total = time.perf_counter() - before
    out["e_new_host"] = record(added) | {
        "host": new_host,
        "ingress_create_s": api_s,
        "change_to_applied_s": total,
        "host_in_map": new_host in (h.data_dir / "hosts.map").read_text(),
    }
    print(f"(e) new host: {added.wall_s:.2f} s, reloaded={added.summary['reloaded']}", flush=True)
    after = k8router_run(params, work, "after")
    out["e_new_host"]["next_run_changed"] = after.summary["changed"]

    # (f) every certificate renewed under load -> runtime API, no reload
    samples = [hosts.name(c.name, args.ingresses - 1) for c in clusters] + [hosts.name(clusters[0].name, 0)]
    out["f_renew_all"] = renew_all_under_load(work, h, params, ca, samples)
    out["f_renew_all"] |= record(out["f_renew_all"].pop("run"))
    f = out["f_renew_all"]
    print(
        f"(f) {f['certificates']} certificates renewed under load: {f['wall_s']:.2f} s, reloaded={f['reloaded']}, "
        f"{f['requests_failed']} of {f['requests_ok'] + f['requests_failed']} requests failed",
        flush=True,
    )
    return out


def renew_all_under_load(
    work: Path, h: Haproxy, params: dict[str, Any], ca: CertAuthority, samples: Sequence[str]
) -> dict[str, Any]:
    """Every certificate file rewritten with a renewed certificate (longer validity), then one k8router run,
    while two clients open a TLS connection per request to ``samples`` (a host of each cluster's own and a
    shared one). The new certificates are in place when the clients stop."""
    from tests.fixtures.haproxylab import VIP  # noqa: PLC0415

    ca_file = work / "bench-ca.pem"
    ca_file.write_bytes(ca.pem)
    stop = work / "stop-clients"
    argv = ["ip", "netns", "exec", h.ns, sys.executable, "-c", TLS_CLIENT, VIP, str(ca_file), str(stop), *samples]
    clients = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _n in range(2)]
    workers = h.worker_pids()
    try:
        time.sleep(2.0)
        certs = sorted((work / "certs").glob("*.pem"))
        for cert in certs:
            wildcard_certificate(cert.parent, cert.stem, ca, days=90)
        run = k8router_run(params, work, "renew-all")
        time.sleep(2.0)
    finally:
        stop.touch()
        results = [json.loads(c.communicate(timeout=60)[0] or "{}") for c in clients]
    seen: dict[str, int] = {}
    for result in results:
        for after, count in result.get("not_after_seen", {}).items():
            seen[after] = seen.get(after, 0) + count
    newest = max(seen, key=lambda text: datetime.datetime.strptime(text, "%b %d %H:%M:%S %Y %Z")) if seen else ""
    return {
        "run": run,
        "certificates": len(certs),
        "requests_ok": sum(r.get("ok", 0) for r in results),
        "requests_failed": sum(r.get("failed", 0) for r in results),
        "errors": [r.get("errors", {}) for r in results],
        "not_after_seen": seen,
        "renewed_served_at_end": len(seen) == 2 and all(r.get("last_not_after") == newest for r in results),
        "worker_pids_unchanged": h.worker_pids() == workers,
    }


def table(fig: dict[str, Any]) -> list[list[str]]:
    a, b, c = fig["a_first_converge"], fig["b_no_change"], fig["c_kubectl"]
    d, e, f = fig["d_pod_not_ready"], fig["e_new_host"], fig["f_renew_all"]
    runs = b["runs"]
    return [
        ["benchmark", "wall s", "run() s", "peak MiB", "notes"],
        [
            "(a) first converge (from scratch)",
            _f(a["wall_s"]),
            _f(a["run_s"]),
            _f(a["maxrss_mib"], 1),
            f"reloaded={a['reloaded']}; {a['hosts']} hosts ({a['multi_cluster_hosts']} in >1 cluster), "
            f"{a['haproxy_backends']} backends, {a['haproxy_servers']} server slots",
        ],
        [
            f"(b) no-change run (median of {runs})",
            _f(b["wall_s_median"]),
            _f(b["run_s_median"]),
            _f(b["maxrss_mib_median"], 1),
            f"changed={b['any_changed']}; imports {b['import_s_median']:.2f} s; "
            f"python alone {b['python_maxrss_mib_median']:.1f} MiB",
        ],
        [
            f"(c) kubectl get ingress,endpointslices -A -o json, {len(c['items_per_cluster'])}x sequential "
            f"(median of {runs})",
            _f(c["sequential_wall_s_median"]),
            "-",
            _f(c["sequential_maxrss_mib_median"], 1),
            f"peak of one kubectl; items/cluster {c['items_per_cluster']}",
        ],
        [
            f"(c) kubectl, the same in parallel (median of {runs})",
            _f(c["parallel_wall_s_median"]),
            "-",
            _f(c["parallel_maxrss_mib_median_sum"], 1),
            f"sum of the kubectl peaks (largest {c['parallel_maxrss_mib_median_max']:.1f})",
        ],
        [
            "(c) ratio k8router no-change / kubectl sequential",
            _f(c["ratio_wall_k8router_vs_sequential"]),
            _f(c["ratio_run_only_k8router_vs_sequential"]),
            _f(c["ratio_maxrss_k8router_vs_kubectl"]),
            f"vs parallel: wall {c['ratio_wall_k8router_vs_parallel']:.2f}, "
            f"memory {c['ratio_maxrss_k8router_vs_parallel_sum']:.2f}",
        ],
        [
            "(d) pod not ready -> runtime update",
            _f(d["wall_s"]),
            _f(d["run_s"]),
            _f(d["maxrss_mib"], 1),
            f"reloaded={d['reloaded']} (workers unchanged: {d['worker_pids_unchanged']}); "
            f"{d['runtime_commands']} runtime commands; change->applied {d['change_to_applied_s']:.2f} s; "
            f"pod {d['pod']} out of service: {d['pod_out_of_service_at_runtime']}",
        ],
        [
            "(e) new Ingress (one host) -> reload",
            _f(e["wall_s"]),
            _f(e["run_s"]),
            _f(e["maxrss_mib"], 1),
            f"reloaded={e['reloaded']}; change->applied {e['change_to_applied_s']:.2f} s; "
            f"host in map: {e['host_in_map']}; next run changed={e['next_run_changed']}",
        ],
        [
            f"(f) every certificate renewed ({f['certificates']}) under TLS load",
            _f(f["wall_s"]),
            _f(f["run_s"]),
            _f(f["maxrss_mib"], 1),
            f"reloaded={f['reloaded']} (workers unchanged: {f['worker_pids_unchanged']}); "
            f"{f['runtime_commands']} runtime commands; requests failed {f['requests_failed']} of "
            f"{f['requests_ok'] + f['requests_failed']}; renewed served at the end: {f['renewed_served_at_end']}",
        ],
    ]


def phase_table(fig: dict[str, Any]) -> list[list[str]]:
    """Where the time of each measured run goes: the engine's steps inside run(), and the process around it."""
    rows = [
        ["run: seconds in", "read", "render", "plan", "validate", "apply", "other", "process (start, imports, exit)"]
    ]
    b = fig["b_no_change"]
    entries = [
        ("(a) first converge", fig["a_first_converge"]),
        ("(b) no-change run (median)", {**b, "phases_s": b["phases_s_median"], "run_s": b["run_s_median"]}),
        ("(d) pod not ready", fig["d_pod_not_ready"]),
        ("(e) new Ingress", fig["e_new_host"]),
        ("(f) every certificate renewed", fig["f_renew_all"]),
    ]
    for label, run in entries:
        p = run["phases_s"]
        other = run["run_s"] - sum(p.values())
        if "wall_s" in run:
            around = f"{run['startup_s']:.2f} + {run['import_s']:.2f} + {run['exit_s']:.2f}"
        else:
            around = f"{b['startup_s_median']:.2f} + {b['import_s_median']:.2f} + {b['exit_s_median']:.2f}"
        rows.append(
            [label]
            + [_f(p[k]) for k in ("read_clusters", "render", "make_plan", "validate", "apply")]
            + [_f(other), around]
        )
    return rows


def _stop_on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", maxsplit=1)[0])
    parser.add_argument("--ingresses", type=int, default=1000, help="Ingresses per cluster (default 1000)")
    parser.add_argument("--clusters", type=int, default=3, help="clusters (default 3)")
    parser.add_argument("--pods", type=int, default=3, help="ready ingress-controller pods per cluster (default 3)")
    parser.add_argument("--shared", type=int, default=100, help="hosts offered by every cluster (default 100)")
    parser.add_argument(
        "--hosts-per-certificate",
        type=int,
        default=1000,
        help="hosts per wildcard certificate (default 1000); 0: one certificate for every host",
    )
    parser.add_argument("--runs", type=int, default=5, help="repetitions of the no-change and kubectl runs")
    parser.add_argument("--threads", type=int, default=16, help="concurrent create requests while loading")
    parser.add_argument("--workdir", help="keep the work files in a new directory under this one (default: removed)")
    parser.add_argument("--child-run", nargs=2, metavar=("PARAMS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_run:
        return child_run(*args.child_run)
    if os.geteuid() != 0:
        print("bench_k8router: needs root (haproxy in a network namespace)", file=sys.stderr)
        return 2
    if not 1 <= args.pods <= 200 or not 1 <= args.clusters <= 32 or args.ingresses < 1:
        parser.error("need 1..200 pods, 1..32 clusters and at least one ingress")
    # render_main_config runs `ansible`: the venv's tools first
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    signal.signal(signal.SIGTERM, _stop_on_signal)
    if args.workdir:  # kept afterwards (logs, rendered files): a new directory in it for each bench
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="k8router-bench-", dir=args.workdir))
    started = time.perf_counter()
    try:
        figures = bench(args, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    figures["total_wall_s"] = time.perf_counter() - started
    figures["load_average_at_end"] = os.getloadavg()
    figures["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    setup = figures["setup"]
    print()
    print(
        f"k8router bench: {setup['clusters']} clusters x {setup['ingresses_per_cluster']} Ingresses "
        f"({setup['shared_hosts']} hosts in every cluster; {setup['hosts_total']} hosts), "
        f"{setup['pods_per_cluster']} controller pods per cluster; {setup['machine']['cpus']} CPUs"
    )
    print(
        f"setup: clusters {setup['clusters_start_s']:.1f} s, ingresses loaded in {setup['ingress_load_s']:.1f} s "
        f"({setup['ingress_load_per_s']:.0f}/s)"
    )
    print()
    print_table(table(figures))
    print()
    print_table(phase_table(figures))
    print()
    print(f"total bench wall time {figures['total_wall_s']:.1f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    ignore = RESULTS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    (RESULTS / "k8router.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"figures in {RESULTS / 'k8router.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
