"""The nftables engine's pure half: desired table, renderer (golden files), the strict reader of ``nft -j``, changes.

``golden/nft/*.nft`` are the transactions k8router sends; ``golden/nft/*.json`` are what the real nft printed
(``nft -j list table inet k8router_lb``) after loading them: tests/integration/test_nft_engine.py checks that it
still does, so the reader is tested here on nft's own output.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.k8router.edge.plugins.module_utils._nft import (
    TABLE,
    Endpoint,
    Live,
    Service,
    changes,
    desired_table,
    parse_live,
    render,
    transaction,
)
from ansible_collections.k8router.edge.plugins.module_utils._services import Real, Virtual

GOLDEN = Path(__file__).parent / "golden" / "nft"
UPDATE = os.environ.get("K8ROUTER_UPDATE_GOLDEN") == "1"

VIRTUALS = [
    # two clusters sharing an address, cluster weights 100 and 50: shares 2:1
    Virtual("tcp", "10.0.3.5", 80, "wrr", (Real("10.96.0.31", 80, 100), Real("10.97.0.31", 80, 50))),
    Virtual("udp", "10.0.3.5", 53, "wrr", (Real("10.96.0.31", 53, 100), Real("10.97.0.31", 53, 50))),
    # one cluster draining (weight 0): its endpoint stays, with no share
    Virtual("tcp", "10.0.3.1", 443, "rr", (Real("10.96.0.32", 443, 100), Real("10.97.0.32", 443, 0))),
    # every cluster draining: new connections are rejected
    Virtual("sctp", "10.0.3.2", 9000, "wrr", (Real("10.96.0.33", 9000, 0),)),
    Virtual("tcp", "fd00:3::7", 8080, "wrr", (Real("fd00:96::31", 8080, 1),)),
]
OWNERS = {"10.0.3.5": ["alpha/ns/web", "beta/ns/web"], "10.0.3.1": ["alpha/ns/api"], "10.0.3.2": ["alpha/ns/sctp"]}
CASES = {"services": VIRTUALS, "empty": []}


def golden_table(case: str) -> dict[Any, Service]:
    table, warnings = desired_table(CASES[case], OWNERS)
    assert warnings == []
    return table


@pytest.mark.parametrize("case", sorted(CASES))
def test_transaction_matches_golden_file(case: str) -> None:
    text = transaction(golden_table(case))
    path = GOLDEN / f"{case}.nft"
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} differs (K8ROUTER_UPDATE_GOLDEN=1 rewrites)"


def test_transaction_replaces_only_its_own_table() -> None:
    text = transaction(golden_table("services"))
    lines = text.splitlines()
    assert lines[:3] == [f"table {TABLE} {{}}", f"delete table {TABLE}", f"table {TABLE} {{"]
    assert [ln for ln in lines if ln.startswith("table") or ln.startswith("delete")] == lines[:3]
    assert "flush" not in text and "ruleset" not in text


def test_weights_become_reduced_shares() -> None:
    table = golden_table("services")
    web = table[("tcp", "10.0.3.5", 80)]
    assert [(e.address, e.weight) for e in web.endpoints] == [("10.96.0.31", 2), ("10.97.0.31", 1)]
    assert "numgen random mod 3 vmap { 0-1 : goto ep-tcp-10.0.3.5-80-10.96.0.31-80, 2 : goto" in render(table)
    drained = table[("tcp", "10.0.3.1", 443)]
    assert [(e.address, e.weight) for e in drained.endpoints] == [("10.96.0.32", 1), ("10.97.0.32", 0)]
    assert [e.address for e, _first, _last in drained.shares()] == ["10.96.0.32"]
    assert not table[("sctp", "10.0.3.2", 9000)].shares()


def test_rr_gives_equal_shares_and_wrr_keeps_the_weights() -> None:
    reals = (Real("10.96.0.1", 80, 100), Real("10.97.0.1", 80, 30), Real("10.98.0.1", 80, 0))
    rr = desired_table([Virtual("tcp", "10.0.3.9", 80, "rr", reals)], {})[0]
    wrr = desired_table([Virtual("tcp", "10.0.3.9", 80, "wrr", reals)], {})[0]
    assert [e.weight for e in rr[("tcp", "10.0.3.9", 80)].endpoints] == [1, 1, 0]
    assert [e.weight for e in wrr[("tcp", "10.0.3.9", 80)].endpoints] == [10, 3, 0]


def test_other_schedulers_are_warned_about_per_service() -> None:
    virtual = Virtual("tcp", "10.0.3.5", 80, "sh", (Real("10.96.0.1", 80, 2), Real("10.97.0.1", 80, 1)))
    table, warnings = desired_table([virtual], OWNERS)
    assert warnings == [
        "tcp 10.0.3.5:80 (alpha/ns/web, beta/ns/web): scheduler 'sh' is not available with the nftables engine "
        "(rr, wrr); new connections are spread at random by weight"
    ]
    assert [e.weight for e in table[("tcp", "10.0.3.5", 80)].endpoints] == [2, 1]


def test_an_endpoint_of_the_other_family_is_left_out_with_a_warning() -> None:
    virtual = Virtual("tcp", "fd00:3::7", 80, "wrr", (Real("10.96.0.1", 80, 1), Real("fd00:96::1", 80, 1)))
    table, warnings = desired_table([virtual], {"fd00:3::7": ["alpha/ns/v6"]})
    assert [e.address for e in table[("tcp", "fd00:3::7", 80)].endpoints] == ["fd00:96::1"]
    assert warnings == [
        "tcp [fd00:3::7]:80 (alpha/ns/v6): endpoint 10.96.0.1:80 is of another address family; left out"
    ]


def test_one_endpoint_of_two_clusters_adds_up_their_weights() -> None:
    virtual = Virtual("tcp", "10.0.3.5", 80, "wrr", (Real("10.96.0.1", 80, 3), Real("10.96.0.1", 80, 1)))
    table = desired_table([virtual], {})[0]
    assert table[("tcp", "10.0.3.5", 80)].endpoints == (Endpoint("10.96.0.1", 80, 1),)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Service("icmp", "10.0.3.5", 80),
        lambda: Service("tcp", "10.0.3.5; flush ruleset", 80),
        lambda: Service("tcp", "fe80::1%eth0", 80),
        lambda: Service("tcp", "10.0.3.5", 0),
        lambda: Endpoint("10.96.0.1", 70000),
        lambda: Endpoint("10.96.0.1", 80, -1),
        lambda: Service("tcp", "10.0.3.5", 80, (Endpoint("fd00::1", 80),)),
    ],
)
def test_nothing_unvalidated_reaches_the_model(bad: Any) -> None:
    with pytest.raises(ValueError):
        bad()


def test_a_virtual_service_the_model_refuses_is_left_out_with_a_warning_and_the_rest_served() -> None:
    bad = Virtual("tcp", "10.0.3.6", 0, "wrr", (Real("10.96.0.1", 80, 1),))
    worse = Virtual("tcp", "10.0.3.7", 80, "wrr", (Real("10.96.0.1; flush ruleset", 80, 1),))
    table, warnings = desired_table([bad, worse, *VIRTUALS], {"10.0.3.6": ["alpha/ns/zero"]})
    assert table == golden_table("services")
    assert warnings == [
        "tcp 10.0.3.6:0 (alpha/ns/zero): not served: port of 10.0.3.6: 0 is not an integer in 1..65535",
        "tcp 10.0.3.7:80 (no service): not served: endpoint address: '10.96.0.1; flush ruleset' is not an IP address",
    ]


def live_json(case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{case}.json").read_text())
    return data


@pytest.mark.parametrize("case", sorted(CASES))
def test_nfts_own_output_reads_back_as_the_rendered_table(case: str) -> None:
    live = parse_live(json.dumps(live_json(case)))
    assert live.problem is None
    assert live.table == golden_table(case)
    assert changes(live, golden_table(case)) == []


def _rules(data: dict[str, Any], chain: str) -> list[dict[str, Any]]:
    return [o["rule"] for o in data["nftables"] if "rule" in o and o["rule"]["chain"] == chain]


def _chain(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(o["chain"] for o in data["nftables"] if "chain" in o and o["chain"]["name"] == name)


def _hand_edits() -> dict[str, Any]:
    web = "svc-tcp-10.0.3.5-80"

    def counter(d: dict[str, Any]) -> None:
        _rules(d, "ep-tcp-10.0.3.5-80-10.96.0.31-80")[0]["expr"].insert(0, {"counter": {"packets": 0, "bytes": 0}})

    def extra_rule(d: dict[str, Any]) -> None:
        rule = {"family": "inet", "table": "k8router_lb", "chain": "services", "expr": [{"accept": None}]}
        d["nftables"].append({"rule": rule})

    def extra_chain(d: dict[str, Any]) -> None:
        d["nftables"].append({"chain": {"family": "inet", "table": "k8router_lb", "name": "mine", "handle": 99}})

    def priority(d: dict[str, Any]) -> None:
        _chain(d, "prerouting")["prio"] = 0

    def comment(d: dict[str, Any]) -> None:
        _rules(d, web)[0]["comment"] = "hello"

    def dnat_target(d: dict[str, Any]) -> None:
        _rules(d, "ep-tcp-10.0.3.5-80-10.96.0.31-80")[0]["expr"][1]["dnat"]["addr"] = "10.66.6.6"

    def gap(d: dict[str, Any]) -> None:
        _rules(d, web)[0]["expr"][0]["vmap"]["key"]["numgen"]["mod"] = 4

    def reject_all(d: dict[str, Any]) -> None:
        _rules(d, web)[0]["expr"] = [{"reject": {"type": "icmpx", "expr": "port-unreachable"}}]

    def a_set(d: dict[str, Any]) -> None:
        d["nftables"].append({"set": {"family": "inet", "name": "s", "table": "k8router_lb", "type": "ipv4_addr"}})

    def map_element(d: dict[str, Any]) -> None:
        m = next(o["map"] for o in d["nftables"] if "map" in o and o["map"]["name"] == "services4")
        m["elem"].append([{"concat": ["10.0.3.5", "tcp", 22]}, {"goto": {"target": web}}])

    return {f.__name__: f for f in (counter, extra_rule, extra_chain, priority, comment, dnat_target, gap, a_set)} | {
        "reject_all": reject_all,
        "map_element": map_element,
    }


HAND_EDITS = _hand_edits()


@pytest.mark.parametrize("edit", sorted(HAND_EDITS))
def test_a_hand_edit_is_never_taken_for_the_desired_table(edit: str) -> None:
    data = copy.deepcopy(live_json("services"))
    HAND_EDITS[edit](data)
    live = parse_live(json.dumps(data))
    desired = golden_table("services")
    assert live.problem is not None or live.table != desired, f"{edit}: read back as the desired table"
    ops = changes(live, desired)
    assert ops, edit


def test_a_weight_changed_by_hand_reads_back_and_is_named() -> None:
    data = copy.deepcopy(live_json("services"))
    elements = _rules(data, "svc-tcp-10.0.3.5-80")[0]["expr"][0]["vmap"]["data"]["set"]
    elements[0][0] = 0  # 10.96.0.31 gets 0..0 instead of 0..1: ranges no longer cover mod 3
    assert "do not cover" in (parse_live(json.dumps(data)).problem or "") or "gap" in (
        parse_live(json.dumps(data)).problem or ""
    )
    elements[1][0] = 1  # and 10.97.0.31 gets 1..1 (was 2), with mod 2: a 1:1 split, readable
    _rules(data, "svc-tcp-10.0.3.5-80")[0]["expr"][0]["vmap"]["key"]["numgen"]["mod"] = 2
    live = parse_live(json.dumps(data))
    assert live.problem is None
    assert changes(live, golden_table("services")) == [
        "change virtual service tcp 10.0.3.5:80: 10.96.0.31:80 weight 1, 10.97.0.31:80 weight 1 -> "
        "10.96.0.31:80 weight 2, 10.97.0.31:80 weight 1"
    ]


def test_changes_from_nothing_and_to_nothing() -> None:
    desired = golden_table("services")
    created = changes(Live(False), desired)
    assert created[0] == f"create table {TABLE}"
    assert (
        "add virtual service sctp 10.0.3.2:9000 -> 10.96.0.33:9000 weight 0 (drain): rejects new connections" in created
    )
    assert "add virtual service tcp 10.0.3.1:443 -> 10.96.0.32:443 weight 1, 10.97.0.32:443 weight 0 (drain)" in created
    assert changes(Live(False), {}) == [f"create table {TABLE}"]
    emptied = changes(Live(True, dict(desired)), {})
    assert len(emptied) == len(desired) and all(op.startswith("delete virtual service") for op in emptied)
    assert changes(Live(True, problem="x"), {})[0].startswith(f"replace table {TABLE}: it is not as k8router wrote it")


def test_unreadable_json_is_a_foreign_shape_not_a_crash() -> None:
    for text in ("", "{", "[]", '{"nftables": [{"rule": {}}]}', '{"nftables": [1]}'):
        assert parse_live(text).problem is not None, text


def _numbered(value: Any) -> Any:
    """The JSON as Debian 12's nft 1.0.6 writes it for k8router's table: protocols as their numbers."""
    numbers = {"tcp": 6, "udp": 17, "sctp": 132}
    if isinstance(value, dict):
        return {k: _numbered(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbered(v) for v in value]
    return numbers.get(value, value) if isinstance(value, str) else value


def test_protocols_written_as_numbers_read_back_as_the_rendered_table() -> None:
    data = _numbered(live_json("services"))
    assert '"right": 6' in json.dumps(data)
    live = parse_live(json.dumps(data))
    assert live.problem is None
    assert changes(live, golden_table("services")) == []
