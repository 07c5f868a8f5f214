# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the router role: thin wrappers around ``module_utils._net``, ``_routerset`` and ``_credentials``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.k8router.edge.plugins.module_utils._credentials import token_expiry, without_token
from ansible_collections.k8router.edge.plugins.module_utils._layout import haproxy_files
from ansible_collections.k8router.edge.plugins.module_utils._net import bird_name, interface_networks, pool_addresses
from ansible_collections.k8router.edge.plugins.module_utils._routerset import (
    INVENTORY_FIELDS,
    resolve_clusters,
    router_set_errors,
)
from ansible_collections.k8router.edge.plugins.plugin_utils._converge_params import (
    ConvergeParamsError,
    converge_params,
)

# Host variables naming a node's address, most specific first.
ADDRESS_VARS = ("k8router_node_ip", "ansible_host")
INVENTORY_VARS = tuple(f"k8router_cluster_{f}" for f in INVENTORY_FIELDS)


def _resolve_clusters(
    clusters: Sequence[Mapping[str, Any]], groups: Mapping[str, Sequence[str]], hostvars: Mapping[str, Any]
) -> list[dict[str, Any]]:
    addresses: dict[str, object] = {}
    for hosts in groups.values():
        for host in hosts:
            if host in addresses or host not in hostvars:
                continue
            hvars = hostvars[host]
            addresses[host] = next((hvars.get(v) for v in ADDRESS_VARS if hvars.get(v)), None)
    # The variables of each cluster's group, as any of its hosts sees them.
    inventory_vars: dict[str, Mapping[str, Any]] = {}
    for cluster in clusters:
        name = str(cluster.get("name", ""))
        members = groups.get(name.replace("-", "_"), [])
        if members and members[0] in hostvars:
            hvars = hostvars[members[0]]
            inventory_vars[name] = {k: hvars[k] for k in INVENTORY_VARS if k in hvars}
    return resolve_clusters(clusters, groups, addresses, inventory_vars)


def _converge_params(clusters: Sequence[Mapping[str, Any]], **kwargs: Any) -> dict[str, Any]:
    try:
        return converge_params(clusters, **kwargs)
    except ConvergeParamsError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """Router role filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "resolve_clusters": _resolve_clusters,
            "router_set_errors": router_set_errors,
            "interface_networks": interface_networks,
            "bird_name": bird_name,
            "pool_addresses": pool_addresses,
            "token_expiry": token_expiry,
            "kubeconfig_without_token": without_token,
            "haproxy_files": haproxy_files,
            "converge_params": _converge_params,
        }
