# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local lab: the whole system on one machine, converged with the collection's own playbooks.

Two routers (role router: haproxy, keepalived, BIRD 2, the periodic k8router run with the nftables L4
engine), two real clusters (kube-apiserver + etcd from tests/fixtures/kubelab.py) with worker containers (role
calico_systemd, a real kube-proxy in nftables mode, stand-in pods on pod IPs): two for alpha, so the routers
reach its service CIDR over ECMP, one for beta. Ingresses with overlapping hosts, a LoadBalancer Service
(TCP and UDP) offered by both clusters on one address, certificates made on the spot, and a client container.
The inventory is the k8router.edge.clusters plugin over the two clusters plus the routers; playbooks/site.yml
and playbooks/converge.yml do the work, as they would in production.

  python lab/lab.py up                 build what is missing, start, converge, print the summary (idempotent)
  python lab/lab.py summary [--json]   what the client sees through the VIPs
  python lab/lab.py status [--json]    exit 0 when the lab is up
  python lab/lab.py scenario NAME [--json]
                                       fail-master | stop-api | drain | add-cert | ingress-change
  python lab/lab.py down               remove it all (caches stay)
  python lab/lab.py wheelhouse         the routers' wheels (downloaded once): print their directory
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
if Path(sys.path[0]).resolve() == REPO / "lab":  # run as a script: `lab` is the package, the fixtures from the checkout
    sys.path[0] = str(REPO)

from kubernetes import client as k8s  # noqa: E402
from kubernetes import utils as k8s_utils  # noqa: E402

from lab import seal  # noqa: E402
from tests.fixtures import kubelab, pki  # noqa: E402
from tests.fixtures import kubeobjects as ko  # noqa: E402

CACHE = Path(os.environ.get("K8ROUTER_CACHE", Path.home() / ".cache" / "k8router-lab"))
LAB_DIR = Path(os.environ.get("K8ROUTER_LAB_DIR", CACHE / "lab"))
VENV_BIN = REPO / ".venv" / "bin"

NETWORK = "k8r-lab"
SUBNET = "10.213.9.0/24"
GATEWAY = "10.213.9.1"
INGRESS_VIP = "10.213.9.100"
LB_POOL = "10.213.9.240/29"
DOMAIN = "lab.test"
CLIENT = "k8r-lab-client"
CLIENT_IP = "10.213.9.5"
ROUTERS = {"k8r-lab-router1": "10.213.9.11", "k8r-lab-router2": "10.213.9.12"}
CONVERGE_INTERVAL = 15
HARDENED = ("beta",)  # clusters whose API servers refuse anonymous requests (haproxy checks with a client cert)
API_OUTAGE = 40  # seconds stop-api holds a cluster's API server stopped (longer than a watchdog would wait)
CLIENT_SCRIPT = "/usr/local/lib/labclient.py"
CLIENT_LAB_CA = "/etc/lab/lab-ca.crt"
LB_CLASS = "k8router.edge/lab"
LB_ADDRESS = "10.213.9.241"  # the first address of LB_POOL: both clusters' L4 Service request it
L4_NAMESPACE, L4_SERVICE = "shop", "echo"
L4_LABELS = {"app.kubernetes.io/name": "echo"}
HTTP_PORT, UDP_ECHO_PORT = 80, 7
L4_PORTS = (ko.ServicePort("http", HTTP_PORT), ko.ServicePort("echo", UDP_ECHO_PORT, protocol="UDP"))
L4_REQUESTS = 32  # per protocol, from the client, in the summary
REQUEST_ANNOTATION = "k8router.edge/address"
# The Ingresses name a TLS Secret as real ones do; k8router never reads Secrets (certificates are files).
TLS_SECRET = "web-tls"  # noqa: S105


@dataclass(frozen=True)
class WorkerSpec:
    """One worker container: its Node, its IPAM block, the stand-in pods on its lo."""

    name: str
    ip: str
    node_cidr: str
    pod_block: str
    ingress_pod_ips: tuple[str, ...]  # the ingress controller's pods
    echo_pod_ips: tuple[str, ...]  # the L4 Service's pods

    @property
    def pod_ips(self) -> tuple[str, ...]:
        return self.ingress_pod_ips + self.echo_pod_ips


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    workers: tuple[WorkerSpec, ...]
    api_vip: str
    bgp_as: int
    pod_cidr: str
    service_cidr: str
    hosts: tuple[str, ...]

    def client_ca(self) -> str:
        return f"/etc/lab/{self.name}-ca.crt"


CLUSTERS = (
    ClusterSpec(
        name="alpha",
        workers=(
            WorkerSpec(
                "k8r-lab-alpha-w1",
                "10.213.9.21",
                "10.244.1.0/24",
                "10.244.1.0/26",
                ingress_pod_ips=("10.244.1.10", "10.244.1.11"),
                echo_pod_ips=("10.244.1.20",),
            ),
            WorkerSpec(
                "k8r-lab-alpha-w2",
                "10.213.9.22",
                "10.244.2.0/24",
                "10.244.2.0/26",
                ingress_pod_ips=(),
                echo_pod_ips=("10.244.2.20",),
            ),
        ),
        api_vip="10.213.9.101",
        bgp_as=64512,
        pod_cidr="10.244.0.0/16",
        service_cidr="10.96.0.0/16",
        hosts=(f"shop.{DOMAIN}", f"alpha.{DOMAIN}"),
    ),
    ClusterSpec(
        name="beta",
        workers=(
            WorkerSpec(
                "k8r-lab-beta-w1",
                "10.213.9.31",
                "10.245.1.0/24",
                "10.245.1.0/26",
                ingress_pod_ips=("10.245.1.10",),
                echo_pod_ips=("10.245.1.20",),
            ),
        ),
        api_vip="10.213.9.102",
        bgp_as=64513,
        pod_cidr="10.245.0.0/16",
        service_cidr="10.97.0.0/16",
        hosts=(f"shop.{DOMAIN}", f"beta.{DOMAIN}"),
    ),
)
CONTAINERS = {
    **{name: ("router", ip) for name, ip in ROUTERS.items()},
    **{w.name: ("worker", w.ip) for c in CLUSTERS for w in c.workers},
    CLIENT: ("client", CLIENT_IP),
}


