# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's network is sealed: nothing a lab container sends leaves this machine, and nothing is masqueraded.

- The podman network's CNI bridge does not masquerade (``ipMasq: false``): between lab hosts and toward the lab's
  own ranges (pods, services, load-balancer pool) every packet keeps its source, so a stand-in pod sees the
  router's own address.
- A table of the lab's own on the host, ``inet k8router_lab_seal``, drops and counts what comes from the lab
  network and would leave it: toward an address outside the lab's ranges, or out of an interface that is not a
  podman bridge (a cluster IP nobody on the lab network answers would otherwise follow the host's default route).
  The lab sets it up before its containers start and removes it with the lab; the summary fails if it ever
  counted a packet.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Any

TABLE = "k8router_lab_seal"
BRIDGES = "cni-podman*"  # podman's CNI bridges; another lab network (molecule's) is still on this machine


def ruleset(subnet: str, ranges: Iterable[str]) -> str:
    """The transaction that (re)defines the seal table: ``nft -f -`` input, idempotent, touching no other table."""
    nets = sorted({str(ipaddress.ip_network(r)) for r in (subnet, *ranges)}, key=ipaddress.ip_network)
    source = ipaddress.ip_network(subnet)
    return (
        f"table inet {TABLE} {{}}\n"
        f"delete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n"
        "\tset lab {\n"
        "\t\ttype ipv4_addr; flags interval;\n"
        f"\t\telements = {{ {', '.join(nets)} }}\n"
        "\t}\n"
        "\tchain forward {\n"
        "\t\ttype filter hook forward priority -10; policy accept;\n"
        f'\t\tip saddr {source} ip daddr != @lab counter drop comment "outside the lab\'s ranges"\n'
        f'\t\tip saddr {source} oifname != "{BRIDGES}" counter drop comment "leaving the lab network"\n'
        "\t}\n"
        "}\n"
    )


def dropped(listing_json: str) -> dict[str, int]:
    """Packets each rule of the seal table dropped, by its comment, from ``nft -j list table inet ...``."""
    counts: dict[str, int] = {}
    data: Mapping[str, Any] = json.loads(listing_json)
    for item in data.get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not rule or rule.get("table") != TABLE:
            continue
        packets = sum(e["counter"].get("packets", 0) for e in rule.get("expr", []) if "counter" in e)
        counts[str(rule.get("comment", f"rule {rule.get('handle')}"))] = packets
    return counts


def without_masquerade(conflist: Mapping[str, Any]) -> dict[str, Any]:
    """podman's CNI network configuration with the bridge's masquerading off (everything else as podman wrote it)."""
    out: dict[str, Any] = json.loads(json.dumps(conflist))
    for plugin in out.get("plugins", []):
        if plugin.get("type") == "bridge":
            plugin["ipMasq"] = False
    return out


def masquerades(conflist: Mapping[str, Any]) -> bool:
    return any(p.get("type") == "bridge" and p.get("ipMasq", False) for p in conflist.get("plugins", []))
