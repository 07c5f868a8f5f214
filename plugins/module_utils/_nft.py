# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nftables: k8router's own L4 table. Model, renderer and reader of ``nft -j`` (pure), and a small driver.

The second L4 engine, for routers whose kernel has no ``ip_vs``. k8router owns one table, ``inet k8router_lb``, and
nothing else: every run renders the whole table and, when it differs from the kernel's, replaces it in one
transaction (``nft -f -``: add the table, delete it, define it again), validated with ``nft -c`` first. No other
table, chain or set is ever named. The shape follows kube-proxy's nftables mode:

- ``prerouting`` (nat, priority dstnat) and ``output`` (nat, -100, for the router's own connections) jump to
  ``services``, which looks (daddr, l4proto, dport) up in the verdict maps ``services4``/``services6``;
- each virtual service has a chain ``svc-PROTO-ADDRESS-PORT`` that picks an endpoint with ``numgen random mod N
  vmap``, one range of numbers per endpoint, as wide as its weight: the shares of new connections are the weights
  (reduced by their greatest common divisor); an endpoint of weight 0 keeps its chain but no range, so it gets no
  new connection while established ones go on (NAT is decided on a connection's first packet only); a service
  without an endpoint of positive weight rejects;
- each endpoint has a chain ``ep-PROTO-ADDRESS-PORT-ENDPOINT-PORT`` that DNATs to it (a service's cluster IP).

Replies: the router role's own table (``inet k8router``) masquerades at postrouting (priority srcnat) what goes
to the service CIDRs, so replies come back through this router and conntrack undoes both translations; this table
has no postrouting chain and never touches that one.

Everything in the rendered text comes from the model, whose addresses are parsed by ``ipaddress`` and whose
protocols, ports and weights are checked, so nothing from a cluster reaches ``nft`` unvalidated.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._net import checked_address, checked_integer, host_port

FAMILY = "inet"
NAME = "k8router_lb"
TABLE = f"{FAMILY} {NAME}"
PROTOCOLS = ("tcp", "udp", "sctp")
# nft before 1.0.7 (Debian 12's 1.0.6) writes a protocol in its JSON as the number (IANA), later ones as the name.
_PROTOCOL_NUMBERS = {6: "tcp", 17: "udp", 132: "sctp"}
SCHEDULERS = ("rr", "wrr")  # rr: equal shares among the endpoints of positive weight; wrr: shares by weight
MAX_WEIGHT = 65535

ServiceKey = tuple[str, str, int]  # (protocol, address, port), as in _ipvs
Runner = Callable[[Sequence[str]], "tuple[int, str, str]"]
StdinRunner = Callable[[Sequence[str], str], "tuple[int, str, str]"]

_MAPS = {4: ("services4", "ipv4_addr", "ip"), 6: ("services6", "ipv6_addr", "ip6")}
_BASE_CHAINS = {
    "prerouting": {"type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"},
    "output": {"type": "nat", "hook": "output", "prio": -100, "policy": "accept"},
}
_PROTOCOL_ORDER = {p: i for i, p in enumerate(PROTOCOLS)}


class NftError(Exception):
    """nft refused the table, or could not be run or read."""


@functools.lru_cache(maxsize=65536)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "%" in text:  # no scoped IPv6 ("fe80::1%eth0"): ipaddress keeps any text after the "%"
        raise ValueError("scoped address")
    return ipaddress.ip_address(text)


_address = checked_address
_integer = checked_integer


def _family(address: str) -> int:
    return _ip(address).version


def _order(address: str, port: int) -> tuple[int, int, int]:
    ip = _ip(address)
    return ip.version, int(ip), port


def _name_part(address: str) -> str:
    """An address as part of a chain name (nft names take letters, digits, ``/ - _ .``: IPv6 colons become dots)."""
    return address.replace(":", ".")


endpoint_text = host_port


@dataclass(frozen=True)
class Endpoint:
    """Where a virtual service sends new connections (for k8router: a service's cluster IP in one cluster)."""

    address: str
    port: int
    weight: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", _address(self.address, "endpoint address"))
        _integer(self.port, 1, 65535, f"port of endpoint {self.address}")
        _integer(self.weight, 0, MAX_WEIGHT, f"weight of endpoint {self.address}")

    @property
    def text(self) -> str:
        return endpoint_text(self.address, self.port)


@dataclass(frozen=True)
class Service:
    """A virtual service, keyed by (protocol, address, port), with its endpoints (sorted, each once, one family)."""

    protocol: str
    address: str
    port: int
    endpoints: tuple[Endpoint, ...] = ()

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        object.__setattr__(self, "address", _address(self.address, "virtual service address"))
        _integer(self.port, 1, 65535, f"port of {self.address}")
        seen: set[tuple[str, int]] = set()
        for ep in self.endpoints:
            if not isinstance(ep, Endpoint):
                raise ValueError(f"{self.name}: {ep!r} is not an Endpoint")
            if _family(ep.address) != self.family:
                raise ValueError(f"{self.name}: endpoint {ep.text} is of another address family")
            if (ep.address, ep.port) in seen:
                raise ValueError(f"{self.name}: endpoint {ep.text} listed twice")
            seen.add((ep.address, ep.port))
        object.__setattr__(self, "endpoints", tuple(sorted(self.endpoints, key=lambda e: _order(e.address, e.port))))

    @property
    def key(self) -> ServiceKey:
        return self.protocol, self.address, self.port

    @property
    def family(self) -> int:
        return _family(self.address)

    @property
    def name(self) -> str:
        """Human name: ``tcp 10.0.0.1:80``."""
        return f"{self.protocol} {endpoint_text(self.address, self.port)}"

    @property
    def chain(self) -> str:
        return f"svc-{self.protocol}-{_name_part(self.address)}-{self.port}"

    def endpoint_chain(self, ep: Endpoint) -> str:
        return f"ep-{self.protocol}-{_name_part(self.address)}-{self.port}-{_name_part(ep.address)}-{ep.port}"

    def shares(self) -> list[tuple[Endpoint, int, int]]:
        """(endpoint, first, last) numbers of ``numgen random mod total``, for the endpoints of positive weight."""
        out = []
        start = 0
        for ep in self.endpoints:
            if ep.weight:
                out.append((ep, start, start + ep.weight - 1))
                start += ep.weight
        return out


Table = dict[ServiceKey, Service]


def key_order(key: ServiceKey) -> tuple[int, int, int, int]:
    return (_PROTOCOL_ORDER.get(key[0], 99), *_order(key[1], key[2]))


# --------------------------------------------------------------------------------------------------------------
# the desired table, from the engine-agnostic virtual services of _services


def desired_table(virtuals: Iterable[Any], owners: Mapping[str, Sequence[str]]) -> tuple[Table, list[str]]:
    """The table for ``virtuals`` (``_services.Virtual``), and a warning for each thing it cannot do as asked.

    ``owners`` maps an address to the service keys (cluster/namespace/name) holding it, to name them in warnings.
    Weights become shares: ``rr`` gives every endpoint of positive weight the same share, ``wrr`` shares by weight;
    any other scheduler is warned about and served as ``wrr``. An endpoint of another address family than its
    virtual service is left out with a warning; endpoints listed twice (two clusters with the same cluster IP)
    add up their weights. Shares are reduced by their greatest common divisor (100:100 is 1:1).
    """
    table: Table = {}
    warnings: list[str] = []
    for v in virtuals:
        who = ", ".join(owners.get(v.address, ())) or "no service"
        what = f"{v.protocol} {endpoint_text(v.address, v.port)} ({who})"
        try:
            svc = _desired_service(v, what, warnings)
        except ValueError as exc:
            warnings.append(f"{what}: not served: {exc}")
            continue
        table[svc.key] = svc
    return table, warnings


def _desired_service(v: Any, what: str, warnings: list[str]) -> Service:
    if v.scheduler not in SCHEDULERS:
        warnings.append(
            f"{what}: scheduler {v.scheduler!r} is not available with the nftables engine "
            f"({', '.join(SCHEDULERS)}); new connections are spread at random by weight"
        )
    family = _family(_address(v.address, "virtual service address"))
    weights: dict[tuple[str, int], int] = {}
    for real in v.reals:
        address = _address(real.address, "endpoint address")
        if _family(address) != family:
            warnings.append(
                f"{what}: endpoint {endpoint_text(address, real.port)} is of another address family; left out"
            )
            continue
        weight = _integer(real.weight, 0, MAX_WEIGHT, f"weight of endpoint {address}")
        weight = (1 if weight else 0) if v.scheduler == "rr" else weight
        weights[(address, real.port)] = weights.get((address, real.port), 0) + weight
    divisor = math.gcd(*weights.values()) or 1
    endpoints = tuple(Endpoint(a, p, min(w // divisor, MAX_WEIGHT)) for (a, p), w in weights.items())
    return Service(v.protocol, v.address, v.port, endpoints)


# --------------------------------------------------------------------------------------------------------------
# rendering


def render(table: Mapping[ServiceKey, Service]) -> str:
    """The table as nft input (the ``table inet k8router_lb { ... }`` block), in key order."""
    services = [table[k] for k in sorted(table, key=key_order)]
    out = [f"table {TABLE} {{"]
    for family, (map_name, key_type, _match) in _MAPS.items():
        members = [s for s in services if s.family == family]
        out += [f"\tmap {map_name} {{", f"\t\ttype {key_type} . inet_proto . inet_service : verdict"]
        if members:
            out.append("\t\telements = {")
            out += [f"\t\t\t{s.address} . {s.protocol} . {s.port} : goto {s.chain}," for s in members]
            out.append("\t\t}")
        out.append("\t}")
    out += [
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        "\t\tjump services",
        "\t}",
        "\tchain output {",
        "\t\ttype nat hook output priority -100; policy accept;",
        "\t\tjump services",
        "\t}",
        "\tchain services {",
        *(f"\t\t{match} daddr . meta l4proto . th dport vmap @{name}" for name, _t, match in _MAPS.values()),
        "\t}",
    ]
    for svc in services:
        out.append(f"\tchain {svc.chain} {{")
        shares = svc.shares()
        if shares:
            total = shares[-1][2] + 1
            picks = ", ".join(
                f"{first if first == last else f'{first}-{last}'} : goto {svc.endpoint_chain(ep)}"
                for ep, first, last in shares
            )
            out.append(f"\t\tnumgen random mod {total} vmap {{ {picks} }}")
        else:
            out.append("\t\treject")
        out.append("\t}")
        for ep in svc.endpoints:
            if not ep.weight:
                out.append("\t# weight 0: no new connections")
            nat_family = "ip6" if svc.family == 6 else "ip"
            out += [
                f"\tchain {svc.endpoint_chain(ep)} {{",
                f"\t\tmeta l4proto {svc.protocol} dnat {nat_family} to {ep.text}",
                "\t}",
            ]
    out.append("}")
    return "".join(line + "\n" for line in out)


def transaction(table: Mapping[ServiceKey, Service]) -> str:
    """One ``nft -f`` transaction replacing k8router's table whether it exists or not, and nothing else."""
    return f"table {TABLE} {{}}\ndelete table {TABLE}\n{render(table)}"


# --------------------------------------------------------------------------------------------------------------
# reading the kernel's table back (``nft -j list table inet k8router_lb``)


class _Shape(Exception):
    """The live table is not what this module renders (edited by hand, or by something else)."""


def _need(condition: bool, why: str) -> None:
    if not condition:
        raise _Shape(why)


def _only_keys(obj: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    extra = set(obj) - set(allowed)
    _need(not extra, f"{what}: unexpected {', '.join(sorted(extra))}")


def _goto(verdict: object, what: str) -> str:
    _need(isinstance(verdict, dict) and set(verdict) == {"goto"}, f"{what}: not a goto")
    target = verdict["goto"]  # type: ignore[index]
    _need(isinstance(target, dict) and set(target) == {"target"}, f"{what}: not a goto")
    return str(target["target"])


def _protocol(value: object) -> object:
    """A protocol as nft's JSON gives it, by name (the number of an older nft turned into the name)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _PROTOCOL_NUMBERS.get(value, value)
    return value


def _match_l4proto(expr: object, what: str) -> str:
    left = {"meta": {"key": "l4proto"}}
    _need(
        isinstance(expr, dict)
        and set(expr) == {"match"}
        and isinstance(expr["match"], dict)
        and expr["match"].get("op") == "=="
        and expr["match"].get("left") == left
        and _protocol(expr["match"].get("right")) in PROTOCOLS
        and len(expr["match"]) == 3,
        f"{what}: not a protocol match",
    )
    return str(_protocol(expr["match"]["right"]))  # type: ignore[index]


def _services_rule(family: int) -> list[Any]:
    name, _type, match = _MAPS[family]
    key = {
        "concat": [
            {"payload": {"protocol": match, "field": "daddr"}},
            {"meta": {"key": "l4proto"}},
            {"payload": {"protocol": "th", "field": "dport"}},
        ]
    }
    return [{"vmap": {"key": key, "data": f"@{name}"}}]


def _endpoint_of(rules: list[list[Any]], chain: str) -> tuple[str, Endpoint]:
    _need(len(rules) == 1 and len(rules[0]) == 2, f"chain {chain}: not one DNAT rule")
    protocol = _match_l4proto(rules[0][0], f"chain {chain}")
    dnat = rules[0][1]
    _need(
        isinstance(dnat, dict) and set(dnat) == {"dnat"} and isinstance(dnat["dnat"], dict), f"chain {chain}: no dnat"
    )
    target = dnat["dnat"]
    _only_keys(target, ("family", "addr", "port"), f"chain {chain}: dnat")
    try:
        ep = Endpoint(target.get("addr"), target.get("port"), 0)
    except ValueError as exc:
        raise _Shape(f"chain {chain}: {exc}") from None
    _need(target.get("family") == ("ip6" if _family(ep.address) == 6 else "ip"), f"chain {chain}: dnat family")
    return protocol, ep


def _picks(rules: list[list[Any]], chain: str) -> list[tuple[str, int]] | None:
    """(endpoint chain, weight) per range of the service chain's numgen map; None for a chain that rejects."""
    _need(len(rules) == 1 and len(rules[0]) == 1, f"chain {chain}: not one rule")
    expr = rules[0][0]
    if expr == {"reject": {"type": "icmpx", "expr": "port-unreachable"}}:
        return None
    _need(isinstance(expr, dict) and set(expr) == {"vmap"}, f"chain {chain}: no numgen map")
    vmap = expr["vmap"]
    _need(isinstance(vmap, dict) and set(vmap) == {"key", "data"}, f"chain {chain}: no numgen map")
    numgen = vmap["key"].get("numgen") if isinstance(vmap["key"], dict) else None
    _need(
        isinstance(numgen, dict) and numgen.get("mode") == "random" and numgen.get("offset", 0) == 0,
        f"chain {chain}: not numgen random",
    )
    total = numgen["mod"]  # type: ignore[index]
    elements = vmap["data"].get("set") if isinstance(vmap["data"], dict) else None
    _need(isinstance(elements, list) and isinstance(total, int), f"chain {chain}: not an anonymous map")
    ranges = []
    for element in elements:  # type: ignore[union-attr]
        _need(isinstance(element, list) and len(element) == 2, f"chain {chain}: odd element")
        numbers, verdict = element
        if isinstance(numbers, dict) and set(numbers) == {"range"} and len(numbers["range"]) == 2:
            first, last = numbers["range"]
        else:
            first = last = numbers
        _need(isinstance(first, int) and isinstance(last, int) and first <= last, f"chain {chain}: odd range")
        ranges.append((first, last, _goto(verdict, f"chain {chain}")))
    ranges.sort()
    start = 0
    for first, last, _target in ranges:
        _need(first == start, f"chain {chain}: the ranges leave a gap or overlap at {start}")
        start = last + 1
    _need(start == total and total > 0, f"chain {chain}: the ranges do not cover mod {total}")
    return [(target, last - first + 1) for first, last, target in ranges]


def _collect(objects: list[Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[list[Any]]]]:
    maps: dict[str, Any] = {}
    chains: dict[str, Any] = {}
    rules: dict[str, list[list[Any]]] = {}
    for obj in objects:
        _need(isinstance(obj, dict) and len(obj) == 1, f"odd object {obj!r}")
        kind, body = next(iter(obj.items()))
        if kind == "metainfo":
            continue
        if kind == "table":
            _only_keys(body, ("family", "name", "handle"), "table")
            continue
        if kind == "map":
            maps[body["name"]] = body
        elif kind == "chain":
            chains[body["name"]] = body
            rules.setdefault(body["name"], [])
        elif kind == "rule":
            _only_keys(body, ("family", "table", "chain", "handle", "expr"), f"rule in {body.get('chain')}")
            rules.setdefault(body["chain"], []).append(body["expr"])
        else:
            raise _Shape(f"unexpected {kind} {body.get('name', '')}".strip())
    return maps, chains, rules


def _check_frame(maps: Mapping[str, Any], chains: Mapping[str, Any], rules: Mapping[str, list[list[Any]]]) -> None:
    _need(set(maps) == {m[0] for m in _MAPS.values()}, f"maps {sorted(maps)}")
    for name, key_type, _match in _MAPS.values():
        body = maps[name]
        _only_keys(body, ("family", "name", "table", "type", "handle", "map", "elem"), f"map {name}")
        _need(body.get("type") == [key_type, "inet_proto", "inet_service"], f"map {name}: type")
        _need(body.get("map") == "verdict", f"map {name}: not a verdict map")
    for name, hook in _BASE_CHAINS.items():
        _need(name in chains, f"no chain {name}")
        _need({k: chains[name].get(k) for k in hook} == hook, f"chain {name}: hook, type, priority or policy")
        _need(rules.get(name) == [[{"jump": {"target": "services"}}]], f"chain {name}: rules")
    _need("services" in chains, "no chain services")
    _need(rules.get("services") == [_services_rule(4), _services_rule(6)], "chain services: rules")
    for name, body in chains.items():
        _only_keys(
            body,
            ("family", "table", "name", "handle", *_BASE_CHAINS.get(name, ())),
            f"chain {name}",
        )


def _parse(data: Any) -> Table:
    _need(isinstance(data, dict) and isinstance(data.get("nftables"), list), "not nft's JSON")
    maps, chains, rules = _collect(data["nftables"])
    _check_frame(maps, chains, rules)
    by_service: dict[str, list[tuple[str, str, Endpoint]]] = {}  # "ep-PROTO-ADDRESS-PORT" -> its endpoint chains
    for name in chains:
        if name.startswith("ep-"):
            protocol, ep = _endpoint_of(rules[name], name)
            suffix = f"-{_name_part(ep.address)}-{ep.port}"
            _need(name.endswith(suffix), f"chain {name}: its name does not say where it goes")
            by_service.setdefault(name[: -len(suffix)], []).append((name, protocol, ep))
    table: Table = {}
    used: set[str] = set()
    for family, (map_name, _type, _match) in _MAPS.items():
        for element in maps[map_name].get("elem") or []:
            _need(isinstance(element, list) and len(element) == 2, f"map {map_name}: odd element")
            key, verdict = element
            parts = key.get("concat") if isinstance(key, dict) else None
            _need(isinstance(parts, list) and len(parts) == 3, f"map {map_name}: odd key")
            chain = _goto(verdict, f"map {map_name}")
            _need(chain in chains and chain.startswith("svc-") and chain not in used, f"map {map_name}: chain {chain}")
            used.add(chain)
            try:
                svc = Service(_protocol(parts[1]), parts[0], parts[2])  # type: ignore[index, arg-type]
            except ValueError as exc:
                raise _Shape(f"map {map_name}: {exc}") from None
            _need(svc.family == family and svc.chain == chain and svc.key not in table, f"map {map_name}: {chain}")
            picks = _picks(rules[chain], chain) or []
            weights = dict(picks)
            _need(len(weights) == len(picks), f"chain {chain}: an endpoint twice")
            members = []
            for ep_chain, protocol, ep in by_service.get("ep-" + chain[len("svc-") :], []):
                _need(protocol == svc.protocol and ep_chain == svc.endpoint_chain(ep), f"chain {ep_chain}: protocol")
                members.append(Endpoint(ep.address, ep.port, weights.pop(ep_chain, 0)))
                used.add(ep_chain)
            _need(not weights, f"chain {chain}: goes to unknown chains {sorted(weights)}")
            try:
                table[svc.key] = Service(svc.protocol, svc.address, svc.port, tuple(members))
            except ValueError as exc:
                raise _Shape(f"chain {chain}: {exc}") from None
    stray = set(chains) - used - set(_BASE_CHAINS) - {"services"}
    _need(not stray, f"chains nothing uses: {', '.join(sorted(stray))}")
    return table


@dataclass
class Live:
    """The kernel's table: absent, in k8router's shape (``table``), or not (``problem`` says why, ``text`` shows it)."""

    present: bool
    table: Table = field(default_factory=dict)
    problem: str | None = None
    text: str = ""


def parse_live(json_text: str) -> Live:
    """Read ``nft -j list table inet k8router_lb`` back into the model, strictly: anything this module would not
    render (a rule, chain, set, counter or comment added by hand, a changed priority) makes it a foreign shape."""
    try:
        return Live(True, _parse(json.loads(json_text)))
    except _Shape as exc:
        return Live(True, problem=str(exc))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return Live(True, problem=f"unreadable ({type(exc).__name__}: {exc})")


# --------------------------------------------------------------------------------------------------------------
# planning


def _describe(svc: Service) -> str:
    eps = ", ".join(f"{ep.text} weight {ep.weight}{' (drain)' if not ep.weight else ''}" for ep in svc.endpoints)
    if not svc.shares():
        return f"{eps}: rejects new connections" if eps else "no endpoint: rejects new connections"
    return eps


def changes(live: Live, desired: Mapping[ServiceKey, Service]) -> list[str]:
    """What replacing ``live`` with ``desired`` changes, per virtual service, for humans; [] when nothing."""
    if live.present and live.problem is None and live.table == desired:
        return []
    if not live.present:
        head = [f"create table {TABLE}"]
        before: Table = {}
    elif live.problem is not None:
        head = [f"replace table {TABLE}: it is not as k8router wrote it ({live.problem})"]
        before = {}
    else:
        head = []
        before = live.table
    lines = []
    for key in sorted(set(before) | set(desired), key=key_order):
        old, new = before.get(key), desired.get(key)
        if new is None and old is not None:
            lines.append(f"delete virtual service {old.name}")
        elif new is not None and old is None:
            lines.append(f"add virtual service {new.name} -> {_describe(new)}")
        elif new is not None and old is not None and old != new:
            lines.append(f"change virtual service {new.name}: {_describe(old)} -> {_describe(new)}")
    return head + lines


# --------------------------------------------------------------------------------------------------------------
# the driver


class NftDriver:
    """Reads k8router's table and replaces it with ``nft``, through injected runners (no shell)."""

    def __init__(self, runner: Runner, stdin_runner: StdinRunner | None, nft: str = "nft") -> None:
        self.runner = runner
        self.stdin_runner = stdin_runner
        self.nft = nft

    def current(self) -> Live:
        rc, out, err = self.runner([self.nft, "-j", "list", "table", FAMILY, NAME])
        if rc != 0:
            if "No such file or directory" in err and "list table" in err:
                return Live(False)
            raise NftError(f"{self.nft} -j list table {TABLE} failed (rc={rc}): {(err or out).strip()}")
        live = parse_live(out)
        if live.problem is not None:
            rc, text, err = self.runner([self.nft, "list", "table", FAMILY, NAME])
            live.text = text if rc == 0 else f"({self.nft} list table {TABLE} failed: {err.strip()})\n"
        return live

    def _load(self, argv: list[str], text: str) -> None:
        if self.stdin_runner is None:
            raise NftError("the nftables engine needs a runner that feeds nft's standard input")
        rc, out, err = self.stdin_runner(argv, text)
        if rc != 0:
            message = (err.strip() or out.strip() or f"rc={rc}").replace("\n", " | ")
            raise NftError(f"{' '.join(argv)} refused table {TABLE}: {message}")

    def check(self, text: str) -> None:
        """``nft -c -f -``: the kernel validates the transaction and nothing is applied."""
        self._load([self.nft, "-c", "-f", "-"], text)

    def apply(self, text: str) -> None:
        self._load([self.nft, "-f", "-"], text)

    def delete(self) -> None:
        """Delete k8router's table (another L4 engine took over); nothing else is named."""
        rc, out, err = self.runner([self.nft, "delete", "table", FAMILY, NAME])
        if rc != 0:
            message = (err.strip() or out.strip() or f"rc={rc}").replace("\n", " | ")
            raise NftError(f"{self.nft} delete table {TABLE} failed: {message}")


@dataclass
class NftPlan:
    """What one run does to k8router's table: ``operations`` (empty when the kernel already has it), the diff."""

    desired: Table
    live: Live
    operations: list[str]
    before: str
    after: str
    warnings: list[str]
    text: str


def plan(
    driver: NftDriver, virtuals: Iterable[Any], frozen: Iterable[str], owners: Mapping[str, Sequence[str]]
) -> NftPlan:
    """Read the kernel's table and compare it with the desired one; validate the transaction when it differs.

    Virtual services on ``frozen`` addresses (in conflict: nothing changes for them) keep what the kernel has.
    """
    desired, warnings = desired_table(virtuals, owners)
    live = driver.current()
    held = set(frozen)
    for key, svc in live.table.items():
        if key[1] in held:
            desired[key] = svc
    if held and live.problem is not None:
        warnings.append(
            f"table {TABLE} could not be read, so the addresses in conflict ({', '.join(sorted(held))}) are not served"
        )
    text = transaction(desired)
    operations = changes(live, desired)
    if live.problem is not None:
        before = live.text
    elif live.present:
        before = render(live.table)
    else:
        before = ""
    if operations:
        driver.check(text)
    return NftPlan(desired, live, operations, before, render(desired), warnings, text)