CNI_CONFIG = Path("/etc/cni/net.d") / f"{NETWORK}.conflist"
# What the lab owns: its network (with the load-balancer pool) and the clusters' pod and service ranges.
LAB_RANGES = (SUBNET, *(c.pod_cidr for c in CLUSTERS), *(c.service_cidr for c in CLUSTERS))


class LabFailure(Exception):
    """Something the lab needs is missing or did not work; the message says what and where."""


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------------
# processes


def run(argv: Sequence[str | Path], *, check: bool = True, capture: bool = True, **kw: Any) -> str:
    proc = subprocess.run([str(a) for a in argv], check=False, text=True, capture_output=capture, **kw)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip()[-3000:] if capture else ""
        raise LabFailure(f"`{' '.join(str(a) for a in argv)}` exited with {proc.returncode}\n{detail}")
    return proc.stdout or ""


def podman(*args: str, check: bool = True) -> str:
    return run(["podman", *args], check=check)


def in_container(name: str, *argv: str, check: bool = True) -> str:
    return podman("exec", name, *argv, check=check)


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["CONTAINERS_CONF"] = str(REPO / "lab" / "containers.conf")
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    return env


def playbook(name: str, *extra: str, quiet: bool = False) -> None:
    """``ansible-playbook -i <lab inventory> playbooks/<name>`` from the checkout; its output goes to the terminal."""
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(LAB_DIR / "inventory"), str(REPO / "playbooks" / name)]
    log(f"ansible-playbook playbooks/{name} {' '.join(extra)}".rstrip())
    started = time.monotonic()
    out = None
    if quiet:
        out = (LAB_DIR / "logs" / f"{name.replace('/', '-')}.log").open("a")
    try:
        proc = subprocess.run([*argv, *extra], env=ansible_env(), cwd=REPO, check=False, stdout=out, stderr=out)
    finally:
        if out:
            out.close()
    if proc.returncode != 0:
        where = f" (log: {LAB_DIR / 'logs'})" if quiet else ""
        raise LabFailure(f"playbooks/{name} failed with exit code {proc.returncode}{where}")
    log(f"playbooks/{name}: ok in {time.monotonic() - started:.0f}s")


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# --------------------------------------------------------------------------------------------------------------
# what the lab is made of (built once, cached outside the repository)


@dataclass(frozen=True)
class Parts:
    calico_assets: str
    calico_bin: str
    wheelhouse: str
    kube_bin: str = ""  # kube-proxy for the workers (tools/k8s-build.sh)


def router_requirements() -> list[str]:
    defaults = yaml.safe_load((REPO / "roles" / "converge" / "defaults" / "main.yml").read_text())
    return [str(r) for r in defaults.get("converge_requirements", [])]


def wheelhouse() -> Path:
    """The wheels of the routers' k8router venv (Debian bookworm: CPython 3.11), keyed by the role's pinned list.

    The key is the one molecule/router/molecule.yml computes: sha256 of the requirements joined by spaces.
    """
    reqs = router_requirements()
    if not reqs:
        raise LabFailure("roles/converge/defaults/main.yml: converge_requirements is empty")
    target = CACHE / "wheels" / hashlib.sha256(" ".join(reqs).encode()).hexdigest()[:12]
    if target.is_dir():
        return target
    log(f"downloading the routers' wheels ({', '.join(reqs)}) into {target}")
    partial = target.with_suffix(".tmp")
    run(["rm", "-rf", partial])
    argv: list[str | Path] = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    argv += ["--dest", partial, "--python-version", "3.11", "--only-binary=:all:"]
    for plat in ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64"):
        argv += ["--platform", plat]
    run([*argv, *reqs])
    partial.rename(target)
    return target


def build_parts() -> Parts:
    log("images, Kubernetes binaries, Calico, wheels (each built once, then cached)")
    run([REPO / "tools" / "image.sh", "router", "worker", "client"], capture=False)
    kube_bin = last_line(run([REPO / "tools" / "k8s-build.sh"], capture=True))
    assets = last_line(run([REPO / "tools" / "calico-build.sh", "--assets"]))
    built = subprocess.run(
        [str(REPO / "tools" / "calico-build.sh")], check=False, text=True, capture_output=True, cwd=REPO
    )
    calico_bin = last_line(built.stdout) if built.returncode == 0 else ""
    if not calico_bin:
        reason = [line for line in built.stderr.splitlines() if "403" in line or "not available" in line]
        log(
            "calico-node cannot be built here "
            f"({reason[0].strip() if reason else 'see tools/calico-build.sh'}); "
            "the workers run calico_systemd without it and BIRD gets confd's configuration from the lab"
        )
    return Parts(assets, calico_bin, str(wheelhouse()), kube_bin)


# --------------------------------------------------------------------------------------------------------------
# network and containers


