"""The orchestrator (_converge) with its real drivers: a haproxy master-worker in a network namespace (its files,
validator, reload and runtime API in a temporary directory), the state store on a temporary directory.

The clusters come through the reader, the seam the agent uses: snapshots as a read would give them. The pods
are plain HTTP servers on their addresses (the stand-in the project allows for the ingress controller).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.k8router.edge.plugins.module_utils import _converge
from ansible_collections.k8router.edge.plugins.module_utils._cluster import ClusterSource
from ansible_collections.k8router.edge.plugins.module_utils._converge import HaproxyPaths, Options, report, run
from ansible_collections.k8router.edge.plugins.module_utils._errors import ConfigInvalidError, RuntimeApiError
from ansible_collections.k8router.edge.plugins.module_utils._haproxy import RenderSettings, render
from ansible_collections.k8router.edge.plugins.module_utils._haproxy_driver import RuntimeApi
from ansible_collections.k8router.edge.plugins.module_utils._model import (
    Backend,
    ClusterSettings,
    ClusterSnapshot,
    build_model,
)
from ansible_collections.k8router.edge.plugins.module_utils._state import StateStore
from tests.fixtures import pki
from tests.fixtures.haproxylab import Haproxy, local_runner, running_haproxy

if os.geteuid() != 0:
    pytest.skip("a haproxy in a network namespace needs root", allow_module_level=True)

HOST = "shop.orchestrator.test"
POD1, POD2 = "10.250.7.11", "10.250.7.12"


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Haproxy]:
    with running_haproxy(tmp_path_factory.mktemp("orchestrator")) as h:
        h.add_pod("alpha", POD1)
        h.add_pod("alpha", POD2)
        yield h


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[pki.CertAuthority, Path]:
    authority = pki.CertAuthority.create("k8router orchestrator test CA")
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca_file.write_bytes(authority.pem)
    return authority, ca_file


@pytest.fixture
def opts(haproxy: Haproxy, ca: tuple[pki.CertAuthority, Path], tmp_path: Path) -> Iterator[Options]:
    """A fresh state directory and k8router's files cleared: every test starts from a router never converged."""
    cert = ca[0].write_pem(tmp_path / "shop.pem", HOST, [HOST])
    paths = haproxy.module_haproxy()
    source = ClusterSource("alpha", str(tmp_path / "none.kubeconfig"), None, "ingress", "controller", "http", ("edge",))
    yield Options(
        clusters=((source, ClusterSettings("alpha")),),
        certificate_files=((str(cert), None),),
        default_certificate=None,
        haproxy=HaproxyPaths(
            config=str(paths["config"]),
            conf_dir=str(paths["conf_dir"]),
            data_dir=str(paths["data_dir"]),
            socket=str(paths["socket"]),
            reload_command=tuple(paths["reload_command"]),  # type: ignore[arg-type]
        ),
        state_dir=str(tmp_path / "state"),
        max_age=600,
        lock_timeout=5,
        expiry_days=14,
    )
    (haproxy.conf_dir / "50-k8router.cfg").unlink(missing_ok=True)
    for pem in (haproxy.data_dir / "certs").glob("*.pem"):
        pem.unlink()


def reader(*pods: str, hosts: Sequence[str] = (HOST,)) -> Any:
    """The clusters as a read gives them: alpha serving ``hosts`` with ``pods`` (none: alpha does not answer)."""

    def read(sources: Sequence[ClusterSource]) -> tuple[dict[str, ClusterSnapshot], dict[str, str]]:
        if not pods:
            return {}, {"alpha": "cluster alpha: connection refused (the test's reader)"}
        snap = ClusterSnapshot("alpha", time.time(), {h: ["shop/web"] for h in hosts})
        snap.backends = [Backend(p, 8080) for p in pods]
        return {"alpha": snap}, {}

    return read


def converge(opts: Options, read: Any, **kwargs: Any) -> _converge.Result:
    return run(opts, local_runner, reader=read, credentials=False, **kwargs)


def served(haproxy: Haproxy, ca_file: Path, host: str = HOST) -> str:
    """Which pod answers ``host`` over TLS with its certificate ("" for none), waiting up to 10 s for it to settle
    (a server whose address changed is checked again before it takes requests)."""
    answer = ""
    for _attempt in range(50):
        status, text, subject = haproxy.get(host, ca_file)
        answer = text.split()[1].removeprefix("pod=") if status == 200 and subject == host else ""
        if answer:
            return answer
        time.sleep(0.2)
    return answer


def test_first_run_writes_validates_and_reloads_then_nothing_changes(
    opts: Options, haproxy: Haproxy, ca: tuple[pki.CertAuthority, Path]
) -> None:
    result = converge(opts, reader(POD1))
    assert result.changed and result.reloaded
    assert served(haproxy, ca[1]) == POD1
    layout = StateStore(opts.state_dir).load_layout()
    assert RuntimeApi(opts.haproxy.socket).running_generation() == layout["structure"][:24]
    assert [row["host"] for row in result.hosts] == [HOST]
    again = converge(opts, reader(POD1))
    assert (again.changed, again.reloaded, again.commands) == (False, False, [])


