# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Up and down: the network with its seal (``lab/seal.py``), the containers, the clusters, the certificates and
the inventory, then the collection's playbooks; ``down`` removes it all (the caches stay)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping

from lab import seal
from lab.certs import ensure_certificates
from lab.clusters import clusters_dir, load_cluster, running_clusters, start_clusters
from lab.host import LabFailure, container_running, in_container, log, playbook, podman, run
from lab.inventory import write_inventory
from lab.parts import build_parts
from lab.summary import collect_summary, print_summary, wait_for_health_checks, wait_for_l4
from lab.topology import (
    CLIENT,
    CLIENT_LAB_CA,
    CLIENT_SCRIPT,
    CLUSTERS,
    CNI_CONFIG,
    CONTAINERS,
    GATEWAY,
    LAB_DIR,
    LAB_RANGES,
    NETWORK,
    REPO,
    SUBNET,
)
from tests.fixtures import kubelab, pki


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


# The containers' /proc/sys is read-only: the routers' ECMP hash (in the router role's router_sysctls) is set here,
# and the role finds it already set.
ROUTER_SYSCTLS = (
    "--sysctl", "net.ipv4.fib_multipath_hash_policy=1", "--sysctl", "net.ipv6.fib_multipath_hash_policy=1",
)  # fmt: skip


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
            *(ROUTER_SYSCTLS if image.startswith("router") else ()),
            f"localhost/k8router-{image}:current", "/sbin/init",
        )  # fmt: skip
        log(f"started {name} ({ip})")
    for name in CONTAINERS:
        state = in_container(name, "systemctl", "is-system-running", "--wait", check=False).strip()
        if state not in ("running", "degraded"):
            raise LabFailure(f"{name}: systemd is {state or 'not answering'}")


def prepare_client(clusters: Mapping[str, kubelab.Cluster]) -> None:
    in_container(CLIENT, "mkdir", "-p", "/etc/lab")
    podman("cp", str(REPO / "lab" / "labclient.py"), f"{CLIENT}:{CLIENT_SCRIPT}")
    podman("cp", str(LAB_DIR / "pki" / pki.CA_FILE), f"{CLIENT}:{CLIENT_LAB_CA}")
    for s in CLUSTERS:
        podman("cp", str(clusters[s.name].ca), f"{CLIENT}:{s.client_ca()}")


def up() -> int:
    started = time.monotonic()
    for sub in ("logs", "tokens"):
        (LAB_DIR / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    parts = build_parts()
    parts.save()
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
