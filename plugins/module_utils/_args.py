# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs of k8router and k8router_info, and their translation into the engine's Options."""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from typing import Any

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.k8router.edge.plugins.module_utils._layout import HAPROXY_DEFAULTS

IMPORT_ERRORS: dict[str, str | None] = {}
for _lib in ("kubernetes", "cryptography"):
    try:
        __import__(_lib)
        IMPORT_ERRORS[_lib] = None
    except ImportError:
        IMPORT_ERRORS[_lib] = traceback.format_exc()


def missing_libraries() -> list[tuple[str, str]]:
    """(message, traceback) for each Python library the modules need and the target lacks."""
    return [(missing_required_lib(lib), error) for lib, error in IMPORT_ERRORS.items() if error]


_CERT = {"cert": {"type": "path", "required": True}, "key": {"type": "path"}}

CLUSTER_ARGS: dict[str, Any] = {
    "clusters": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "name": {"type": "str", "required": True},
            "kubeconfig": {"type": "path", "required": True},
            "context": {"type": "str"},
            "ingress_controller": {
                "type": "dict",
                "default": {},
                "options": {
                    "namespace": {"type": "str", "default": "ingress-nginx"},
                    "service": {"type": "str", "default": "ingress-nginx-controller"},
                    "port": {"type": "str", "default": "http"},
                },
            },
            "ingress_classes": {"type": "list", "elements": "str", "default": ["nginx"]},
            "weight": {"type": "int", "default": 100},
            "health_check": {
                "type": "dict",
                "default": {},
                "options": {
                    "type": {"type": "str", "choices": ["tcp", "http"], "default": "tcp"},
                    "path": {"type": "str", "default": "/healthz"},
                    "port": {"type": "int"},
                    "status": {"type": "int", "default": 200},
                    "interval": {"type": "int", "default": 2000},
                    "fall": {"type": "int", "default": 2},
                    "rise": {"type": "int", "default": 2},
                },
            },
            "state": {"type": "str", "choices": ["active", "drain", "offline"], "default": "active"},
            "allowed_hosts": {"type": "list", "elements": "str"},
            "load_balancer_classes": {"type": "list", "elements": "str"},
        },
    },
    "request_timeout": {"type": "float", "default": 10},
    "state_dir": {"type": "path", "default": "/var/lib/k8router"},
    "max_age": {"type": "int", "default": 3600},
}

CONVERGE_ARGS: dict[str, Any] = {
    **CLUSTER_ARGS,
    "certificates": {"type": "list", "elements": "dict", "default": [], "options": _CERT},
    "certificate_dir": {"type": "path"},
    "default_certificate": {"type": "dict", "options": _CERT},
    "expiry_warning_days": {"type": "int", "default": 21},
    "backend_tls": {"type": "bool", "default": False},
    "backend_ca_file": {"type": "path"},
    "haproxy": {
        "type": "dict",
        "default": {},
        "options": {
            **{key: {"type": "path", "default": path} for key, path in HAPROXY_DEFAULTS.items()},
            "binary": {"type": "str", "default": "haproxy"},
            "reload_command": {"type": "list", "elements": "str", "default": ["systemctl", "reload", "haproxy"]},
        },
    },
    "lock_timeout": {"type": "float", "default": 30},
    "credentials": {
        "type": "dict",
        "default": {},
        "options": {
            "renew": {"type": "bool", "default": True},
            "lifetime": {"type": "int", "default": 604800},
            "renew_before": {"type": "int", "default": 172800},
            "warn_before": {"type": "int", "default": 86400},
        },
    },
    "state": {"type": "str", "choices": ["present", "rendered"], "default": "present"},
    "load_balancer": {
        "type": "dict",
        "options": {
            "pool": {"type": "list", "elements": "str", "required": True},
            "classes": {"type": "list", "elements": "str", "default": []},
            "include_unclassed": {"type": "bool", "default": False},
            "write_status": {"type": "bool", "default": False},
            "schedulers": {"type": "list", "elements": "str", "default": ["rr", "wrr", "lc", "wlc", "sh", "mh"]},
            "default_scheduler": {"type": "str", "default": "wrr"},
            "ipvsadm": {"type": "str", "default": "ipvsadm"},
            "engine": {"type": "str", "choices": ["ipvs", "nftables"], "default": "ipvs"},
            "nft": {"type": "str", "default": "nft"},
        },
    },
}

