# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure network helpers: addresses, networks, interface facts, BIRD names. No I/O."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Union

# module_utils may run on targets older than Python 3.10: no `X | Y` at run time.
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]  # noqa: UP007
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]  # noqa: UP007

_BIRD_BAD = re.compile(r"[^A-Za-z0-9_]")


def parse_address(value: object) -> IPAddress:
    """Return the IP address in ``value`` or raise ValueError naming it."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IP address")
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


@functools.lru_cache(maxsize=65536)
def _compressed(text: str) -> str:
    if "%" in text:  # no scoped IPv6 ("fe80::1%eth0"): ipaddress keeps any text after the "%"
        raise ValueError("scoped address")
    return ipaddress.ip_address(text.strip()).compressed


def checked_address(value: object, what: str) -> str:
    """``value`` as a compressed IP address without a scope, or ValueError naming ``what``.

    The one check of an address before it reaches a kernel tool (``ipvsadm``, ``nft``) or haproxy.
    """
    if not isinstance(value, str):
        raise ValueError(f"{what}: {value!r} is not an IP address")
    try:
        return _compressed(value)
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not an IP address") from None


def checked_integer(value: object, low: int, high: int, what: str) -> int:
    """``value`` if it is an integer (not a bool) in ``low..high``, or ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what}: {value!r} is not an integer in {low}..{high}")
    return value


def host_port(address: str, port: int) -> str:
    """``address:port``, an IPv6 address in brackets: ``10.0.0.1:80``, ``[2001:db8::1]:80``."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def parse_network(value: object) -> IPNetwork:
    """Return the network in ``value`` (a CIDR with no host bits set) or raise ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a CIDR")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise ValueError(f"{value!r} has host bits set") from None
        raise ValueError(f"{value!r} is not a CIDR") from None


def interface_networks(facts: Mapping[str, Any]) -> list[str]:
    """Networks of every configured interface address in Ansible's gathered facts.

    ``facts`` is ``ansible_facts``: ``interfaces`` names the interfaces, each one's facts sit
    under its name (``-`` replaced by ``_``) with ``ipv4``, ``ipv4_secondaries`` and ``ipv6``.
    Loopback, link-local and single-address networks (VIPs already held) are left out: they
    say nothing about where a VIP may live.
    """
    found: list[str] = []
    for name in facts.get("interfaces", []):
        iface = facts.get(str(name).replace("-", "_"), {})
        if not isinstance(iface, Mapping):
            continue
        entries: list[Mapping[str, Any]] = []
        v4 = iface.get("ipv4")
        if isinstance(v4, Mapping):
            entries.append(v4)
        elif isinstance(v4, list):
            entries.extend(e for e in v4 if isinstance(e, Mapping))
        entries.extend(e for e in iface.get("ipv4_secondaries", []) if isinstance(e, Mapping))
        entries.extend(e for e in iface.get("ipv6", []) if isinstance(e, Mapping))
        for entry in entries:
            address = entry.get("address")
            mask = entry.get("netmask") or entry.get("prefix")
            if not address or mask is None:
                continue
            try:
                net = ipaddress.ip_interface(f"{address}/{mask}").network
            except ValueError:
                continue
            if net.is_loopback or net.is_link_local or net.num_addresses == 1:
                continue
            text = str(net)
            if text not in found:
                found.append(text)
    return found


def bird_name(*parts: object) -> str:
    """A BIRD identifier built from ``parts`` (letters, digits and ``_`` only, never a leading digit)."""
    text = "_".join(_BIRD_BAD.sub("_", str(p)) for p in parts if str(p))
    if not text or text[0].isdigit():
        text = "p_" + text
    return text


def pool_addresses(entries: list[str], limit: int = 4096) -> list[str]:
    """Every address of a load-balancer pool given as addresses and CIDRs (network and broadcast
    addresses of IPv4 networks larger than /31 left out), in order, without repeats.

    Raises ValueError for an entry that is neither, or when the pool holds more than ``limit``.
    """
    found: dict[str, None] = {}
    for entry in entries:
        net = parse_network(entry if "/" in entry else f"{parse_address(entry)}/{32 if ':' not in entry else 128}")
        hosts = net.hosts() if net.version == 4 and net.prefixlen < 31 else iter(net)
        for address in hosts:
            found[str(address)] = None
            if len(found) > limit:
                raise ValueError(f"the pool holds more than {limit} addresses")
    return list(found)