def ensure_network() -> None:
    """The lab's podman network, without masquerading, and the host's seal around it (see seal.py)."""
    if subprocess.run(["podman", "network", "exists", NETWORK], check=False).returncode != 0:
        podman("network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK)
    config = json.loads(CNI_CONFIG.read_text())
    if seal.masquerades(config):
        attached = [
            n for n in CONTAINERS if subprocess.run(["podman", "container", "exists", n], check=False).returncode == 0
        ]
        if attached:
            raise LabFailure(
                f"{CNI_CONFIG}: the lab network masquerades and {', '.join(attached)} use it: make lab-down"
            )
        CNI_CONFIG.write_text(json.dumps(seal.without_masquerade(config), indent=3) + "\n")
    run(["nft", "-f", "-"], input=seal.ruleset(SUBNET, LAB_RANGES))


def seal_counts() -> dict[str, int]:
    """Packets the seal dropped, per rule (empty: the seal is not in place)."""
    out = run(["nft", "-j", "list", "table", "inet", seal.TABLE], check=False)
    return seal.dropped(out) if out.strip() else {}


def container_running(name: str) -> bool:
    out = podman("container", "inspect", "--format", "{{.State.Running}}", name, check=False)
    return out.strip() == "true"


# The containers' /proc/sys is read-only: the routers' ECMP hash (router_sysctls in the inventory) is set here, and
# the role finds it already set.
ROUTER_SYSCTLS = ("--sysctl", "net.ipv4.fib_multipath_hash_policy=1")


def ensure_containers() -> None:
    for name, (image, ip) in CONTAINERS.items():
        if container_running(name):
            continue
        podman("rm", "-f", "--ignore", name)
        podman(
            "run", "-d", "--name", name, "--hostname", name, "--network", NETWORK, "--ip", ip,
            "--systemd", "always", "--label", "owner=k8router-lab",
            "--cap-add", "NET_ADMIN,NET_RAW,NET_BROADCAST,SYS_ADMIN",
            "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096",
            "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "net.ipv4.ip_nonlocal_bind=1",
            *(ROUTER_SYSCTLS if image == "router" else ()),
            f"localhost/k8router-{image}:current", "/sbin/init",
        )  # fmt: skip
        log(f"started {name} ({ip})")
    for name in CONTAINERS:
        state = in_container(name, "systemctl", "is-system-running", "--wait", check=False).strip()
        if state not in ("running", "degraded"):
            raise LabFailure(f"{name}: systemd is {state or 'not answering'}")


# --------------------------------------------------------------------------------------------------------------
# clusters


def clusters_dir() -> Path:
    return LAB_DIR / "clusters"


def running_clusters() -> dict[str, kubelab.Cluster] | None:
    return {c.name: c for c in kubelab.running(clusters_dir())} or None


def start_clusters() -> dict[str, kubelab.Cluster]:
    started = kubelab.start_detached(
        [c.name for c in CLUSTERS],
        clusters_dir(),
        LAB_DIR / "logs" / "kubelab.log",
        service_cidrs=[c.service_cidr for c in CLUSTERS],
        extra_ips=[GATEWAY, *(c.api_vip for c in CLUSTERS)],
        bind_address=GATEWAY,
        hardened=HARDENED,
    )
    return {c.name: c for c in started}


def calico_documents(assets: str) -> list[dict[str, Any]]:
    """calico-node's and the CNI plugin's ServiceAccount + ClusterRole(Binding) from Calico's own manifest."""
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    docs = yaml.safe_load_all((Path(assets) / "manifests" / "calico.yaml").read_text())
    return [
        d
        for d in docs
        if d and d.get("kind") in wanted and d["metadata"]["name"] in ("calico-node", "calico-cni-plugin")
    ]


def load_cluster(cluster: kubelab.Cluster, spec: ClusterSpec, parts: Parts) -> None:
    """What the cluster would hold: a Node per worker, the ingress controller's pods, Ingresses, the L4 Service."""
    with cluster.api_client() as api:
        ko.apply_k8router_rbac(api, pod_namespaces=["ingress-nginx"])
        for doc in calico_documents(parts.calico_assets):
            k8s_utils.create_from_dict(api, doc)  # type: ignore[no-untyped-call]
        for worker in spec.workers:
            ko.create_node(api, worker.name, worker.ip, worker.node_cidr)
        ingress_ips = [(ip, w.name) for w in spec.workers for ip in w.ingress_pod_ips]
        pods = [ko.BackendPod(f"ingress-nginx-controller-{i}", ip, node) for i, (ip, node) in enumerate(ingress_ips)]
        ko.create_ingress_controller(api, "ingress-nginx", pods)
        ko.create_ingress_class(api, "nginx", default=True)
        ko.ensure_namespace(api, "shop")
        for i, host in enumerate(spec.hosts):
            ko.create_ingress(
                api, "shop", f"web-{i}", [ko.IngressRule(host, "web", 80)], tls_hosts=[host], tls_secret=TLS_SECRET
            )
        load_l4_service(api, spec)
    tokens = LAB_DIR / "tokens"
    tokens.mkdir(mode=0o700, parents=True, exist_ok=True)
    day = 24 * 3600
    k8router_token = kubelab.mint_token(
        cluster, ko.K8ROUTER_NAMESPACE, ko.K8ROUTER_SERVICE_ACCOUNT, expiration_seconds=30 * day
    )
    kubelab.write_token_kubeconfig(cluster, k8router_token, tokens / f"{spec.name}-k8router.kubeconfig", "k8router")
    # haproxy's client certificate for its /readyz checks (any authenticated user may read /readyz)
    cert, key = kubelab.issue_client_cert(cluster, "k8router:api-check", out_dir=tokens / spec.name)
    check = tokens / f"{spec.name}-api-check.pem"
    check.write_bytes(cert.read_bytes() + key.read_bytes())
    check.chmod(0o600)
    # kube-proxy's identity, as kubeadm gives it: the user the built-in binding system:node-proxier names.
    cert, key = kubelab.issue_client_cert(cluster, KUBE_PROXY_USER, out_dir=tokens / spec.name)
    kubelab.write_cert_kubeconfig(cluster, cert, key, kube_proxy_kubeconfig(spec.name), KUBE_PROXY_USER)
    calico_token = kubelab.mint_token(cluster, "kube-system", "calico-node", expiration_seconds=30 * day)
    path = tokens / f"{spec.name}-calico-node.token"
    path.write_text(calico_token)
    path.chmod(0o600)


KUBE_PROXY_USER = "system:kube-proxy"


def kube_proxy_kubeconfig(cluster: str) -> Path:
    return LAB_DIR / "tokens" / f"{cluster}-kube-proxy.kubeconfig"


def load_l4_service(api: k8s.ApiClient, spec: ClusterSpec) -> None:
    """The L4 Service (TCP and UDP), the same in every cluster and requesting the same address, so both clusters
    offer it: its pods on each worker and their EndpointSlice (what the kubelet and the EndpointSlice controller
    would write). internalTrafficPolicy Local: the stand-in workers have no pod network between them, so each
    worker's kube-proxy sends what reaches the cluster IP to that worker's own pods, and every answer shows which
    of the routers' next hops carried it."""
    pods = [
        ko.BackendPod(f"echo-{w.name.rsplit('-', 1)[-1]}-{i}", ip, w.name)
        for w in spec.workers
        for i, ip in enumerate(w.echo_pod_ips)
    ]
    for pod in pods:
        ko.create_pod(api, L4_NAMESPACE, pod, labels=L4_LABELS, ports=L4_PORTS)
    ko.create_load_balancer_service(
        api,
        L4_NAMESPACE,
        L4_SERVICE,
        L4_PORTS,
        load_balancer_class=LB_CLASS,
        selector=L4_LABELS,
        annotations={REQUEST_ANNOTATION: LB_ADDRESS},
        internal_traffic_policy="Local",
    )
    ko.create_endpoint_slice(api, L4_NAMESPACE, L4_SERVICE, pods, L4_PORTS)


# --------------------------------------------------------------------------------------------------------------
# certificates


def lab_ca() -> pki.CertAuthority:
    return pki.CertAuthority.load_or_create(LAB_DIR / "pki", "k8router lab CA")


def certs_dir() -> Path:
    return LAB_DIR / "certs"


def write_certificate(ca: pki.CertAuthority, name: str, dns_names: Sequence[str]) -> Path:
    certs_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    return ca.write_pem(certs_dir() / f"{name}.pem", dns_names[0], dns_names)


def ensure_certificates() -> None:
    ca = lab_ca()
    if not (certs_dir() / "wildcard.pem").exists():
        write_certificate(ca, "wildcard", [f"*.{DOMAIN}"])
    if not (certs_dir() / "shop.pem").exists():
        # k8router serves the newest valid certificate covering a host (an exact name does not beat a newer
        # wildcard); shop.lab.test's own certificate starts a second later, so it is the one served.
        time.sleep(1.1)
        write_certificate(ca, "shop", [f"shop.{DOMAIN}"])


# --------------------------------------------------------------------------------------------------------------
# inventory


def write_yaml(path: Path, data: Any, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False, width=120))
    path.chmod(mode)


