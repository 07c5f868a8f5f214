"""The haproxy renderer against golden files, the escape function, and the runtime command planner."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.k8router.edge.plugins.module_utils._haproxy import (
    CertEntry,
    Rendered,
    RenderSettings,
    backend_name,
    quote,
    render,
    runtime_commands,
)
from ansible_collections.k8router.edge.plugins.module_utils._model import Backend, Model, Serving

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


def rendered(cfg: RenderSettings = SETTINGS) -> Rendered:
    certs = [CertEntry("f" * 64, PEM, ("shop.example.org",)), CertEntry("a" * 64, PEM, ("*.apps.example.org",))]
    sources = {"shop.example.org": ["alpha:shop/web", "beta:shop/web"], "*.apps.example.org": ["alpha:apps/all"]}
    return render(model(), certs, cfg, sources)


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


def test_certificate_files_are_named_by_fingerprint() -> None:
    out = rendered()
    assert out.files[f"/etc/haproxy/k8router/certs/{'f' * 64}.pem"] == PEM
    assert (
        out.files["/etc/haproxy/k8router/crt-list.txt"].decode().splitlines()[0] == "/etc/haproxy/k8router/fallback.pem"
    )


def test_structure_ignores_slot_contents_but_not_slot_count() -> None:
    base = rendered()
    moved = model()
    moved.hosts["shop.example.org"][0] = Serving("alpha", 100, (Backend("10.244.9.9", 8080),))
    other = render(moved, [CertEntry("f" * 64, PEM, ("shop.example.org",)), CertEntry("a" * 64, PEM, ("*.apps.example.org",))],
                   SETTINGS, {"shop.example.org": ["alpha:shop/web", "beta:shop/web"], "*.apps.example.org": ["alpha:apps/all"]})  # fmt: skip
    assert other.structure == base.structure
    grown = model()
    grown.hosts["shop.example.org"][0] = Serving("alpha", 100, tuple(Backend(f"10.244.0.{i}", 8080) for i in range(5)))
    assert render(grown, [], SETTINGS, {}).structure != render(model(), [], SETTINGS, {}).structure


SHOP = backend_name("shop.example.org")


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
    from ansible_collections.k8router.edge.plugins.module_utils._haproxy import Slot  # noqa: PLC0415

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


HOSTILE = st.one_of(
    st.text(alphabet=st.sampled_from(list("ab.-*'\"\\$;# \t\n\r\x00{}%[]()<>|&`~\u00e9\u2028")), max_size=300),
    st.text(max_size=50),
    st.just("x" * 5000),
    st.just("\n" * 3000),
)


def _haproxy_check(files: dict[str, bytes], tmp: Path) -> subprocess.CompletedProcess[str]:
    data, conf = tmp / "data", tmp / "conf"
    (data / "certs").mkdir(parents=True, exist_ok=True)
    conf.mkdir(exist_ok=True)
    main = tmp / "main.cfg"
    main.write_text(
        "global\n    log stdout format raw local0\ndefaults\n    mode http\n    timeout connect 1s\n"
        "    timeout client 1s\n    timeout server 1s\n"
        "frontend f\n    bind 127.0.0.1:65080\n"
        f"    use_backend %[req.hdr(host),lower,map({data}/hosts.map)]\n"
        f"    use_backend %[req.hdr(host),lower,map({data}/wildcards.map)]\n"
    )
    for path, content in files.items():
        if path.endswith(".cfg"):
            (conf / Path(path).name).write_bytes(content)
        elif path.endswith(".map"):
            (data / Path(path).name).write_bytes(content)
    return subprocess.run(
        ["haproxy", "-c", "-f", str(main), "-f", str(conf)], capture_output=True, text=True, check=False
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(HOSTILE, min_size=1, max_size=4), cluster=HOSTILE)
def test_hostile_strings_never_add_a_directive(names: list[str], cluster: str) -> None:
    """Hostile ingress names, namespaces and cluster names reach haproxy only through quote(): every
    rendered configuration passes `haproxy -c` and has exactly the directives the renderer writes."""
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed (make host-packages)")
    mdl = Model(hosts={"shop.example.org": [Serving(cluster or "c", 100, (Backend("10.0.0.1", 80),))]})
    out = render(mdl, [], SETTINGS, {"shop.example.org": names})
    text = out.files["/etc/haproxy/k8router.d/50-k8router.cfg"].decode()
    directives = [line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert directives == ["backend", "mode", "description", "balance", "option", "retries"] + ["server"] * 4
    with tempfile.TemporaryDirectory() as tmp:
        proc = _haproxy_check(out.files, Path(tmp))
    assert proc.returncode == 0, proc.stdout + proc.stderr
