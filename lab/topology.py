# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the lab is made of: its network and addresses, the routers, the clusters with their workers and pods,
the L4 Service, and where the lab keeps its files. Data only; every other module reads it from here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures import kubeobjects as ko

REPO = Path(__file__).resolve().parent.parent
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
# One router set of both Debian releases: router1 on Debian 12, router2 on Debian 13 (tools/image.sh; the lab is
# sealed, so both images hold their daemons: molecule's Debian 13 router is the bare one the role installs on).
ROUTER_IMAGES = {"k8r-lab-router1": "router", "k8r-lab-router2": "router-trixie"}
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
    **{name: (ROUTER_IMAGES[name], ip) for name, ip in ROUTERS.items()},
    **{w.name: ("worker", w.ip) for c in CLUSTERS for w in c.workers},
    CLIENT: ("client", CLIENT_IP),
}


CNI_CONFIG = Path("/etc/cni/net.d") / f"{NETWORK}.conflist"
# What the lab owns: its network (with the load-balancer pool) and the clusters' pod and service ranges.
LAB_RANGES = (SUBNET, *(c.pod_cidr for c in CLUSTERS), *(c.service_cidr for c in CLUSTERS))