def lab_settings() -> dict[str, Any]:
    path = LAB_DIR / "settings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_inventory(clusters: Mapping[str, kubelab.Cluster], parts: Parts) -> None:
    inv = LAB_DIR / "inventory"
    tokens = LAB_DIR / "tokens"
    write_yaml(
        inv / "lab.clusters.yml",
        {
            "plugin": "k8router.edge.clusters",
            "strict": True,
            "clusters": [
                {
                    "name": s.name,
                    "kubeconfig": str(clusters[s.name].kubeconfig),
                    "bgp_as": s.bgp_as,
                    "api_vip": s.api_vip,
                    "pod_cidrs": [s.pod_cidr],
                    "service_cidrs": [s.service_cidr],
                }
                for s in CLUSTERS
            ],
            # The nodes are the lab's containers: reach them with podman, by name.
            "compose": {"ansible_connection": "'containers.podman.podman'", "ansible_host": "inventory_hostname"},
        },
    )
    write_yaml(
        inv / "lab.yml",
        {
            "all": {
                "children": {
                    "routers": {
                        "hosts": {name: {"router_address": ip} for name, ip in ROUTERS.items()},
                        "vars": {"ansible_connection": "containers.podman.podman"},
                    },
                    "lab_clients": {
                        "hosts": {CLIENT: {"ansible_connection": "containers.podman.podman"}},
                    },
                }
            }
        },
    )
    settings = lab_settings()
    cluster_state = settings.get("cluster_state", {})
    write_yaml(
        inv / "group_vars" / "all.yml",
        {
            "lab_dir": str(LAB_DIR),
            "lab_gateway": GATEWAY,
            "lab_calico_node": bool(parts.calico_bin),
            "lab_kube_bin": parts.kube_bin or str(kubelab.Binaries.locate().kubectl.parent),
            "lab_udp_echo_port": UDP_ECHO_PORT,
        },
    )
    write_yaml(
        inv / "group_vars" / "routers.yml",
        {
            # haproxy needs about two descriptors a connection; the containers' hard limit is 20000.
            "router_haproxy_maxconn": 4000,
            "router_ingress_vips": [INGRESS_VIP],
            "router_lb_pool": [LB_POOL],
            "router_clusters": [
                {
                    "name": s.name,
                    "api_port": clusters[s.name].api_port,
                    "ca_cert": clusters[s.name].ca_pem.decode(),
                    "api_check_certificate": (
                        f"{{{{ lookup('ansible.builtin.file', '{tokens / (s.name + '-api-check.pem')}') }}}}"
                    ),
                    "control_plane": [{"name": f"kubelab-{s.name}", "address": GATEWAY}],
                    # k8router's own credential and its options for the cluster (the converge role ships them).
                    "kubeconfig": str(tokens / f"{s.name}-k8router.kubeconfig"),
                    "k8router": {"state": cluster_state.get(s.name, "active")},
                }
                for s in CLUSTERS
            ],
            # The periodic k8router run on each router, as in production.
            "converge_interval": CONVERGE_INTERVAL,
            "converge_wheelhouse": parts.wheelhouse,
            "converge_certificates": sorted(str(p) for p in certs_dir().glob("*.pem")),
            # L4: the routers share the host's kernel, which has no IPVS: the nftables engine. The pool is
            # router_lb_pool (converge_lb_pool's default); these routers own the lab's class and write the status.
            "converge_load_balancer": {"engine": "nftables", "write_status": True, "classes": [LB_CLASS]},
            # ECMP over a cluster's workers hashes on ports too (the default hashes addresses only: one client
            # would always reach the same worker).
            "router_sysctls": {
                "net.ipv4.ip_forward": 1,
                "net.ipv4.ip_nonlocal_bind": 1,
                "net.ipv4.fib_multipath_hash_policy": 1,
            },
        },
    )
    write_yaml(
        inv / "group_vars" / "workers.yml",
        {
            "calico_systemd_api_host": GATEWAY,
            "calico_systemd_crds_src": f"{parts.calico_assets}/crds",
            "calico_systemd_confd_src": f"{parts.calico_assets}/confd",
            "calico_systemd_binaries": []
            if not parts.calico_bin
            else [
                {"name": "calico-node", "src": f"{parts.calico_bin}/calico-node"},
                {"name": "calico", "src": f"{parts.calico_bin}/calico", "dest": "/opt/cni/bin/calico"},
                {"name": "calico-ipam", "src": f"{parts.calico_bin}/calico-ipam", "dest": "/opt/cni/bin/calico-ipam"},
            ],
            # Without calico-node the units that run it are left out; BIRD runs on the lab's stand-in config.
            "calico_systemd_units_disabled": [] if parts.calico_bin else ["calico-startup"],
        },
    )
    for s in CLUSTERS:
        c = clusters[s.name]
        write_yaml(
            inv / "group_vars" / f"{s.name}.yml",
            {
                "calico_systemd_api_port": c.api_port,
                "calico_systemd_ca_cert": c.ca_pem.decode(),
                "calico_systemd_token": "{{ lookup('ansible.builtin.file', '%s') }}"
                % (tokens / f"{s.name}-calico-node.token"),
                "calico_systemd_admin_kubeconfig": str(c.kubeconfig),
                "lab_kube_proxy_kubeconfig": str(kube_proxy_kubeconfig(s.name)),
            },
        )
        for w in s.workers:
            write_yaml(
                inv / "host_vars" / f"{w.name}.yml", {"lab_pod_ips": list(w.pod_ips), "lab_pod_block": w.pod_block}
            )


