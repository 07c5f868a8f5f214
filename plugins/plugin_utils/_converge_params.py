# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The parameters of the periodic k8router run, derived from the one description of the router set.

Each cluster is described once, in ``router_clusters`` (BGP, API and CA for the router role; its
``kubeconfig`` and the module's per-cluster options under ``k8router`` for the run); the router set
once (its haproxy paths, its load-balancer pool, its ``load_balancer`` settings). The converge role
writes what ``converge_params`` makes of them to the router, and ``playbooks/converge.yml`` passes
every one of them to the module. The result is checked against the module's own argument spec, so
a typo or a wrong type fails on the controller, naming the variable, before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.k8router.edge.plugins.module_utils._args import CONVERGE_ARGS

# What the converge role works out itself; converge_options may not set these.
DERIVED = ("clusters", "certificate_dir", "haproxy", "load_balancer")
# Keys of a router_clusters entry's ``k8router`` mapping: the module's cluster options but the two the role sets.
CLUSTER_OPTIONS = tuple(k for k in CONVERGE_ARGS["clusters"]["options"] if k not in ("name", "kubeconfig"))


class ConvergeParamsError(ValueError):
    """The router set's description does not make valid parameters of the run."""


def _cluster(entry: Mapping[str, Any], config_dir: str) -> dict[str, Any]:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ConvergeParamsError(f"router_clusters: an entry without a name: {sorted(entry)}")
    options = entry.get("k8router")
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise ConvergeParamsError(f"router_clusters[{name}].k8router: a mapping, not {type(options).__name__}")
    unknown = sorted(set(options) - set(CLUSTER_OPTIONS))
    if unknown:
        raise ConvergeParamsError(
            f"router_clusters[{name}].k8router: unknown option(s) {', '.join(unknown)}"
            f" (known: {', '.join(CLUSTER_OPTIONS)})"
        )
    return {"name": name, "kubeconfig": f"{config_dir}/kubeconfig/{name}", **options}


def converge_params(
    clusters: Sequence[Mapping[str, Any]],
    *,
    config_dir: str,
    haproxy: Mapping[str, str],
    lb_pool: Sequence[str] = (),
    load_balancer: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    certificates: bool = False,
) -> dict[str, Any]:
    """The k8router module's parameters for the run on a router.

    ``clusters`` are the router set's clusters (router_clusters), ``config_dir`` where the role puts
    their kubeconfigs and certificates on the router, ``haproxy`` the role's haproxy paths, ``lb_pool``
    the addresses keepalived floats for LoadBalancer services (no L4 when empty), ``load_balancer``
    the module's other ``load_balancer`` options, ``options`` any other module option, and
    ``certificates`` whether the role ships certificates (then the run serves the directory).
    """
    options = dict(options or {})
    taken = sorted(set(options) & set(DERIVED))
    if taken:
        raise ConvergeParamsError(
            f"converge_options: {', '.join(taken)} are derived (router_clusters, the router_haproxy_* paths, "
            "router_lb_pool with converge_load_balancer, converge_certificates); set them there"
        )
    config_dir = config_dir.rstrip("/")
    params: dict[str, Any] = {
        **options,
        "clusters": [_cluster(entry, config_dir) for entry in clusters],
        "haproxy": dict(haproxy),
    }
    if certificates:
        params["certificate_dir"] = f"{config_dir}/certificates"
    lb = dict(load_balancer or {})
    if "pool" in lb:
        raise ConvergeParamsError("converge_load_balancer.pool: the pool is router_lb_pool (keepalived floats it)")
    if lb_pool:
        params["load_balancer"] = {"pool": list(lb_pool), **lb}
    elif lb:
        raise ConvergeParamsError("converge_load_balancer is set but router_lb_pool is empty")
    result = ArgumentSpecValidator(CONVERGE_ARGS).validate(params)
    if result.error_messages:
        raise ConvergeParamsError("the parameters of the periodic run: " + "; ".join(result.error_messages))
    return params
