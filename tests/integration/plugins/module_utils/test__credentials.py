"""Token renewal against a real API server: k8router renews its own token through the TokenRequest API."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client as k8s
import pytest

from ansible_collections.k8router.edge.plugins.module_utils._credentials import (
    CredentialSettings,
    check_and_renew,
    read_token,
)
from tests.fixtures import kubelab, kubeobjects

RENEW_NOW = CredentialSettings(lifetime=3600, renew_before=10_000)  # above the lifetime: the first run renews


@pytest.fixture(scope="module")
def alpha(clusters: list[kubelab.Cluster]) -> Iterator[kubelab.Cluster]:
    cluster = {c.name: c for c in clusters}["alpha"]
    with cluster.api_client() as api:
        kubeobjects.apply_k8router_rbac(api)  # the shipped manifest, with its token-renewer Role
        k8s.CoreV1Api(api).create_namespaced_service_account(
            "k8router-system", k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="other"))
        )
    yield cluster


def kubeconfig(cluster: kubelab.Cluster, path: Path, service_account: str = "k8router") -> Path:
    token = kubelab.mint_token(cluster, "k8router-system", service_account, expiration_seconds=600)
    kubelab.write_token_kubeconfig(cluster, token, path, "k8router")
    os.chmod(path, 0o600)
    return path


def whoami(cluster: kubelab.Cluster, path: Path) -> str:
    token = read_token(path.read_text())
    assert token is not None
    with cluster.api_client(token=_raw_token(path)) as api:
        review = k8s.AuthenticationV1Api(api).create_self_subject_review(k8s.V1SelfSubjectReview())
    assert review.status is not None and review.status.user_info is not None
    return str(review.status.user_info.username)


def _raw_token(path: Path) -> str:
    import yaml  # noqa: PLC0415

    return str(yaml.safe_load(path.read_text())["users"][0]["user"]["token"])


def test_a_token_near_its_end_is_renewed(alpha: kubelab.Cluster, tmp_path: Path) -> None:
    path = kubeconfig(alpha, tmp_path / "alpha.kubeconfig")
    old_token, old_inode = _raw_token(path), path.stat().st_ino
    old_expiry = read_token(path.read_text()).expires_at  # type: ignore[union-attr]
    row, warnings = check_and_renew("alpha", str(path), None, RENEW_NOW, timeout=5, check_mode=False)
    assert warnings == []
    assert row["renewed"] is True
    new_token = _raw_token(path)
    assert new_token != old_token
    new_expiry = read_token(path.read_text()).expires_at  # type: ignore[union-attr]
    assert new_expiry is not None and old_expiry is not None and new_expiry > old_expiry + 2000
    print(f"token renewed: {old_expiry - time.time():.0f} s left before, {new_expiry - time.time():.0f} s after")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != old_inode  # replaced by a rename, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha.kubeconfig"]  # no temporary file left
    assert whoami(alpha, path) == "system:serviceaccount:k8router-system:k8router"
    # far from its end: left alone
    later = CredentialSettings(renew_before=600, warn_before=600)  # the new token has about an hour left
    row, warnings = check_and_renew("alpha", str(path), None, later, timeout=5, check_mode=False)
    assert "renewed" not in row and warnings == [] and _raw_token(path) == new_token


def test_check_mode_renews_nothing(alpha: kubelab.Cluster, tmp_path: Path) -> None:
    path = kubeconfig(alpha, tmp_path / "alpha.kubeconfig")
    before = path.read_bytes()
    row, _warnings = check_and_renew("alpha", str(path), None, RENEW_NOW, timeout=5, check_mode=True)
    assert row["renewed"] == "would be"
    assert path.read_bytes() == before


def test_an_expired_token_is_reported_by_name(alpha: kubelab.Cluster, tmp_path: Path) -> None:
    path = kubeconfig(alpha, tmp_path / "alpha.kubeconfig")
    before = path.read_bytes()
    later = time.time() + 700  # the 600 s token has run out by then
    row, warnings = check_and_renew("alpha", str(path), None, RENEW_NOW, timeout=5, check_mode=False, now=later)
    assert row["credential"] == "expired"
    (warning,) = warnings
    assert f"cluster alpha: kubeconfig {path}" in warning
    assert "k8router-system/k8router expired at" in warning and "s ago" in warning
    assert path.read_bytes() == before


def test_renewal_refused_keeps_the_old_token_and_says_why(alpha: kubelab.Cluster, tmp_path: Path) -> None:
    """A service account the RBAC does not let renew itself: the file stays, the warning names the refusal."""
    path = kubeconfig(alpha, tmp_path / "other.kubeconfig", service_account="other")
    before = path.read_bytes()
    row, warnings = check_and_renew("alpha", str(path), None, RENEW_NOW, timeout=5, check_mode=False)
    assert "renewed" not in row
    assert any("renewing the token" in w and "HTTP 403" in w for w in warnings), warnings
    # its 600 s are within warn_before (a day): warned ahead by name
    assert any(w.startswith(f"cluster alpha: kubeconfig {path}: the token expires at") for w in warnings), warnings
    assert path.read_bytes() == before
