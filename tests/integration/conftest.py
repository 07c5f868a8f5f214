"""Integration fixtures: real kube-apiserver + etcd clusters on loopback (tests/fixtures/kubelab.py)."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.fixtures import kubelab

CLUSTER_NAMES = ("alpha", "beta")
_started: list[kubelab.Cluster] = []


@pytest.fixture(scope="session")
def kube_binaries() -> kubelab.Binaries:
    try:
        return kubelab.Binaries.locate()
    except kubelab.LabError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def clusters(
    kube_binaries: kubelab.Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[kubelab.Cluster]]:
    """Two independent clusters, started in parallel for the session and always stopped afterwards."""
    workdir = tmp_path_factory.mktemp("kubelab")
    started = kubelab.start_clusters(CLUSTER_NAMES, workdir, binaries=kube_binaries)
    _started.extend(started)
    try:
        yield started
    finally:
        kubelab.stop_clusters(started)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and _started:
        lines = [f"{c.name}: {c.dir} (etcd.log, kube-apiserver.log)" for c in _started]
        report.sections.append(("kubelab cluster directories", "\n".join(lines)))
    return report