# --------------------------------------------------------------------------------------------------------------
# the client


def prepare_client(clusters: Mapping[str, kubelab.Cluster]) -> None:
    in_container(CLIENT, "mkdir", "-p", "/etc/lab")
    podman("cp", str(REPO / "lab" / "labclient.py"), f"{CLIENT}:{CLIENT_SCRIPT}")
    podman("cp", str(LAB_DIR / "pki" / pki.CA_FILE), f"{CLIENT}:{CLIENT_LAB_CA}")
    for s in CLUSTERS:
        podman("cp", str(clusters[s.name].ca), f"{CLIENT}:{s.client_ca()}")


def client(*args: str) -> dict[str, Any]:
    out = in_container(CLIENT, "python3", CLIENT_SCRIPT, *args)
    result: dict[str, Any] = json.loads(last_line(out))
    return result


def probe(host: str, count: int = 8) -> dict[str, Any]:
    return client("probe", "--vip", INGRESS_VIP, "--host", host, "--ca", CLIENT_LAB_CA, "--count", str(count))


# --------------------------------------------------------------------------------------------------------------
# up / down / summary


def up() -> int:
    started = time.monotonic()
    for sub in ("logs", "tokens"):
        (LAB_DIR / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    parts = build_parts()
    (LAB_DIR / "parts.json").write_text(json.dumps(dataclasses.astuple(parts)) + "\n")
    ensure_network()
    # The containers first: the network's bridge, and so the gateway address the API servers bind, exists
    # only while a container is attached.
    ensure_containers()
    clusters = running_clusters()
    if clusters is None:
        log("starting the clusters alpha and beta (kube-apiserver + etcd on the lab network's gateway)")
        clusters = start_clusters()
        for spec in CLUSTERS:
            load_cluster(clusters[spec.name], spec, parts)
        log("clusters loaded: nodes, ingress controllers, Ingresses, the L4 LoadBalancer Service, identities")
    ensure_certificates()
    write_inventory(clusters, parts)
    prepare_client(clusters)
    playbook("lab/workers.yml", quiet=True)
    playbook("site.yml", quiet=True)
    # The same run as the routers' timer, started once from the controller (as CI would) so the lab serves now.
    playbook("converge.yml", "-e", "ansible_python_interpreter=/opt/k8router/venv/bin/python", quiet=True)
    wait_for_health_checks()
    wait_for_l4()
    (LAB_DIR / "up").write_text(f"{time.time():.0f}\n")
    log(f"up in {time.monotonic() - started:.0f}s")
    return print_summary(collect_summary())


def down() -> int:
    for name in CONTAINERS:
        podman("rm", "-f", "--ignore", "-t", "2", name, check=False)
    if subprocess.run(["podman", "network", "exists", NETWORK], check=False).returncode == 0:
        podman("network", "rm", NETWORK, check=False)
    run(["nft", "delete", "table", "inet", seal.TABLE], check=False)
    kubelab.stop_detached(clusters_dir())
    run(["rm", "-rf", LAB_DIR])
    log("down: containers, network, clusters and the lab directory removed (caches kept)")
    return 0


def is_up() -> bool:
    return (
        (LAB_DIR / "up").exists()
        and running_clusters() is not None
        and all(container_running(name) for name in CONTAINERS)
    )


def vip_holder(vip: str) -> str | None:
    for name in ROUTERS:
        if f" {vip}/" in in_container(name, "ip", "-4", "-o", "addr", "show", check=False):
            return name
    return None


STAT_SCRIPT = (
    "import socket;s=socket.socket(socket.AF_UNIX);s.connect('/run/haproxy/admin.sock');s.sendall(b'show stat\\n')\n"
    "print(b''.join(iter(lambda: s.recv(65536), b'')).decode())"
)


def pods_down(router: str) -> list[str]:
    """The controller pods whose haproxy health check does not pass on ``router`` (k8r_pods_* servers not UP)."""
    stat = in_container(router, "python3", "-c", STAT_SCRIPT, check=False)
    rows = [line.split(",") for line in stat.splitlines() if line.startswith("k8r_pods_")]
    return [
        f"{r[0]}/{r[1]} {r[17]}" for r in rows if len(r) > 17 and r[1] != "BACKEND" and r[17] not in ("UP", "MAINT")
    ]


def wait_until(check: Callable[[], tuple[bool, str]], what: str, timeout: float, interval: float) -> None:
    """Poll ``check`` (done, what is still missing) until done or ``timeout``; log either way, never raise: the
    summary that follows says what failed."""
    started = time.monotonic()
    while True:
        done, missing = check()
        if done:
            log(f"{what} ({time.monotonic() - started:.0f}s)")
            return
        if time.monotonic() - started > timeout:
            log(f"after {timeout:.0f}s: {missing}")
            return
        time.sleep(interval)


def wait_for_health_checks(timeout: float = 60) -> None:
    """Until haproxy's health checks pass for every pod on every router (the workers' routes come with their BGP
    sessions, late in site.yml; a pod that was checked DOWN needs its `rise` checks)."""

    def check() -> tuple[bool, str]:
        down = {router: pods_down(router) for router in ROUTERS}
        return not any(down.values()), f"health checks still failing: {down}"

    wait_until(check, "haproxy's health checks pass for every pod", timeout, interval=1)


def parse_bird_routes(text: str) -> list[str]:
    """The prefixes of ``ip -4 route show proto bird``: learnt ones, and the clusters' unreachable covers (the
    ``nexthop`` lines of a multipath route are its next hops, not routes)."""
    routes = []
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == "unreachable":
            routes.append(f"{words[1]} (unreachable cover)")
        elif words and words[0] != "nexthop":
            routes.append(words[0])
    return sorted(routes)


def bird_routes(router: str) -> list[str]:
    """The kernel routes BIRD installed on ``router``: learnt prefixes, and the clusters' unreachable covers."""
    return parse_bird_routes(in_container(router, "ip", "-4", "route", "show", "proto", "bird", check=False))


def parse_next_hops(text: str) -> list[str]:
    """The next hops of one route in ``ip route show PREFIX``: the gateway of a single path, or each ``nexthop via``
    of a multipath route, in the kernel's order."""
    words = text.split()
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == "via"]


