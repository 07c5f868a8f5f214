"""The haproxy renderer against golden files, the escape function, and the runtime command planner."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ansible_collections.k8router.edge.plugins.module_utils._haproxy import (
    CertEntry,
    Rendered,
    RenderSettings,
    Slot,
    backend_name,
    cert_file_name,
    certificate_ops,
    check_backend_name,
    generation_backend,
    quote,
    render,
    runtime_commands,
)
from ansible_collections.k8router.edge.plugins.module_utils._model import Backend, Model, Serving
from ansible_collections.k8router.edge.plugins.module_utils._model import HealthCheck as HealthCheckSettings

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("K8ROUTER_UPDATE_GOLDEN") == "1"
SETTINGS = RenderSettings(conf_dir="/etc/haproxy/k8router.d", data_dir="/etc/haproxy/k8router")
PEM = b"-----BEGIN CERTIFICATE-----\n(test)\n-----END CERTIFICATE-----\n"


def model() -> Model:
    alpha = (Backend("10.244.1.5", 8080), Backend("10.244.2.7", 8080))
    beta = (Backend("10.245.0.9", 8080), Backend("fd00:245::9", 8080))
    return Model(
        hosts={
            "*.apps.example.org": [Serving("alpha", 100, alpha)],
            "shop.example.org": [Serving("alpha", 100, alpha), Serving("beta", 0, beta)],
            "empty.example.org": [Serving("beta", 50, ())],
        }
    )


CERTS = [CertEntry("f" * 64, PEM, ("shop.example.org",)), CertEntry("a" * 64, PEM, ("*.apps.example.org",))]


def rendered(cfg: RenderSettings = SETTINGS) -> Rendered:
    return render(model(), CERTS, cfg)


@pytest.mark.parametrize(
    ("case", "cfg"),
    [
        ("basic", SETTINGS),
        ("backend-tls", RenderSettings(SETTINGS.conf_dir, SETTINGS.data_dir, True, "/etc/k8router/pods-ca.pem")),
        ("backend-tls-noverify", RenderSettings(SETTINGS.conf_dir, SETTINGS.data_dir, True, None, PEM)),
    ],
)
def test_render_matches_golden_files(case: str, cfg: RenderSettings) -> None:
    out = rendered(cfg)
    directory = GOLDEN / case
    files = {Path(p).name: data for p, data in out.files.items() if not p.endswith(".pem") or "/certs/" not in p}
    if UPDATE:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, data in files.items():
            (directory / name).write_bytes(data)
    assert sorted(files) == sorted(p.name for p in directory.iterdir())
    for name, data in files.items():
        assert data.decode() == (directory / name).read_text(), (
            f"{case}/{name} differs (K8ROUTER_UPDATE_GOLDEN=1 rewrites)"
        )


def test_certificate_file_names_follow_their_source() -> None:
    name = cert_file_name("/etc/k8router/certificates/shop shop.pem")
    assert name == cert_file_name("/etc/k8router/certificates/shop shop.pem")  # a renewal keeps its file
    assert name.startswith("shop_shop-") and len(name) == len("shop_shop-") + 12
    assert cert_file_name("/etc/other/shop shop.pem") != name


def test_structure_leaves_certificates_to_the_runtime_but_not_the_default_one() -> None:
    base = rendered()
    renewed = [CertEntry("f" * 64, PEM + b"\n", ("shop.example.org",)), CERTS[1]]
    assert render(model(), renewed, SETTINGS).structure == base.structure
    moved = [CertEntry("f" * 64, PEM, ("shop.example.org", "*.apps.example.org"))]
    assert render(model(), moved, SETTINGS).structure == base.structure
    with_default = RenderSettings(SETTINGS.conf_dir, SETTINGS.data_dir, default_certificate=PEM)
    assert render(model(), CERTS, with_default).structure != base.structure
    out = render(model(), renewed, SETTINGS)
    assert certificate_ops(base.layout()["certs"], out) and certificate_ops(out.layout()["certs"], out) == []
    assert [str(op) for op in certificate_ops(base.layout()["certs"], out) or []] == [
        f"set ssl cert /etc/haproxy/k8router/certs/{'f' * 64}.pem <<(certificate and key)",
        f"commit ssl cert /etc/haproxy/k8router/certs/{'f' * 64}.pem",
    ]
    assert certificate_ops(None, out) is None
    assert certificate_ops({"files": {}}, out) is None


def test_certificate_files_are_named_by_entry() -> None:
    out = rendered()
    assert out.files[f"/etc/haproxy/k8router/certs/{'f' * 64}.pem"] == PEM
    assert (
        out.files["/etc/haproxy/k8router/crt-list.txt"].decode().splitlines()[0] == "/etc/haproxy/k8router/fallback.pem"
    )


def test_hosts_served_by_the_same_clusters_share_a_backend() -> None:
    mdl = model()
    mdl.hosts["more.example.org"] = mdl.hosts["shop.example.org"]
    out = render(mdl, [], SETTINGS)
    hosts = dict(line.split() for line in out.files["/etc/haproxy/k8router/hosts.map"].decode().splitlines())
    assert hosts["more.example.org"] == hosts["shop.example.org"] == backend_name("alpha|beta")
    # three host backends (alpha; alpha+beta; beta), a check backend per cluster, the generation backend
    assert out.files["/etc/haproxy/k8router.d/50-k8router.cfg"].decode().count("\nbackend ") == 6


def test_structure_ignores_slot_contents_and_weights_but_not_slot_count() -> None:
    base = rendered()
    moved = model()
    moved.hosts["shop.example.org"][0] = Serving("alpha", 100, (Backend("10.244.9.9", 8080),))
    moved.hosts["shop.example.org"][1] = Serving("beta", 100, moved.hosts["shop.example.org"][1].backends)
    assert render(moved, CERTS, SETTINGS).structure == base.structure
    grown = model()
    grown.hosts["shop.example.org"][0] = Serving("alpha", 100, tuple(Backend(f"10.244.0.{i}", 8080) for i in range(5)))
    assert render(grown, [], SETTINGS).structure != render(model(), [], SETTINGS).structure


def test_pods_keep_their_slots() -> None:
    pods = tuple(Backend(f"10.244.0.{i}", 8080) for i in (1, 2, 3))
    first = render(Model(hosts={"a.example.org": [Serving("alpha", 100, pods)]}), [], SETTINGS)
    second = render(Model(hosts={"a.example.org": [Serving("alpha", 100, pods[1:])]}), [], SETTINGS, first.slots)
    name, check = backend_name("alpha"), check_backend_name("alpha")
    assert [first.slots[f"{name}/alpha_{i}"].address for i in (1, 2, 3)] == ["10.244.0.1", "10.244.0.2", "10.244.0.3"]
    assert second.slots[f"{name}/alpha_1"].enabled is False
    for server in ("alpha_2", "alpha_3"):
        assert second.slots[f"{name}/{server}"].address == first.slots[f"{name}/{server}"].address
        assert second.slots[f"{check}/{server}"] == first.slots[f"{check}/{server}"]
    # one pod fewer: its slot leaves (host backend and check), the others' shares grow
    assert runtime_commands(first.layout(), second) == [
        f"set server {name}/alpha_1 weight 0",
        f"set server {name}/alpha_1 state maint",
        f"set server {check}/alpha_1 state maint",
    ]


def test_cluster_weight_is_the_clusters_share_whatever_its_pods() -> None:
    alpha = tuple(Backend(f"10.244.0.{i}", 8080) for i in (1, 2))
    beta = (Backend("10.245.0.1", 8080),)
    out = render(Model(hosts={"a.example.org": [Serving("alpha", 10, alpha), Serving("beta", 90, beta)]}), [], SETTINGS)
    name = backend_name("alpha|beta")
    weights = {k.split("/")[1]: v.weight for k, v in out.slots.items() if k.startswith(name) and v.enabled}
    assert weights == {"alpha_1": 14, "alpha_2": 14, "beta_1": 256}
    share = (weights["alpha_1"] + weights["alpha_2"]) / sum(weights.values())
    assert abs(share - 0.10) < 0.005


def test_draining_pods_stay_with_weight_zero_and_keep_their_health_check() -> None:
    ready, leaving = Backend("10.244.0.1", 8080), Backend("10.244.0.2", 8080)
    out = render(Model(hosts={"a.example.org": [Serving("alpha", 100, (ready,), (leaving,))]}), [], SETTINGS)
    name, check = backend_name("alpha"), check_backend_name("alpha")
    assert out.slots[f"{name}/alpha_1"] == Slot("10.244.0.1", 8080, 256, True)
    assert out.slots[f"{name}/alpha_2"] == Slot("10.244.0.2", 8080, 0, True)
    assert out.slots[f"{check}/alpha_2"].enabled is True


def test_health_check_per_cluster() -> None:
    mdl = Model(
        hosts={"a.example.org": [Serving("alpha", 100, (Backend("10.244.0.1", 80),)), Serving("beta", 100, ())]},
        health_checks={"alpha": HealthCheckSettings("http", "/healthz", 10254, 200, 1000, 3, 2)},
    )
    out = render(mdl, [], SETTINGS)
    text = out.files[
        "/etc/haproxy/k8router.d/50-k8router.cfg"
    ].decode()  # haproxy -c: tests/integration/test_validators.py
    alpha = text.split("backend k8r_pods_alpha\n")[1].split("\n\n")[0]
    beta = text.split("backend k8r_pods_beta\n")[1].split("\n\n")[0]
    assert "option httpchk" in alpha and "http-check send meth GET uri '/healthz'" in alpha
    assert (
        "server alpha_1 10.244.0.1:80 weight 1 check inter 1000ms fastinter 250ms downinter 500ms fall 3 rise 2 port 10254"
        in alpha
    )
    assert "httpchk" not in beta and "check inter 2000ms fastinter 500ms downinter 1000ms fall 2 rise 2" in beta
    assert "server alpha_1 10.244.0.1:80 weight 256 track k8r_pods_alpha/alpha_1" in text


def test_generation_backend_names_the_structure() -> None:
    out = rendered()
    text = out.files["/etc/haproxy/k8router.d/50-k8router.cfg"].decode()
    assert text.rstrip().splitlines()[-2] == f"backend {generation_backend(out.structure)}"


def test_sni_filters_are_spread_over_lines() -> None:
    hosts = tuple(f"h{i}.example.org" for i in range(250))
    out = render(Model(), [CertEntry("c" * 64, PEM, hosts)], SETTINGS)
    lines = out.files["/etc/haproxy/k8router/crt-list.txt"].decode().splitlines()
    assert len(lines) == 4
    assert [len(line.split()) - 3 for line in lines[1:]] == [100, 100, 50]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({}, {}, []),
        ({"b/s1": ["10.0.0.1", 80, 100, True]}, {"b/s1": ["10.0.0.1", 80, 100, True]}, []),
        ({"b/s1": ["10.0.0.1", 80, 100, True]}, {"b/s1": ["10.0.0.2", 80, 100, True]}, ["set server b/s1 addr 10.0.0.2 port 80"]),
        ({"b/s1": ["10.0.0.1", 80, 100, True]}, {"b/s1": ["10.0.0.1", 81, 100, True]}, ["set server b/s1 addr 10.0.0.1 port 81"]),
        ({"b/s1": ["10.0.0.1", 80, 100, True]}, {"b/s1": ["10.0.0.1", 80, 0, True]}, ["set server b/s1 weight 0"]),
        ({"b/s1": ["10.0.0.1", 80, 100, True]}, {"b/s1": ["0.0.0.0", 80, 100, False]}, ["set server b/s1 state maint"]),
        (
            {"b/s1": ["0.0.0.0", 80, 100, False]},
            {"b/s1": ["10.0.0.3", 80, 100, True]},
            ["set server b/s1 addr 10.0.0.3 port 80", "set server b/s1 state ready"],
        ),
        (
            {"b/s1": ["0.0.0.0", 80, 100, False]},
            {"b/s1": ["fd00::3", 80, 50, True]},
            ["set server b/s1 addr fd00::3 port 80", "set server b/s1 weight 50", "set server b/s1 state ready"],
        ),
        ({}, {"b/s2": ["10.0.0.1", 80, 100, True]},
         ["set server b/s2 addr 10.0.0.1 port 80", "set server b/s2 weight 100", "set server b/s2 state ready"]),
    ],
)  # fmt: skip
def test_runtime_commands(before: dict[str, list[object]], after: dict[str, list[object]], expected: list[str]) -> None:
    target = Rendered()
    target.slots = {k: Slot(*v) for k, v in after.items()}  # type: ignore[arg-type]
    assert runtime_commands({"slots": before}, target) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "'plain'"),
        ("it's", "'it'\\''s'"),
        ("a\nb", "'a\\x0ab'"),
        ("$HOME #x", "'$HOME #x'"),
        ("tab\there\x00", "'tab\\x09here\\x00'"),
        ("", "''"),
        ("caf\u00e9\u2028", "'caf\\xe9\\u2028'"),
    ],
)
def test_quote(value: str, expected: str) -> None:
    assert quote(value) == expected
