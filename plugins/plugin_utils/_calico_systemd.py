# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure core of the ``calico_systemd`` role: environment, units, Calico resources and checks.

No I/O. The filters in ``plugins/filter/calico_systemd.py`` hand these functions the role's variables.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
CALICO_API_VERSION = "crd.projectcalico.org/v1"
AS_MAX = 4294967295
# Environment variables that the calico-node image derives from others (its felix run script exports them),
# so that nobody keeps them by hand: alias -> source.
DERIVED_ENV = {"FELIX_FELIXHOSTNAME": "NODENAME", "FELIX_DATASTORETYPE": "DATASTORE_TYPE"}
# Unit fields naming other units.
UNIT_REFS = ("after", "before", "requires", "wants", "binds_to", "part_of")


class CalicoConfigError(ValueError):
    """A role variable is malformed; the message names it."""


# ---------------------------------------------------------------------------------------------------------------
# environment


def _env_value(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        text = str(value)
    else:
        raise CalicoConfigError(f"calico_systemd_environment.{name}: must be a string, number or boolean")
    if "\n" in text or "\r" in text or "\0" in text:
        raise CalicoConfigError(f"calico_systemd_environment.{name}: must be one line")
    return text


def calico_environment(base: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The calico-node container's environment: ``base`` updated by ``overrides``, aliases derived.

    A key set to ``None`` in ``overrides`` removes it. ``FELIX_FELIXHOSTNAME`` and ``FELIX_DATASTORETYPE`` follow
    ``NODENAME`` and ``DATASTORE_TYPE`` (as the image's felix run script makes them) unless given explicitly.
    """
    merged: dict[str, Any] = dict(base)
    for name, value in (overrides or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    env: dict[str, str] = {}
    for name, value in merged.items():
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise CalicoConfigError(f"calico_systemd_environment: {name!r} is not a variable name")
        if value is None:
            continue
        env[name] = _env_value(name, value)
    for alias, source in DERIVED_ENV.items():
        if alias not in env and source in env:
            env[alias] = env[source]
    return dict(sorted(env.items()))


def systemd_quote(value: str) -> str:
    """Quote ``value`` for a systemd ``EnvironmentFile`` (double quotes; backslash escapes ``\\ " $ ` ``)."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise CalicoConfigError(f"environment value {value!r} must be one line")
    escaped = "".join("\\" + ch if ch in '\\"$`' else ch for ch in value)
    return f'"{escaped}"'


def environment_file(env: Mapping[str, Any]) -> str:
    """The text of a systemd ``EnvironmentFile``: one ``NAME="value"`` line per variable, sorted by name."""
    lines = []
    for name in sorted(env):
        if not ENV_NAME.match(str(name)):
            raise CalicoConfigError(f"environment: {name!r} is not a variable name")
        lines.append(f"{name}={systemd_quote(_env_value(str(name), env[name]))}")
    return "\n".join(lines) + ("\n" if lines else "")


# ---------------------------------------------------------------------------------------------------------------
# units


def _unit_file(name: str) -> str:
    return name if "." in name else f"{name}.service"


def calico_units(units: Sequence[Mapping[str, Any]], disabled: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The role's units less ``disabled`` (and less those that ``needs`` one of them), references to left-out
    units dropped.

    Every unit gets ``file`` (``<name>.service``), and ``enabled``/``start``: a unit with ``started_by`` naming
    an active unit (BIRD, which the API watchdog starts and stops) is neither enabled nor started by the role;
    without that unit it is wanted by ``multi-user.target`` like the others. ``binaries`` lists the binaries the
    active units run.
    """
    names = [str(u["name"]) for u in units]
    if len(set(names)) != len(names):
        raise CalicoConfigError(f"calico_systemd units: duplicate names in {names}")
    off = set(disabled)
    unknown = sorted(off - set(names))
    if unknown:
        raise CalicoConfigError(f"calico_systemd_units_disabled: no such unit {', '.join(unknown)} (units: {names})")
    # A unit that needs a left-out unit is left out too (the felix probe without felix).
    while True:
        more = {str(u["name"]) for u in units if u["name"] not in off and off.intersection(u.get("needs", []))}
        if not more:
            break
        off |= more
    active = [u for u in units if u["name"] not in off]
    active_names = {str(u["name"]) for u in active}
    left_out = {_unit_file(n) for n in off}
    result: list[dict[str, Any]] = []
    for unit in active:
        item = dict(unit)
        for ref in UNIT_REFS:
            item[ref] = [_unit_file(str(r)) for r in unit.get(ref, []) if _unit_file(str(r)) not in left_out]
        owner = unit.get("started_by")
        owned = bool(owner) and owner in active_names
        item["file"] = _unit_file(str(unit["name"]))
        item["enabled"] = not owned and bool(unit.get("enabled", True))
        item["start"] = not owned
        item["wanted_by"] = ["multi-user.target"] if item["enabled"] else []
        result.append(item)
    return result


def unit_binaries(units: Sequence[Mapping[str, Any]]) -> list[str]:
    """The binaries (by name) the given units run, in first-use order."""
    seen: dict[str, None] = {}
    for unit in units:
        for name in unit.get("binaries", []):
            seen[str(name)] = None
    return list(seen)


# ---------------------------------------------------------------------------------------------------------------
# Calico resources


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


ROUTER_SET_LABEL = "k8router.edge/router-set"
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def stale_peers(existing: Sequence[Mapping[str, Any]], desired: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the BGPPeers of this router set (by label) that ``desired`` no longer has."""
    wanted = {d["metadata"]["name"] for d in desired if d.get("kind") == "BGPPeer"}
    return sorted(str(p["metadata"]["name"]) for p in existing if p.get("metadata", {}).get("name") not in wanted)


def calico_resources(
    *,
    as_number: int,
    peers: Sequence[Mapping[str, Any]],
    pod_cidrs: Sequence[str],
    service_cidrs: Sequence[str],
    loadbalancer_cidrs: Sequence[str] = (),
    block_size: int = 26,
    block_size_v6: int = 122,
    node_selector: str = "all()",
    name_prefix: str = "k8router",
    router_set: str = "routers",
) -> list[dict[str, Any]]:
    """BGPConfiguration ``default``, one BGPPeer per router, one IPPool per pod CIDR (``crd.projectcalico.org``).

    The BGPPeers carry the router set's name in the label ROUTER_SET_LABEL, so the peers of routers that left
    the set can be found and pruned (and nobody else's).

    The node-to-node mesh is off (the routers reflect routes), service cluster IPs and load-balancer IPs are
    advertised, and the pools neither encapsulate nor NAT outgoing traffic: pod addresses are routed as they are.
    """
    if not _LABEL_VALUE.fullmatch(router_set):
        raise ValueError(f"router_set {router_set!r} is not a label value (63 characters: letters, digits, -_.)")
    bgp_spec: dict[str, Any] = {
        "logSeverityScreen": "Info",
        "nodeToNodeMeshEnabled": False,
        "asNumber": int(as_number),
        "serviceClusterIPs": [{"cidr": str(ipaddress.ip_network(c))} for c in service_cidrs],
    }
    if loadbalancer_cidrs:
        bgp_spec["serviceLoadBalancerIPs"] = [{"cidr": str(ipaddress.ip_network(c))} for c in loadbalancer_cidrs]
    resources: list[dict[str, Any]] = [
        {
            "apiVersion": CALICO_API_VERSION,
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": bgp_spec,
        }
    ]
    for peer in peers:
        address = ipaddress.ip_address(str(peer["address"]))
        spec: dict[str, Any] = {"peerIP": str(address), "asNumber": int(peer.get("as_number") or as_number)}
        if peer.get("node_selector"):
            spec["nodeSelector"] = str(peer["node_selector"])
        name = str(peer.get("name") or f"{name_prefix}-{_slug(str(address))}")
        meta = {"name": name, "labels": {ROUTER_SET_LABEL: router_set}}
        resources.append({"apiVersion": CALICO_API_VERSION, "kind": "BGPPeer", "metadata": meta, "spec": spec})
    for cidr in pod_cidrs:
        net = ipaddress.ip_network(cidr)
        resources.append(
            {
                "apiVersion": CALICO_API_VERSION,
                "kind": "IPPool",
                "metadata": {"name": f"{name_prefix}-{_slug(str(net))}"},
                "spec": {
                    "cidr": str(net),
                    "blockSize": block_size if net.version == 4 else block_size_v6,
                    "ipipMode": "Never",
                    "vxlanMode": "Never",
                    "natOutgoing": False,
                    "disabled": False,
                    "nodeSelector": node_selector,
                },
            }
        )
    return resources


# ---------------------------------------------------------------------------------------------------------------
# cross-field checks


def _networks(var: str, values: object, errors: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    if not isinstance(values, list | tuple):
        errors.append(f"{var}: must be a list of CIDRs")
        return []
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(str(value), strict=True))
        except ValueError:
            errors.append(f"{var}: {value!r} is not a network address in CIDR form (host bits set?)")
    return nets


def _address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        return None


P = "calico_systemd_"


def _identity_errors(config: Mapping[str, Any]) -> list[str]:
    errors = []
    nodename = str(config.get("nodename") or "")
    if not DNS_SUBDOMAIN.match(nodename):
        errors.append(f"{P}nodename: {nodename!r} is not a Kubernetes node name (a lower-case DNS subdomain)")
    if not str(config.get("api_host") or ""):
        errors.append(f"{P}api_host: must name the Kubernetes API (address or host name of the API VIP)")
    port = config.get("api_port")
    if not isinstance(port, int) or not 0 < port < 65536:
        errors.append(f"{P}api_port: {port!r} is not a TCP port")
    if "BEGIN CERTIFICATE" not in str(config.get("ca_cert") or ""):
        errors.append(f"{P}ca_cert: must be the PEM of the cluster CA")
    if not str(config.get("token") or "").strip():
        errors.append(f"{P}token: must be calico-node's service-account token")
    return errors


def _network_errors(config: Mapping[str, Any]) -> list[str]:
    errors: list[str] = []
    as_number = config.get("bgp_as")
    if not isinstance(as_number, int) or isinstance(as_number, bool) or not 0 < as_number <= AS_MAX:
        errors.append(f"{P}bgp_as: {as_number!r} is not an AS number (1-{AS_MAX})")
    pods = _networks(f"{P}pod_cidrs", config.get("pod_cidrs", []), errors)
    services = _networks(f"{P}service_cidrs", config.get("service_cidrs", []), errors)
    lbs = _networks(f"{P}service_loadbalancer_cidrs", config.get("service_loadbalancer_cidrs", []), errors)
    if config.get("resources", True) and not pods:
        errors.append(f"{P}pod_cidrs: needs at least one CIDR for the IP pools")
    if config.get("resources", True) and not services:
        errors.append(f"{P}service_cidrs: needs at least one CIDR to advertise")
    named = [(f"{P}pod_cidrs", n) for n in pods]
    named += [(f"{P}service_cidrs", n) for n in services]
    named += [(f"{P}service_loadbalancer_cidrs", n) for n in lbs]
    for i, (var_a, a) in enumerate(named):
        for var_b, b in named[i + 1 :]:
            if a.version == b.version and a.overlaps(b):
                errors.append(f"{var_a} {a} overlaps {var_b} {b}")
    block = config.get("ippool_block_size", 26)
    for net in pods:
        if net.version == 4 and isinstance(block, int) and not net.prefixlen <= block <= 32:
            errors.append(f"{P}ippool_block_size: {block} does not fit {P}pod_cidrs {net} (needs /{net.prefixlen}-/32)")
    return errors


def _peer_errors(config: Mapping[str, Any]) -> list[str]:
    errors = []
    peers = config.get("bgp_peers", [])
    if config.get("resources", True) and not peers:
        errors.append(f"{P}bgp_peers: no routers to peer with (none given and the router group has no addresses)")
    seen: set[str] = set()
    for i, peer in enumerate(peers if isinstance(peers, list) else []):
        address = _address(peer.get("address") if isinstance(peer, Mapping) else None)
        if address is None:
            errors.append(f"{P}bgp_peers[{i}].address: {peer!r} has no IP address")
            continue
        if str(address) in seen:
            errors.append(f"{P}bgp_peers[{i}].address: {address} is listed twice")
        seen.add(str(address))
        peer_as = peer.get("as_number")
        if peer_as is not None and (not isinstance(peer_as, int) or not 0 < peer_as <= AS_MAX):
            errors.append(f"{P}bgp_peers[{i}].as_number: {peer_as!r} is not an AS number")
        name = peer.get("name")
        if name is not None and not DNS_SUBDOMAIN.match(str(name)):
            errors.append(f"{P}bgp_peers[{i}].name: {name!r} is not a resource name")
    return errors


def _unit_errors(config: Mapping[str, Any]) -> list[str]:
    errors = []
    units = config.get("units", [])
    active = {str(u["name"]) for u in units}
    given = set(config.get("binaries", []))
    for name in unit_binaries(units):
        if name not in given:
            users = ", ".join(str(u["name"]) for u in units if name in u.get("binaries", []))
            errors.append(f"{P}binaries: no entry for {name} (run by {users})")
    for i, item in enumerate(config.get("binary_entries", [])):
        has_src = bool(item.get("src"))
        has_url = bool(item.get("url"))
        if has_src == has_url:
            errors.append(f"{P}binaries[{i}] ({item.get('name')}): give either src or url")
        if has_url and not item.get("checksum"):
            errors.append(f"{P}binaries[{i}] ({item.get('name')}): a url needs a checksum")
    if "calico-confd" in active and not config.get("confd_src"):
        errors.append(
            f"{P}confd_src: calico-confd needs confd's conf.d/ and templates/ (a directory on the controller)"
        )
    timeout = config.get("api_watchdog_timeout", 0)
    period = config.get("api_watchdog_period", 5)
    if "calico-api-watchdog" in active:
        if not isinstance(period, int) or period < 1:
            errors.append(f"{P}api_watchdog_period: {period!r} must be at least 1 second")
        elif not isinstance(timeout, int) or timeout < period:
            errors.append(f"{P}api_watchdog_timeout: {timeout!r} must be at least {P}api_watchdog_period ({period})")
    return errors


def calico_systemd_errors(config: Mapping[str, Any]) -> list[str]:
    """Every problem of the role's variables taken together, each naming the variable at fault.

    ``config`` holds the role variables without their ``calico_systemd_`` prefix, plus ``units`` (the active
    units, as :func:`calico_units` returns them), ``binaries`` (the names of the binaries given) and
    ``binary_entries`` (the entries of ``calico_systemd_binaries``).
    """
    return _identity_errors(config) + _network_errors(config) + _peer_errors(config) + _unit_errors(config)
