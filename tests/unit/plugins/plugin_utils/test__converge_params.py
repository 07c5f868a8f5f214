# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The periodic run's parameters, derived from the router set's description."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.k8router.edge.plugins.module_utils._args import options_from_params
from ansible_collections.k8router.edge.plugins.module_utils._layout import HAPROXY_DEFAULTS
from ansible_collections.k8router.edge.plugins.plugin_utils._converge_params import ConvergeParamsError, converge_params

CLUSTERS: list[dict[str, Any]] = [
    # what the router role needs too (BGP, API, CA) and what the run needs
    {"name": "alpha", "api_vip": "192.0.2.250", "bgp_as": 64512, "bgp_password": "s3cret", "ca_cert": "PEM",
     "kubeconfig": "pki/alpha.kubeconfig",
     "k8router": {"weight": 10, "ingress_classes": ["nginx", "public"], "load_balancer_classes": ["alpha-lb"]}},
    {"name": "beta", "kubeconfig": "pki/beta.kubeconfig",
     "k8router": {"state": "drain", "allowed_hosts": ["*.beta.example"],
                  "health_check": {"type": "http", "port": 10254}}},
]  # fmt: skip


def derive(**kwargs: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"config_dir": "/etc/k8router/", "haproxy": HAPROXY_DEFAULTS}
    return converge_params(CLUSTERS, **{**base, **kwargs})


def test_every_cluster_once_with_its_kubeconfig_on_the_router_and_nothing_of_the_router_role() -> None:
    params = derive()
    assert params["clusters"] == [
        {"name": "alpha", "kubeconfig": "/etc/k8router/kubeconfig/alpha", "weight": 10,
         "ingress_classes": ["nginx", "public"], "load_balancer_classes": ["alpha-lb"]},
        {"name": "beta", "kubeconfig": "/etc/k8router/kubeconfig/beta", "state": "drain",
         "allowed_hosts": ["*.beta.example"], "health_check": {"type": "http", "port": 10254}},
    ]  # fmt: skip
    assert "s3cret" not in repr(params)
    assert params["haproxy"] == HAPROXY_DEFAULTS
    assert "load_balancer" not in params
    assert "certificate_dir" not in params


def test_the_pool_and_the_options_reach_the_module_and_make_valid_options() -> None:
    params = derive(
        lb_pool=["192.0.2.240/29"],
        load_balancer={"write_status": True, "classes": ["k8router.edge/lb"]},
        options={"max_age": 7200, "backend_tls": True, "credentials": {"renew_before": 3600}},
        certificates=True,
    )
    assert params["load_balancer"] == {
        "pool": ["192.0.2.240/29"], "write_status": True, "classes": ["k8router.edge/lb"]
    }  # fmt: skip
    assert params["certificate_dir"] == "/etc/k8router/certificates"
    assert params["max_age"] == 7200
    # what the module makes of them, after its own argument spec filled the defaults
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: PLC0415

    from ansible_collections.k8router.edge.plugins.module_utils._args import CONVERGE_ARGS  # noqa: PLC0415

    validated = ArgumentSpecValidator(CONVERGE_ARGS).validate({**params, "certificate_dir": None})
    assert not validated.error_messages
    opts = options_from_params(validated.validated_parameters)
    assert [cluster[1].weight for cluster in opts.clusters] == [10, 100]
    # alpha serves its own load-balancer classes, beta (none of its own) the set's
    assert [cluster[1].load_balancer_classes for cluster in opts.clusters] == [("alpha-lb",), None]
    assert opts.load_balancer.classes == ("k8router.edge/lb",)
    assert opts.load_balancer.write_status
    assert opts.max_age == 7200


@pytest.mark.parametrize(
    ("kwargs", "clusters", "message"),
    [
        ({}, [{"name": "alpha", "kubeconfig": "k", "k8router": {"wieght": 5}}], r"router_clusters\[alpha\].k8router: unknown option\(s\) wieght"),
        ({}, [{"name": "alpha", "kubeconfig": "k", "k8router": {"weight": "lots"}}], r"weight"),
        ({}, [{"name": "alpha", "kubeconfig": "k", "k8router": {"state": "gone"}}], r"state"),
        ({}, [{"name": "alpha", "kubeconfig": "k", "k8router": {"load_balancer_classes": {"edge": 1}}}], r"load_balancer_classes"),
        ({}, [{"name": "alpha", "kubeconfig": "k", "k8router": []}], r"router_clusters\[alpha\].k8router: a mapping"),
        ({}, [{"kubeconfig": "k"}], r"an entry without a name"),
        ({"options": {"clusters": []}}, CLUSTERS, r"converge_options: clusters are derived"),
        ({"options": {"max_agee": 1}}, CLUSTERS, r"max_agee"),
        ({"load_balancer": {"pool": ["192.0.2.1"]}, "lb_pool": ["192.0.2.1"]}, CLUSTERS, r"converge_load_balancer.pool"),
        ({"load_balancer": {"write_status": True}}, CLUSTERS, r"router_lb_pool is empty"),
    ],
)  # fmt: skip
def test_a_wrong_description_fails_naming_the_variable(
    kwargs: dict[str, Any], clusters: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ConvergeParamsError, match=message):
        converge_params(clusters, config_dir="/etc/k8router", haproxy=HAPROXY_DEFAULTS, **kwargs)
