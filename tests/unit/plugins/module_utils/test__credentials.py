"""Reading a kubeconfig's service-account token and its expiry (no API server needed)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from ansible_collections.k8router.edge.plugins.module_utils._credentials import (
    CredentialError,
    Token,
    jwt_expiry,
    read_token,
    token_expiry,
    without_token,
)


def jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


BOUND = {"exp": 2000, "kubernetes.io": {"namespace": "k8router-system", "serviceaccount": {"name": "k8router"}}}


def kubeconfig(user: dict[str, Any], context: str = "c") -> str:
    return yaml.safe_dump({
        "current-context": context,
        "contexts": [{"name": "c", "context": {"cluster": "x", "user": "u"}}],
        "users": [{"name": "u", "user": user}],
    })  # fmt: skip


def test_bound_token() -> None:
    assert read_token(kubeconfig({"token": jwt(BOUND)})) == Token("u", "k8router-system", "k8router", 2000.0)
    assert token_expiry(kubeconfig({"token": jwt(BOUND)})) == 2000.0


def test_legacy_subject_and_no_expiry() -> None:
    token = read_token(kubeconfig({"token": jwt({"sub": "system:serviceaccount:ns:sa"})}))
    assert token == Token("u", "ns", "sa", None)


def test_client_certificates_have_no_token() -> None:
    assert read_token(kubeconfig({"client-certificate-data": "eA=="})) is None
    assert token_expiry(kubeconfig({"client-certificate-data": "eA=="})) == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (kubeconfig({"token": "not-a-jwt"}), "not a JWT"),
        (kubeconfig({"token": "a.%%%.c"}), "cannot be read"),
        (kubeconfig({"token": jwt({"sub": "alice"})}), "not a service account"),
        (kubeconfig({"token": jwt(BOUND)}, context="missing"), "no context"),
        ("- a list", "not a kubeconfig"),
    ],
)
def test_bad_kubeconfigs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CredentialError, match=message):
        read_token(text)
    assert token_expiry(text) == 0.0


def test_bare_token_expiry() -> None:
    assert jwt_expiry(jwt(BOUND) + "\n") == 2000.0
    assert jwt_expiry(jwt({"sub": "x"})) == 0.0
    assert jwt_expiry("garbage") == 0.0


def test_copies_that_differ_only_in_the_token_compare_equal() -> None:
    mine, renewed = kubeconfig({"token": jwt(BOUND)}), kubeconfig({"token": jwt({**BOUND, "exp": 9000})})
    assert without_token(mine) == without_token(renewed) != ""
    moved = yaml.safe_dump({**yaml.safe_load(mine), "clusters": [{"name": "x", "cluster": {"server": "https://new"}}]})
    assert without_token(moved) != without_token(mine)
    assert without_token("- a list") == without_token(": not yaml :") == ""
