# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ingress host names: validation by the Kubernetes rules, and allow-lists. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_HOST = 253


def host_problem(host: object) -> str | None:
    """Why ``host`` is not a valid Ingress host (a DNS-1123 subdomain, optionally ``*.`` + one), or None.

    IP addresses are refused, as Kubernetes does for Ingress hosts.
    """
    if not isinstance(host, str):
        return "not a string"
    if not host:
        return "empty"
    if len(host) > MAX_HOST:
        return f"longer than {MAX_HOST} characters"
    name = host[2:] if host.startswith("*.") else host
    labels = name.split(".")
    for label in labels:
        if not _LABEL.match(label):
            return "not a lowercase DNS name (letters, digits, '-' and '.'; a wildcard only as a leading '*.')"
    if all(label.isdigit() for label in labels):
        return "an IP address, not a host name"
    return None


def allowed(host: str, patterns: Iterable[str] | None) -> bool:
    """Whether a cluster whose allow-list is ``patterns`` may claim ``host``.

    ``None`` means no allow-list. A pattern is ``*`` (any host), ``*.example.org`` (any name below
    example.org, at any depth, including the wildcard host ``*.example.org`` itself) or an exact host.
    """
    if patterns is None:
        return True
    for given in patterns:
        pattern = given.lower().rstrip(".")
        if pattern in ("*", host):
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False
