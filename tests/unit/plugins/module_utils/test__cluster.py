"""EndpointSlice conditions as kube-proxy reads them (the reader's pure part)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import DiscoveryV1EndpointPort, V1Endpoint, V1EndpointConditions, V1EndpointSlice

from ansible_collections.k8router.edge.plugins.module_utils._cluster import endpoint_backends
from ansible_collections.k8router.edge.plugins.module_utils._model import Backend


def eps(*endpoints: tuple[str, dict[str, Any] | None], port: int = 8080) -> V1EndpointSlice:
    return V1EndpointSlice(
        address_type="IPv4",
        endpoints=[
            V1Endpoint(addresses=[ip], conditions=None if c is None else V1EndpointConditions(**c))
            for ip, c in endpoints
        ],
        ports=[DiscoveryV1EndpointPort(name="http", port=port)],
    )


READY = {"ready": True, "serving": True, "terminating": False}
LEAVING = {"ready": False, "serving": True, "terminating": True}
GONE = {"ready": False, "serving": False, "terminating": True}
NOT_READY = {"ready": False, "serving": False, "terminating": False}

CASES = [
    ("ready", [("10.0.0.1", READY)], ["10.0.0.1"], []),
    ("ready unset counts as ready", [("10.0.0.1", {}), ("10.0.0.2", None)], ["10.0.0.1", "10.0.0.2"], []),
    ("not ready is left out", [("10.0.0.1", READY), ("10.0.0.2", NOT_READY)], ["10.0.0.1"], []),
    ("terminating but serving drains", [("10.0.0.1", READY), ("10.0.0.2", LEAVING)], ["10.0.0.1"], ["10.0.0.2"]),
    ("terminating and not serving is left out", [("10.0.0.1", READY), ("10.0.0.2", GONE)], ["10.0.0.1"], []),
    ("serving unset on a terminating one follows ready", [("10.0.0.1", READY),
     ("10.0.0.2", {"ready": False, "terminating": True})], ["10.0.0.1"], []),
    ("no ready endpoint: the serving ones serve", [("10.0.0.2", LEAVING), ("10.0.0.3", GONE)], ["10.0.0.2"], []),
]  # fmt: skip


@pytest.mark.parametrize(("endpoints", "ready", "draining"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_endpoint_conditions(
    endpoints: list[tuple[str, dict[str, Any] | None]], ready: list[str], draining: list[str]
) -> None:
    got_ready, got_draining = endpoint_backends([eps(*endpoints)], "http")
    assert got_ready == [Backend(a, 8080) for a in ready]
    assert got_draining == [Backend(a, 8080) for a in draining]


def test_other_ports_and_duplicates() -> None:
    slices = [eps(("10.0.0.1", READY)), eps(("10.0.0.1", READY)), eps(("10.0.0.9", READY), port=9090)]
    slices[2].ports = [DiscoveryV1EndpointPort(name="metrics", port=9090)]
    assert endpoint_backends(slices, "http") == ([Backend("10.0.0.1", 8080)], [])
    assert endpoint_backends(slices, "9090") == ([Backend("10.0.0.9", 9090)], [])
