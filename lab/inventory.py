# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's Ansible inventory: the k8router.edge.clusters plugin over the two clusters, the routers, the client,
and the group and host variables the collection's playbooks take, written from the topology."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lab.certs import certs_dir
from lab.clusters import kube_proxy_kubeconfig
from lab.parts import Parts
from lab.topology import (
    CLIENT,
    CLUSTERS,
    CONVERGE_INTERVAL,
    GATEWAY,
    INGRESS_VIP,
    LAB_DIR,
    LB_CLASS,
    LB_POOL,
    ROUTERS,
    UDP_ECHO_PORT,
)
from tests.fixtures import kubelab


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


def set_cluster_state(name: str, state: str) -> None:
    settings = lab_settings()
    settings.setdefault("cluster_state", {})[name] = state
    (LAB_DIR / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
