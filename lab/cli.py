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
import json
from collections.abc import Sequence

import yaml

from lab.host import LabFailure, log
from lab.lifecycle import down, is_up, up
from lab.parts import wheelhouse
from lab.scenarios import SCENARIOS
from lab.summary import collect_summary, print_summary
from lab.topology import LAB_DIR


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