def test_a_pod_change_goes_through_the_runtime_api(
    opts: Options, haproxy: Haproxy, ca: tuple[pki.CertAuthority, Path]
) -> None:
    converge(opts, reader(POD1))
    workers = haproxy.worker_pids()
    result = converge(opts, reader(POD2))
    assert result.changed and not result.reloaded
    assert any(c.endswith(f"addr {POD2} port 8080") for c in result.commands), result.commands
    assert haproxy.worker_pids() == workers
    assert served(haproxy, ca[1]) == POD2
    assert POD2 in (haproxy.conf_dir / "50-k8router.cfg").read_text()  # the files say what runs
    assert converge(opts, reader(POD2)).changed is False


def test_a_rejected_candidate_leaves_what_serves(
    opts: Options, haproxy: Haproxy, ca: tuple[pki.CertAuthority, Path]
) -> None:
    converge(opts, reader(POD1))
    live = (haproxy.conf_dir / "50-k8router.cfg").read_bytes()
    broken = replace(opts, backend_tls=True, backend_ca_file="/nonexistent/missing-ca.pem")
    with pytest.raises(ConfigInvalidError, match=r"missing-ca\.pem") as caught:
        converge(broken, reader(POD1, POD2))
    assert "candidate-" not in str(caught.value)  # the error names the router's paths, not the candidate's
    assert (haproxy.conf_dir / "50-k8router.cfg").read_bytes() == live
    assert (haproxy.conf_dir / "50-k8router.cfg.rejected").exists()
    assert not [p for p in Path(opts.state_dir).iterdir() if p.name.startswith("candidate-")]
    assert served(haproxy, ca[1]) == POD1


def test_the_candidate_is_the_rendering_under_its_root(opts: Options, tmp_path: Path) -> None:
    """Every file of a candidate is under its root and names only paths under it: haproxy -c sees the
    candidate's maps and certificates, never the live ones."""
    snap = reader(POD1)([])[0]["alpha"]
    model = build_model([ClusterSettings("alpha")], {"alpha": snap})
    settings = RenderSettings(opts.haproxy.conf_dir, opts.haproxy.data_dir)
    live, cand = render(model, [], settings), render(model, [], replace(settings, root=str(tmp_path)))
    assert sorted(cand.files) == sorted(str(tmp_path) + path for path in live.files)
    data, moved = opts.haproxy.data_dir.encode(), (str(tmp_path) + opts.haproxy.data_dir).encode()
    assert any(moved in content for content in cand.files.values())
    for path, content in cand.files.items():
        assert content.count(data) == content.count(moved), path  # each path into the data directory moved


def test_a_held_back_reload_writes_nothing(opts: Options, haproxy: Haproxy) -> None:
    converge(opts, reader(POD1))
    live = (haproxy.conf_dir / "50-k8router.cfg").read_bytes()
    held = converge(opts, reader(POD1, hosts=(HOST, "new.orchestrator.test")), defer_reload=True)
    assert held.deferred and not held.changed and not held.reloaded
    assert (haproxy.conf_dir / "50-k8router.cfg").read_bytes() == live
    done = converge(opts, reader(POD1, hosts=(HOST, "new.orchestrator.test")))
    assert done.reloaded and not done.deferred


def test_an_unreadable_cluster_serves_its_last_known_good_state(
    opts: Options, haproxy: Haproxy, ca: tuple[pki.CertAuthority, Path]
) -> None:
    converge(opts, reader(POD1))
    away = converge(opts, reader())
    assert away.clusters[0]["read"] == "last-known-good"
    assert not away.changed
    assert served(haproxy, ca[1]) == POD1
    too_old = converge(replace(opts, max_age=0), reader())
    assert too_old.clusters[0]["read"] == "failed"
    assert any("not served" in w for w in too_old.warnings)
    assert too_old.hosts == []


def test_a_failed_reload_is_done_again_by_the_next_run(opts: Options, haproxy: Haproxy) -> None:
    converge(opts, reader(POD1))
    before = StateStore(opts.state_dir).load_layout()["structure"]
    failing = replace(opts, haproxy=replace(opts.haproxy, reload_command=("false",)))
    with pytest.raises(RuntimeApiError, match="the next run reloads again"):
        converge(failing, reader(POD1, hosts=(HOST, "again.orchestrator.test")))
    assert StateStore(opts.state_dir).load_layout()["structure"] == before  # not recorded: not live
    again = converge(opts, reader(POD1, hosts=(HOST, "again.orchestrator.test")))
    assert again.reloaded


def test_the_report_renders_and_writes_nothing(
    opts: Options, haproxy: Haproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_render(*args: Any) -> None:
        raise AssertionError("the report rendered")

    monkeypatch.setattr(_converge, "render", no_render)
    monkeypatch.setattr(_converge, "_credentials", lambda opts, check_mode: ([], []))
    result = report(opts, reader=reader(POD1, POD2))
    assert result.hosts == [
        {"host": HOST, "clusters": ["alpha"], "backends": 2, "certificate": opts.certificate_files[0][0],
         "expires": result.hosts[0]["expires"]}
    ]  # fmt: skip
    assert result.clusters[0]["read"] == "fresh"
    assert not (haproxy.conf_dir / "50-k8router.cfg").exists()
    assert not os.path.exists(opts.state_dir)  # no lock, no snapshot kept
