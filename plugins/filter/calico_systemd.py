# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the calico_systemd role: thin wrappers around ``plugin_utils._calico_systemd``."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.k8router.edge.plugins.module_utils._credentials import jwt_expiry
from ansible_collections.k8router.edge.plugins.plugin_utils._calico_systemd import (
    CalicoConfigError,
    calico_environment,
    calico_resources,
    calico_systemd_errors,
    calico_units,
    environment_file,
    stale_peers,
    unit_binaries,
)

# Host variables naming a router's BGP address, most specific first.
ROUTER_ADDRESS_VARS = ("router_address", "k8router_node_ip", "ansible_host")


def _router_peers(hosts: Sequence[str], hostvars: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One BGP peer per router host: the first of its ROUTER_ADDRESS_VARS that is an IP address."""
    peers = []
    for host in hosts:
        hvars = hostvars.get(host) or {}
        for var in ROUTER_ADDRESS_VARS:
            value = hvars.get(var)
            try:
                peers.append({"address": str(ipaddress.ip_address(str(value)))})
            except ValueError:
                continue
            break
    return peers


def _environment(base: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    try:
        return calico_environment(base, overrides)
    except CalicoConfigError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def _environment_file(env: Mapping[str, Any]) -> str:
    try:
        return environment_file(env)
    except CalicoConfigError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def systemd_show(text: str) -> list[dict[str, str]]:
    """The blocks of ``systemctl show --property=...`` for several units, in the order the units were named: one
    mapping of property to value a unit (a unit systemd does not know has empty values)."""
    blocks = text.strip("\n").split("\n\n") if text.strip() else []
    return [dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line) for block in blocks]


def _units(units: Sequence[Mapping[str, Any]], disabled: Iterable[str] = ()) -> list[dict[str, Any]]:
    try:
        return calico_units(units, disabled)
    except CalicoConfigError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def _resources(as_number: int, **kwargs: Any) -> list[dict[str, Any]]:
    try:
        return calico_resources(as_number=int(as_number), **kwargs)
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"calico_resources: {exc}") from exc


class FilterModule:
    """calico_systemd role filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "calico_environment": _environment,
            "systemd_environment_file": _environment_file,
            "systemd_show": systemd_show,
            "calico_units": _units,
            "calico_unit_binaries": unit_binaries,
            "calico_resources": _resources,
            "calico_stale_peers": stale_peers,
            "calico_router_peers": _router_peers,
            "calico_systemd_errors": calico_systemd_errors,
            "jwt_expiry": jwt_expiry,
        }
