# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's seal: the host table's transaction, its counters, and the network without masquerading.

The table itself is loaded by `make lab` on the host (the lab smoke run fails if it counted a packet); here
the transaction is checked with ``nft -c`` in tests/integration/test_validators.py.
"""

from __future__ import annotations

from typing import Any

from lab import seal

RANGES = ("10.244.0.0/16", "10.245.0.0/16", "10.96.0.0/16", "10.97.0.0/16")


def test_the_table_drops_what_leaves_the_lab_and_touches_no_other_table() -> None:
    text = seal.ruleset("10.213.9.0/24", RANGES)
    assert text.splitlines()[:3] == [
        "table inet k8router_lab_seal {}",
        "delete table inet k8router_lab_seal",
        "table inet k8router_lab_seal {",
    ]
    assert "elements = { 10.96.0.0/16, 10.97.0.0/16, 10.213.9.0/24, 10.244.0.0/16, 10.245.0.0/16 }" in text
    assert "ip saddr 10.213.9.0/24 ip daddr != @lab counter drop" in text
    assert 'ip saddr 10.213.9.0/24 oifname != "cni-podman*" counter drop' in text
    assert text.count("table ") == 3


def test_the_counters_by_rule() -> None:
    listing = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "k8router_lab_seal", "handle": 7}},
            {"rule": {"family": "inet", "table": "k8router_lab_seal", "chain": "forward", "handle": 3,
                      "comment": "outside the lab's ranges",
                      "expr": [{"match": {}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": None}]}},
            {"rule": {"family": "inet", "table": "k8router_lab_seal", "chain": "forward", "handle": 4,
                      "comment": "leaving the lab network",
                      "expr": [{"match": {}}, {"counter": {"packets": 5, "bytes": 300}}, {"drop": None}]}},
            {"rule": {"family": "inet", "table": "other", "chain": "x", "handle": 9,
                      "expr": [{"counter": {"packets": 99, "bytes": 1}}]}},
        ]
    }  # fmt: skip
    import json  # noqa: PLC0415

    assert seal.dropped(json.dumps(listing)) == {"outside the lab's ranges": 0, "leaving the lab network": 5}


def test_the_network_keeps_everything_but_masquerading() -> None:
    bridge: dict[str, Any] = {
        "type": "bridge", "bridge": "cni-podman1", "isGateway": True, "ipMasq": True, "ipam": {"type": "host-local"}
    }  # fmt: skip
    conflist: dict[str, Any] = {
        "cniVersion": "0.4.0",
        "name": "k8r-lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni-podman1",
                "isGateway": True,
                "ipMasq": True,
                "ipam": {"type": "host-local"},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    assert seal.masquerades(conflist)
    patched = seal.without_masquerade(conflist)
    assert not seal.masquerades(patched)
    assert patched["plugins"][0] == {**bridge, "ipMasq": False}
    assert patched["plugins"][1] == conflist["plugins"][1]
    assert seal.masquerades(conflist)  # the input is left as it was
