"""Ingress host validation and allow-lists."""

from __future__ import annotations

import pytest

from ansible_collections.k8router.edge.plugins.module_utils._hosts import allowed, host_problem


@pytest.mark.parametrize(
    "host", ["a.example.org", "*.example.org", "x", "a-b.c-d.e", "xn--bcher-kva.example", "1a.example"]
)
def test_valid_hosts(host: str) -> None:
    assert host_problem(host) is None


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("", "empty"),
        (None, "not a string"),
        ("A.example.org", "not a lowercase DNS name"),
        ("a..example.org", "not a lowercase DNS name"),
        ("-a.example.org", "not a lowercase DNS name"),
        ("a.example.org.", "not a lowercase DNS name"),
        ("a_b.example.org", "not a lowercase DNS name"),
        ("*.*.example.org", "not a lowercase DNS name"),
        ("a.*.example.org", "not a lowercase DNS name"),
        ("f*.example.org", "not a lowercase DNS name"),
        ("a b.example.org", "not a lowercase DNS name"),
        ("a.example.org\nbackend x", "not a lowercase DNS name"),
        ("a;b", "not a lowercase DNS name"),
        ("a'b", "not a lowercase DNS name"),
        ("$x", "not a lowercase DNS name"),
        ("10.0.0.1", "an IP address"),
        ("a" * 64 + ".org", "not a lowercase DNS name"),
        (".".join(["a" * 60] * 5), "longer than 253"),
    ],
)
def test_invalid_hosts(host: object, problem: str) -> None:
    result = host_problem(host)
    assert result is not None and result.startswith(problem)


@pytest.mark.parametrize(
    ("host", "patterns", "expected"),
    [
        ("a.example.org", None, True),
        ("a.example.org", [], False),
        ("a.example.org", ["*"], True),
        ("a.example.org", ["a.example.org"], True),
        ("a.example.org", ["A.Example.Org."], True),
        ("a.example.org", ["*.example.org"], True),
        ("a.b.example.org", ["*.example.org"], True),
        ("*.example.org", ["*.example.org"], True),
        ("example.org", ["*.example.org"], False),
        ("badexample.org", ["*.example.org"], False),
        ("a.example.org", ["b.example.org", "*.other.org"], False),
    ],
)
def test_allowed(host: str, patterns: list[str] | None, expected: bool) -> None:
    assert allowed(host, patterns) is expected
