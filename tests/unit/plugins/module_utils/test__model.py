"""Dispatch of hosts to clusters: allow-lists, admin states, weights."""

from __future__ import annotations

from ansible_collections.k8router.edge.plugins.module_utils._model import (
    Backend,
    ClusterSettings,
    ClusterSnapshot,
    Serving,
    build_model,
)

A = (Backend("10.244.0.5", 80),)
B = (Backend("10.245.0.5", 80), Backend("10.245.0.6", 80))


def snaps(**hosts: dict[str, list[str]]) -> dict[str, ClusterSnapshot]:
    backends = {"alpha": A, "beta": B, "gamma": ()}
    return {name: ClusterSnapshot(name, 0.0, h, list(backends[name])) for name, h in hosts.items()}


def test_host_goes_to_every_cluster_offering_it() -> None:
    model = build_model(
        [ClusterSettings("beta", weight=50), ClusterSettings("alpha")],
        snaps(alpha={"shop.example.org": ["a/web"]}, beta={"shop.example.org": ["b/web"], "b.example.org": ["b/b"]}),
    )
    assert model.hosts == {
        "b.example.org": [Serving("beta", 50, B)],
        "shop.example.org": [Serving("alpha", 100, A), Serving("beta", 50, B)],
    }
    assert model.warnings == []


def test_drain_keeps_servers_at_weight_zero_and_offline_removes() -> None:
    s = snaps(alpha={"shop.example.org": ["a/web"]}, beta={"shop.example.org": ["b/web"]})
    drained = build_model([ClusterSettings("alpha", state="drain"), ClusterSettings("beta")], s)
    assert drained.hosts["shop.example.org"] == [Serving("alpha", 0, A), Serving("beta", 100, B)]
    offline = build_model([ClusterSettings("alpha", state="offline"), ClusterSettings("beta")], s)
    assert offline.hosts["shop.example.org"] == [Serving("beta", 100, B)]


def test_allow_list_refuses_and_reports() -> None:
    model = build_model(
        [ClusterSettings("alpha", allowed_hosts=("*.alpha.example.org", "exact.example.org")), ClusterSettings("beta")],
        snaps(
            alpha={"x.alpha.example.org": ["a/1"], "a.b.alpha.example.org": ["a/2"], "bank.example.org": ["a/steal"],
                   "exact.example.org": ["a/3"], "*.alpha.example.org": ["a/4"]},
            beta={"bank.example.org": ["b/bank"]},
        ),
    )  # fmt: skip
    assert sorted(model.hosts) == [
        "*.alpha.example.org",
        "a.b.alpha.example.org",
        "bank.example.org",
        "exact.example.org",
        "x.alpha.example.org",
    ]
    assert model.hosts["bank.example.org"] == [Serving("beta", 100, B)]
    assert model.warnings == [
        "cluster alpha: host bank.example.org refused: not in the cluster's allowed_hosts (claimed by a/steal)"
    ]


def test_invalid_host_in_a_snapshot_is_refused() -> None:
    model = build_model([ClusterSettings("alpha")], snaps(alpha={"bad host\n": ["a/x"], "ok.example.org": ["a/y"]}))
    assert list(model.hosts) == ["ok.example.org"]
    assert model.warnings[0].startswith("cluster alpha: host 'bad host\\n' refused")


def test_host_without_ready_backend_is_reported() -> None:
    model = build_model([ClusterSettings("gamma")], snaps(gamma={"dead.example.org": ["g/x"]}))
    assert model.warnings == ["host dead.example.org: no ready backend in any active cluster"]


def test_snapshot_round_trip() -> None:
    snap = ClusterSnapshot("alpha", 12.5, {"a.example.org": ["ns/n"]}, list(B))
    assert ClusterSnapshot.from_json(snap.to_json()) == snap