def next_hops(router: str, prefix: str) -> dict[str, Any]:
    out = in_container(router, "ip", "-4", "route", "show", prefix, check=False)
    return {"route": " ".join(out.split()), "next_hops": parse_next_hops(out)}


def l4_tally(answers: Sequence[Mapping[str, Any]], expected: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """What N requests through the load-balancer address show: answers per cluster and per pod, failures; ok when
    every request was answered and every expected pod (``expected``: cluster -> its pods) answered some."""
    ok_answers = [a for a in answers if a.get("ok")]
    by_cluster = Counter(str(a.get("cluster", "-")) for a in ok_answers)
    by_pod: dict[str, dict[str, int]] = {}
    for a in ok_answers:
        pods = by_pod.setdefault(str(a.get("cluster", "-")), {})
        pods[str(a.get("pod", "-"))] = pods.get(str(a.get("pod", "-")), 0) + 1
    missing = sorted(f"{c}/{pod}" for c, pods in expected.items() for pod in pods if pod not in by_pod.get(c, {}))
    unexpected = sorted(c for c in by_cluster if c not in expected)
    return {
        "requests": len(answers),
        "answered_by": dict(sorted(by_cluster.items())),
        "pods": {c: dict(sorted(p.items())) for c, p in sorted(by_pod.items())},
        "failed": len(answers) - len(ok_answers),
        "errors": sorted({str(a["error"]) for a in answers if a.get("error")}),
        "missing": missing,
        "ok": bool(answers) and len(ok_answers) == len(answers) and not missing and not unexpected,
    }


def l4_expected() -> dict[str, list[str]]:
    return {s.name: [ip for w in s.workers for ip in w.echo_pod_ips] for s in CLUSTERS}


def l4_probe(protocol: str, port: int, count: int = L4_REQUESTS) -> dict[str, Any]:
    res = client("l4", "--address", LB_ADDRESS, "--port", str(port), "--protocol", protocol, "--count", str(count))
    return l4_tally(res["answers"], l4_expected())


def l4_status(clusters: Mapping[str, kubelab.Cluster]) -> dict[str, dict[str, Any]]:
    """The L4 Service's status.loadBalancer.ingress, read from each cluster's API server."""
    found: dict[str, dict[str, Any]] = {}
    for spec in CLUSTERS:
        if spec.name not in clusters:
            found[spec.name] = {"ingress": [], "ok": False}
            continue
        with clusters[spec.name].api_client() as api:
            svc = k8s.CoreV1Api(api).read_namespaced_service_status(L4_SERVICE, L4_NAMESPACE)
        lb = svc.status.load_balancer if svc.status else None
        ips = [str(i.ip) for i in (lb.ingress if lb and lb.ingress else []) if i.ip]
        found[spec.name] = {"ingress": ips, "ok": ips == [LB_ADDRESS]}
    return found


def ecmp_routes() -> dict[str, dict[str, Any]]:
    """Each router's route to the service CIDR of every cluster with more than one worker: one next hop each."""
    found: dict[str, dict[str, Any]] = {}
    for spec in CLUSTERS:
        if len(spec.workers) < 2:
            continue
        wanted = sorted(w.ip for w in spec.workers)
        for router in ROUTERS:
            route = next_hops(router, spec.service_cidr)
            found[f"{router} {spec.service_cidr}"] = {**route, "ok": sorted(route["next_hops"]) == wanted}
    return found


def wait_for_l4(timeout: float = 90) -> None:
    """Until the ECMP routes have all their next hops (each worker's BGP session) and the Service status is
    published: both come with the first runs after site.yml."""

    def check() -> tuple[bool, str]:
        routes, status = ecmp_routes(), l4_status(running_clusters() or {})
        done = all(r["ok"] for r in routes.values()) and all(v["ok"] for v in status.values())
        return done, f"routes {routes}, status {status}"

    wait_until(check, "ECMP routes and the L4 Service's status in place", timeout, interval=2)


def summary_seal_ok(dropped: Mapping[str, int]) -> bool:
    """The seal is in place and has dropped nothing: no lab packet tried to leave the lab."""
    return bool(dropped) and not any(dropped.values())


def collect_summary() -> dict[str, Any]:
    clusters = running_clusters() or {}
    hosts: dict[str, dict[str, Any]] = {}
    for host in sorted({h for s in CLUSTERS for h in s.hosts}):
        res = probe(host)
        answers = res["answers"]
        expected = sorted(s.name for s in CLUSTERS if host in s.hosts)
        got = Counter(a.get("cluster", "-") for a in answers if a.get("ok"))
        hosts[host] = {
            "expected": expected,
            "answered_by": dict(sorted(got.items())),
            "pods": sorted({a["pod"] for a in answers if a.get("pod")}),
            "failed": sum(1 for a in answers if not a.get("ok")),
            "certificate": sorted({a.get("cert_cn", "") for a in answers if a.get("ok")}),
            "errors": sorted({a.get("error", "") for a in answers if a.get("error")}),
            # the TCP source the pod saw: a router's own address (nothing masquerades in the lab)
            "sources": sorted({a.get("src", "-") for a in answers if a.get("ok")}),
            "ok": sorted(got) == expected
            and all(a.get("ok") for a in answers)
            and {a.get("src") for a in answers} <= set(ROUTERS.values()),
        }
    api: dict[str, dict[str, Any]] = {}
    for spec in CLUSTERS:
        port = clusters[spec.name].api_port if spec.name in clusters else 0
        res = client("get", f"https://{spec.api_vip}:{port}/readyz", "--ca", spec.client_ca())
        # A hardened API server refuses this anonymous request (401): it answered through the VIP, so haproxy's
        # checks (with their client certificate) found it live.
        wanted_status = 401 if spec.name in HARDENED else 200
        api[spec.name] = {
            "url": f"https://{spec.api_vip}:{port}",
            "status": res.get("status"),
            "expected": wanted_status,
            "error": res.get("error", ""),
            "ok": res.get("status") == wanted_status,
        }
    routes = {name: bird_routes(name) for name in ROUTERS}
    timers = {
        name: in_container(name, "systemctl", "is-active", "k8router-converge.timer", check=False).strip()
        for name in ROUTERS
    }
    last_runs = {
        name: in_container(name, "systemctl", "show", "-P", "Result", "k8router-converge.service", check=False).strip()
        for name in ROUTERS
    }
    l4 = {f"{proto}/{port}": l4_probe(proto, port) for proto, port in (("tcp", HTTP_PORT), ("udp", UDP_ECHO_PORT))}
    status = l4_status(clusters)
    ecmp = ecmp_routes()
    sealed = seal_counts()
    return {
        "ingress_vip": INGRESS_VIP,
        "ingress_master": vip_holder(INGRESS_VIP),
        "hosts": hosts,
        "api": api,
        "api_masters": {s.name: vip_holder(s.api_vip) for s in CLUSTERS},
        "bgp_routes": routes,
        "converge_timer": timers,
        "converge_last_result": last_runs,
        "lb_address": LB_ADDRESS,
        "lb_master": vip_holder(LB_ADDRESS),
        "l4_service": f"{L4_NAMESPACE}/{L4_SERVICE}",
        "l4": l4,
        "l4_status": status,
        "ecmp": ecmp,
        "seal": {"dropped": sealed, "ok": summary_seal_ok(sealed)},
        "ok": summary_seal_ok(sealed)
        and all(h["ok"] for h in hosts.values())
        and all(a["ok"] for a in api.values())
        and all(v["ok"] for v in l4.values())
        and all(v["ok"] for v in status.values())
        and bool(ecmp)
        and all(v["ok"] for v in ecmp.values()),
    }


def print_summary(summary: Mapping[str, Any]) -> int:
    print()
    print("k8router lab")
    print(f"  ingress VIP {summary['ingress_vip']} held by {summary['ingress_master']}")
    print()
    print(f"  {'host':<20} {'served by (8 requests, SNI)':<30} {'certificate':<18} {'pods':<40} result")
    for host, h in summary["hosts"].items():
        served = ", ".join(f"{c} x{n}" for c, n in h["answered_by"].items()) or "-"
        pods = ", ".join(h["pods"]) or "-"
        foreign = [src for src in h["sources"] if src not in ROUTERS.values()]
        reasons = [*h["errors"], *([f"the pods saw {', '.join(foreign)}, not a router's address"] if foreign else [])]
        result = "ok" if h["ok"] else f"FAIL (expected {', '.join(h['expected'])}; {'; '.join(reasons)})"
        print(f"  {host:<20} {served:<30} {', '.join(h['certificate']):<18} {pods:<40} {result}")
    print()
    for name, a in summary["api"].items():
        holder = summary["api_masters"].get(name)
        result = "ok" if a["ok"] else f"FAIL ({a['status']} {a['error']}, expected {a['expected']})"
        if a["ok"] and a["expected"] == 401:
            result = "ok (401 to an anonymous client: hardened; haproxy's checks use a client certificate)"
        print(f"  API of {name:<6} {a['url']}/readyz via {holder}: {result}")
    print()
    for name, routes in summary["bgp_routes"].items():
        print(f"  {name}: BGP routes {', '.join(routes) or 'none'}")
        print(
            f"  {name}: k8router-converge.timer {summary['converge_timer'][name]}, "
            f"last run {summary['converge_last_result'][name] or '-'} (every {CONVERGE_INTERVAL}s)"
        )
    print()
    print(
        f"  L4: LoadBalancer Service {summary['l4_service']} of both clusters on {summary['lb_address']} "
        f"(held by {summary['lb_master']}), k8router's nftables engine on the routers, kube-proxy on the workers"
    )
    for port, t in summary["l4"].items():
        served = ", ".join(
            f"{c} x{n} ({', '.join(f'{p} x{k}' for p, k in t['pods'].get(c, {}).items())})"
            for c, n in t["answered_by"].items()
        )
        why = "; ".join([*t["errors"], *(f"no answer from {m}" for m in t["missing"])])
        result = "ok" if t["ok"] else f"FAIL ({t['failed']} of {t['requests']} failed; {why})"
        print(f"  {port:<7} {t['requests']} requests: {served or 'none answered'}: {result}")
    status = ", ".join(f"{c} {', '.join(v['ingress']) or '-'}" for c, v in summary["l4_status"].items())
    status_ok = all(v["ok"] for v in summary["l4_status"].values())
    print(f"  status.loadBalancer.ingress: {status}: {'ok' if status_ok else 'FAIL'}")
    for where, r in summary["ecmp"].items():
        print(f"  ECMP {where}: {r['route'] or 'no route'}: {'ok' if r['ok'] else 'FAIL'}")
    dropped = summary["seal"]["dropped"]
    seal_result = "ok" if summary["seal"]["ok"] else "FAIL" + ("" if dropped else " (the seal is not in place)")
    sources = sorted({s for h in summary["hosts"].values() for s in h["sources"]})
    counted = ", ".join(f"{n} packets {why}" for why, n in dropped.items()) or "-"
    print(f"  sealed: host table inet {seal.TABLE} dropped {counted}: {seal_result}")
    own = bool(sources) and set(sources) <= set(ROUTERS.values())
    print(f"  no masquerading: the ingress pods saw the sources {', '.join(sources) or '-'}: "
          + ("ok (the routers' own)" if own else "FAIL (not the routers' own addresses)"))  # fmt: skip
    print()
    print("  all paths ok" if summary["ok"] else "  SOME PATHS FAILED")
    return 0 if summary["ok"] else 1


# --------------------------------------------------------------------------------------------------------------
# scenarios


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


def set_cluster_state(name: str, state: str) -> None:
    settings = lab_settings()
    settings.setdefault("cluster_state", {})[name] = state
    (LAB_DIR / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")


def reconfigure_routers() -> None:
    """Rewrite the lab inventory and push the routers' k8router settings (site.yml, routers only), then run once."""
    clusters = running_clusters()
    if clusters is None:
        raise LabFailure("the lab's clusters are not running (make lab)")
    parts = Parts(*json.loads((LAB_DIR / "parts.json").read_text()))
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


def scenario_ingress_change() -> dict[str, Any]:
    clusters = running_clusters()
    if clusters is None:
        raise LabFailure("the lab's clusters are not running (make lab)")
    spec = CLUSTERS[0]
    name = f"new-{int(time.time())}"
    host = f"{name}.{DOMAIN}"
    argv = [
        "podman", "exec", CLIENT, "python3", CLIENT_SCRIPT, "wait", "--vip", INGRESS_VIP, "--host", host,
        "--ca", CLIENT_LAB_CA, "--cluster", spec.name, "--timeout", str(4 * CONVERGE_INTERVAL + 60),
    ]  # fmt: skip
    waiter = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    with clusters[spec.name].api_client() as api:
        created = time.time()
        ko.create_ingress(api, "shop", name, [ko.IngressRule(host, "web", 80)])
        out, _err = waiter.communicate(timeout=4 * CONVERGE_INTERVAL + 90)
        k8s.NetworkingV1Api(api).delete_namespaced_ingress(name, "shop")
    res = json.loads(last_line(out))
    served = res.get("served_at")
    return {
        "scenario": "ingress-change",
        "host": host,
        "seconds": round(float(served) - created, 2) if served else None,
        "timer_interval_s": CONVERGE_INTERVAL,
        "ok": served is not None,
    }


SCENARIOS = {
    "fail-master": scenario_fail_master,
    "stop-api": scenario_stop_api,
    "drain": scenario_drain,
    "add-cert": scenario_add_cert,
    "ingress-change": scenario_ingress_change,
}


# --------------------------------------------------------------------------------------------------------------
# command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab", description=(__doc__ or "").split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    sub.add_parser("wheelhouse", help="download the routers' wheels when missing; print their directory")
    for name in ("status", "summary"):
        sub.add_parser(name).add_argument("--json", action="store_true")
    sc = sub.add_parser("scenario")
    sc.add_argument("name", choices=sorted(SCENARIOS))
    sc.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except LabFailure as exc:
        log(f"error: {exc}")
        return 1


def print_wheelhouse() -> int:
    print(wheelhouse())
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    commands = {"up": up, "down": down, "wheelhouse": print_wheelhouse}
    if args.command in commands:
        return commands[args.command]()
    if not is_up():
        print(json.dumps({"up": False}) if args.json else "lab: not up (make lab)")
        return 1
    if args.command == "status":
        print(json.dumps({"up": True, "dir": str(LAB_DIR)}) if args.json else f"lab: up ({LAB_DIR})")
        return 0
    if args.command == "summary":
        summary = collect_summary()
        if not args.json:
            return print_summary(summary)
        print(json.dumps(summary))
        return 0 if summary["ok"] else 1
    result = SCENARIOS[args.name]()
    print(json.dumps(result) if args.json else yaml.safe_dump(result, sort_keys=False))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
