"""The router role's sysctls: documented as they are, with the ECMP hash by L4 flow, and set on every container the
role runs in for the tests (their /proc/sys is read-only, so the role can only find them set)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[4]


def _sysctls() -> dict[str, Any]:
    defaults: dict[str, Any] = yaml.safe_load((REPO / "roles/router/defaults/main.yml").read_text())["router_sysctls"]
    return defaults


def test_ecmp_hashes_l4_flows_for_both_families() -> None:
    sysctls = _sysctls()
    assert sysctls["net.ipv4.fib_multipath_hash_policy"] == 1
    assert sysctls["net.ipv6.fib_multipath_hash_policy"] == 1
    assert sysctls["net.ipv4.ip_forward"] == 1 and sysctls["net.ipv4.ip_nonlocal_bind"] == 1


def test_the_argument_spec_documents_the_defaults() -> None:
    spec = yaml.safe_load((REPO / "roles/router/meta/argument_specs.yml").read_text())["argument_specs"]["main"]
    assert spec["options"]["router_sysctls"]["default"] == _sysctls()


def test_the_molecule_containers_start_with_every_router_sysctl() -> None:
    task = (REPO / "molecule/_shared/create.yml").read_text()
    found = re.search(r"sysctl: \"\{\{ item\.sysctls \| default\((\{.*?\})\) \}\}\"", task, re.DOTALL)
    assert found is not None, "molecule/_shared/create.yml: the containers' sysctl default"
    started = ast.literal_eval(found.group(1))
    assert started == {k: str(v) for k, v in _sysctls().items()}


def test_the_lab_routers_start_with_every_router_sysctl_and_the_inventory_does_not_repeat_them() -> None:
    flags = set(re.findall(r'"--sysctl", "([a-z0-9_.]+=\d+)"', (REPO / "lab/lifecycle.py").read_text()))
    assert {f"{k}={v}" for k, v in _sysctls().items()} <= flags
    assert '"router_sysctls"' not in (REPO / "lab/inventory.py").read_text()  # the role's defaults, not a copy