INFO_ARGS: dict[str, Any] = {
    **CLUSTER_ARGS,
    "certificates": CONVERGE_ARGS["certificates"],
    "certificate_dir": CONVERGE_ARGS["certificate_dir"],
    "expiry_warning_days": CONVERGE_ARGS["expiry_warning_days"],
}


def options_from_params(params: Mapping[str, Any]) -> Any:
    """The engine's Options from the validated module parameters (raises K8RouterError on bad values)."""
    from ansible_collections.k8router.edge.plugins.module_utils._cluster import ClusterSource  # noqa: PLC0415
    from ansible_collections.k8router.edge.plugins.module_utils._converge import (  # noqa: PLC0415
        HaproxyPaths,
        Options,
        certificate_files,
    )
    from ansible_collections.k8router.edge.plugins.module_utils._errors import K8RouterError  # noqa: PLC0415
    from ansible_collections.k8router.edge.plugins.module_utils._model import ClusterSettings  # noqa: PLC0415
    from ansible_collections.k8router.edge.plugins.module_utils._routerset import DNS_LABEL  # noqa: PLC0415

    lb_params = params.get("load_balancer")
    clusters = []
    seen: set[str] = set()
    for index, item in enumerate(params["clusters"]):
        name = item["name"]
        if not DNS_LABEL.match(name) or name in seen:
            raise K8RouterError(f"clusters[{index}].name: {name!r} must be a DNS label, unique among the clusters")
        seen.add(name)
        if not 1 <= item["weight"] <= 256:
            raise K8RouterError(f"clusters[{name}].weight: {item['weight']} is not between 1 and 256")
        ctl = item["ingress_controller"] or {}
        source = ClusterSource(
            name=name,
            kubeconfig=item["kubeconfig"],
            context=item["context"],
            controller_namespace=ctl.get("namespace") or "ingress-nginx",
            controller_service=ctl.get("service") or "ingress-nginx-controller",
            controller_port=str(ctl.get("port") or "http"),
            ingress_classes=tuple(item["ingress_classes"]),
            timeout=float(params["request_timeout"]),
            read_services=bool(lb_params),
        )
        allowed = item["allowed_hosts"]
        lb_classes = item.get("load_balancer_classes")
        settings = ClusterSettings(
            name,
            item["weight"],
            item["state"],
            tuple(allowed) if allowed is not None else None,
            _health_check(name, item.get("health_check") or {}),
            tuple(lb_classes) if lb_classes is not None else None,
        )
        clusters.append((source, settings))
    certs = [(c["cert"], c.get("key")) for c in params["certificates"]]
    try:
        files = certificate_files(certs, params.get("certificate_dir"))
    except OSError as exc:
        raise K8RouterError(f"certificate_dir: {exc}") from exc
    default = params.get("default_certificate")
    hap = params.get("haproxy") or {}
    return Options(
        clusters=tuple(clusters),
        certificate_files=tuple(files),
        default_certificate=(default["cert"], default.get("key")) if default else None,
        haproxy=HaproxyPaths(
            config=hap.get("config") or HaproxyPaths.config,
            conf_dir=hap.get("conf_dir") or HaproxyPaths.conf_dir,
            data_dir=hap.get("data_dir") or HaproxyPaths.data_dir,
            socket=hap.get("socket") or HaproxyPaths.socket,
            binary=hap.get("binary") or HaproxyPaths.binary,
            reload_command=tuple(hap.get("reload_command") or HaproxyPaths.reload_command),
        ),
        state_dir=params["state_dir"],
        max_age=float(params["max_age"]),
        lock_timeout=float(params.get("lock_timeout") or 30),
        expiry_days=int(params["expiry_warning_days"]),
        backend_tls=bool(params.get("backend_tls")),
        backend_ca_file=params.get("backend_ca_file"),
        load_balancer=_lb_options(lb_params) if lb_params else None,
        credentials=_credential_settings(params.get("credentials") or {}),
    )


