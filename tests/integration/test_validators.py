"""What k8router renders, as the daemons' own validators take it: ``haproxy -c`` and ``nft -c`` (Debian's packages,
``make host-packages``), so the unit tests need neither."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.k8router.edge.plugins.module_utils._haproxy import CertEntry, RenderSettings, render
from ansible_collections.k8router.edge.plugins.module_utils._hosts import host_problem
from ansible_collections.k8router.edge.plugins.module_utils._model import Backend, Model, Serving
from ansible_collections.k8router.edge.plugins.module_utils._model import HealthCheck as HealthCheckSettings
from lab import seal

SETTINGS = RenderSettings(conf_dir="/etc/haproxy/k8router.d", data_dir="/etc/haproxy/k8router")
PEM = b"-----BEGIN CERTIFICATE-----\n(test)\n-----END CERTIFICATE-----\n"


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
@given(hosts=st.lists(HOSTILE, min_size=1, max_size=4), cluster=HOSTILE)
def test_hostile_strings_never_add_a_directive(hosts: list[str], cluster: str) -> None:
    """Hostile hosts and cluster names (should they get past the reader) never add a directive or a map
    entry: every rendered configuration passes `haproxy -c` with exactly the directives the renderer writes."""
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed (make host-packages)")
    serving = [Serving(cluster or "c", 100, (Backend("10.0.0.1", 80),))]
    mdl = Model(hosts=dict.fromkeys([*hosts, "shop.example.org"], serving))
    out = render(mdl, [CertEntry("c" * 64, PEM, (*hosts, "shop.example.org"))], SETTINGS)
    text = out.files["/etc/haproxy/k8router.d/50-k8router.cfg"].decode()
    directives = [line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#")]
    check = ["backend", "mode", "description"] + ["server"] * 4
    host = ["backend", "mode", "description", "balance", "option", "retries", "retry-on", "http-request"]
    assert directives == check + host + ["server"] * 4 + ["backend", "mode"]
    maps = (
        out.files["/etc/haproxy/k8router/hosts.map"].decode()
        + out.files["/etc/haproxy/k8router/wildcards.map"].decode()
    )
    valid = sorted({h for h in [*hosts, "shop.example.org"] if host_problem(h) is None})
    assert sorted(line.split()[0] for line in maps.splitlines()) == valid
    crt = out.files["/etc/haproxy/k8router/crt-list.txt"].decode().splitlines()
    assert sorted(crt[1].split()[3:]) == sorted(
        dict.fromkeys(h for h in [*hosts, "shop.example.org"] if host_problem(h) is None)
    )
    with tempfile.TemporaryDirectory() as tmp:
        proc = _haproxy_check(out.files, Path(tmp))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_haproxy_takes_the_health_checks() -> None:
    mdl = Model(
        hosts={"a.example.org": [Serving("alpha", 100, (Backend("10.244.0.1", 80),)), Serving("beta", 100, ())]},
        health_checks={"alpha": HealthCheckSettings("http", "/healthz", 10254, 200, 1000, 3, 2)},
    )
    out = render(mdl, [], SETTINGS)
    with tempfile.TemporaryDirectory() as tmp:
        proc = _haproxy_check(out.files, Path(tmp))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_nft_takes_the_lab_seal() -> None:
    ranges = ("10.244.0.0/16", "10.245.0.0/16", "10.96.0.0/16", "10.97.0.0/16")
    proc = subprocess.run(["nft", "-c", "-f", "-"], input=seal.ruleset("10.213.9.0/24", ranges), text=True,
                          capture_output=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