def _credential_settings(creds: Mapping[str, Any]) -> Any:
    from ansible_collections.k8router.edge.plugins.module_utils._credentials import (  # noqa: PLC0415
        MIN_LIFETIME,
        CredentialSettings,
    )
    from ansible_collections.k8router.edge.plugins.module_utils._errors import K8RouterError  # noqa: PLC0415

    default = CredentialSettings()
    lifetime = creds.get("lifetime") or default.lifetime
    if lifetime < MIN_LIFETIME:
        raise K8RouterError(f"credentials.lifetime: {lifetime} s is shorter than the API's {MIN_LIFETIME} s")
    values = {k: creds.get(k) for k in ("renew_before", "warn_before")}
    for key, value in values.items():
        if value is not None and value < 0:
            raise K8RouterError(f"credentials.{key}: {value} is negative")
    return CredentialSettings(
        renew=creds.get("renew", True) is not False,
        lifetime=lifetime,
        renew_before=default.renew_before if values["renew_before"] is None else int(values["renew_before"]),
        warn_before=default.warn_before if values["warn_before"] is None else int(values["warn_before"]),
    )


_CHECK_PATH = re.compile(r"/[A-Za-z0-9._~!$&()*+,;=:@%/?-]*")


def _health_check(cluster: str, check: Mapping[str, Any]) -> Any:
    """The cluster's health check, validated (its path reaches haproxy's configuration)."""
    from ansible_collections.k8router.edge.plugins.module_utils._errors import K8RouterError  # noqa: PLC0415
    from ansible_collections.k8router.edge.plugins.module_utils._model import HealthCheck  # noqa: PLC0415

    where = f"clusters[{cluster}].health_check"
    path = check.get("path") or "/healthz"
    if not _CHECK_PATH.fullmatch(path) or len(path) > 1024:
        raise K8RouterError(f"{where}.path: {path!r} is not an absolute URL path without spaces")
    port = check.get("port")
    if port is not None and not 1 <= port <= 65535:
        raise K8RouterError(f"{where}.port: {port} is not a port number")
    status = check.get("status") or 200
    if not 100 <= status <= 599:
        raise K8RouterError(f"{where}.status: {status} is not an HTTP status")
    numbers = {k: check.get(k) or d for k, d in (("interval", 2000), ("fall", 2), ("rise", 2))}
    for key, value in numbers.items():
        if not 1 <= value <= (3_600_000 if key == "interval" else 100):
            raise K8RouterError(f"{where}.{key}: {value} is out of range")
    return HealthCheck(
        check.get("type") or "tcp", path, port, status, numbers["interval"], numbers["fall"], numbers["rise"]
    )


def _lb_options(lb: Mapping[str, Any]) -> Any:
    from ansible_collections.k8router.edge.plugins.module_utils._errors import K8RouterError  # noqa: PLC0415
    from ansible_collections.k8router.edge.plugins.module_utils._lb import LbOptions  # noqa: PLC0415
    from ansible_collections.k8router.edge.plugins.module_utils._net import parse_network  # noqa: PLC0415
    from ansible_collections.k8router.edge.plugins.module_utils._services import LbSettings  # noqa: PLC0415

    pool = []
    for index, entry in enumerate(lb["pool"]):
        try:
            pool.append(str(parse_network(entry if "/" in entry else f"{entry}/{128 if ':' in entry else 32}")))
        except ValueError as exc:
            raise K8RouterError(f"load_balancer.pool[{index}]: {exc}") from None
    schedulers = tuple(lb.get("schedulers") or ())
    default = lb.get("default_scheduler") or "wrr"
    if default not in schedulers:
        raise K8RouterError(f"load_balancer.default_scheduler: {default!r} is not one of the schedulers")
    return LbOptions(
        settings=LbSettings(tuple(pool), schedulers, default),
        classes=tuple(lb.get("classes") or ()),
        include_unclassed=bool(lb.get("include_unclassed")),
        write_status=bool(lb.get("write_status")),
        ipvsadm=lb.get("ipvsadm") or "ipvsadm",
        engine=lb.get("engine") or "ipvs",
        nft=lb.get("nft") or "nft",
    )
