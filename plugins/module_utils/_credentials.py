# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8router's credentials: the bound service-account tokens in its kubeconfigs.

A token is renewed by the identity itself before it expires: a TokenRequest for its own service
account (``create serviceaccounts/token``, allowed by the RBAC manifest for that one service
account only), written into the kubeconfig atomically (mode 0600). Kubeconfigs with other
credentials (client certificates) are left alone. Reading a token's claims verifies nothing: the
API server does that; k8router only needs to know when to ask for the next one.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._errors import K8RouterError
from ansible_collections.k8router.edge.plugins.module_utils._state import write_atomic

try:
    import yaml

    HAS_YAML = True
except ImportError:  # ansible-core brings PyYAML; without it no credential is renewed
    HAS_YAML = False

MIN_LIFETIME = 600  # the TokenRequest API's shortest token


class CredentialError(K8RouterError):
    """A kubeconfig's token could not be read or renewed."""


@dataclass(frozen=True)
class CredentialSettings:
    renew: bool = True
    lifetime: int = 7 * 86400  # seconds asked for in each TokenRequest
    renew_before: int = 2 * 86400  # renew when the token expires sooner than this
    warn_before: int = 86400  # warn when it expires sooner than this (renewal failing)


@dataclass(frozen=True)
class Token:
    """The token of a kubeconfig's user and what its claims say."""

    user: str
    namespace: str
    service_account: str
    expires_at: float | None  # None: no expiry claim (a legacy token)


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, not verified (the API server verifies; this only reads the expiry)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise CredentialError("the token is not a JWT")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error) as exc:
        raise CredentialError(f"the token's claims cannot be read: {exc}") from None
    if not isinstance(claims, dict):
        raise CredentialError("the token's claims are not an object")
    return claims


def _context(config: Mapping[str, Any], context: str | None) -> Mapping[str, Any]:
    name = context or config.get("current-context")
    for item in config.get("contexts") or []:
        if isinstance(item, Mapping) and item.get("name") == name:
            return item.get("context") or {}
    raise CredentialError(f"no context {name!r}")


def _user_entry(config: Mapping[str, Any], context: str | None) -> dict[str, Any]:
    user = _context(config, context).get("user")
    for item in config.get("users") or []:
        if isinstance(item, dict) and item.get("name") == user:
            return item
    raise CredentialError(f"no user {user!r}")


def read_token(text: str, context: str | None = None) -> Token | None:
    """The service-account token of ``context``'s user, or None when that user has no token."""
    if not HAS_YAML:
        return None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CredentialError(f"not YAML: {exc}") from None
    if not isinstance(config, Mapping):
        raise CredentialError("not a kubeconfig")
    entry = _user_entry(config, context)
    token = (entry.get("user") or {}).get("token")
    if not token:
        return None
    claims = token_claims(str(token))
    bound = claims.get("kubernetes.io")
    bound = bound if isinstance(bound, dict) else {}
    namespace, name = bound.get("namespace"), (bound.get("serviceaccount") or {}).get("name")
    if not (namespace and name):
        parts = str(claims.get("sub", "")).split(":")
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"] or not (parts[2] and parts[3]):
            raise CredentialError("the token is not a service account's")
        namespace, name = parts[2], parts[3]
    expiry = claims.get("exp")
    return Token(str(entry.get("name")), str(namespace), str(name), float(expiry) if expiry else None)


def token_expiry(text: str) -> float:
    """When the token of a kubeconfig's current context expires (epoch seconds); 0 without a readable token."""
    try:
        token = read_token(text)
    except CredentialError:
        return 0.0
    return token.expires_at or 0.0 if token else 0.0


def without_token(text: str) -> str:
    """A kubeconfig as canonical JSON with its users' tokens left out ("" when it is not readable YAML), so that
    two copies that differ only in a renewed token compare equal."""
    if not HAS_YAML:
        return ""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return ""
    if not isinstance(config, dict):
        return ""
    for entry in config.get("users") or []:
        if isinstance(entry, dict) and isinstance(entry.get("user"), dict):
            entry["user"].pop("token", None)
    return json.dumps(config, sort_keys=True, default=str)


def jwt_expiry(token: str) -> float:
    """When a bare token expires (epoch seconds); 0 when it is no readable JWT or has no expiry."""
    try:
        expiry = token_claims(token.strip()).get("exp")
        return float(expiry) if expiry else 0.0
    except (CredentialError, TypeError, ValueError):
        return 0.0


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec="seconds")


def _request_token(path: str, context: str | None, token: Token, lifetime: int, timeout: float) -> str:
    from kubernetes import client  # noqa: PLC0415

    from ansible_collections.k8router.edge.plugins.module_utils._cluster import api_client, api_error  # noqa: PLC0415

    api = api_client(path, context)
    try:
        body = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=lifetime)
        )
        resp = client.CoreV1Api(api).create_namespaced_service_account_token(
            token.service_account, token.namespace, body, _request_timeout=timeout
        )
    except Exception as exc:
        raise CredentialError(f"TokenRequest refused: {api_error(exc)}") from exc
    finally:
        api.close()
    new = getattr(resp.status, "token", None)
    if not new:
        raise CredentialError("TokenRequest answered without a token")
    return str(new)


def check_and_renew(
    cluster: str,
    path: str,
    context: str | None,
    settings: CredentialSettings,
    *,
    timeout: float,
    check_mode: bool,
    now: float | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Renew the kubeconfig's token when it expires within ``renew_before``; (status row, warnings)."""
    now = time.time() if now is None else now
    where = f"cluster {cluster}: kubeconfig {path}"
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        token = read_token(text, context)
    except (OSError, CredentialError) as exc:
        return {"cluster": cluster, "file": path, "credential": "unreadable"}, [f"{where}: {exc}"]
    if token is None or token.expires_at is None:
        return {"cluster": cluster, "file": path, "credential": "not a bound token"}, []
    row: dict[str, Any] = {"cluster": cluster, "file": path, "credential": "token", "expires": _when(token.expires_at)}
    left = token.expires_at - now
    warnings: list[str] = []
    if left <= 0:
        row["credential"] = "expired"
        return row, [
            f"{where}: the token of {token.namespace}/{token.service_account} expired at {_when(token.expires_at)} "
            f"({-left:.0f} s ago) and cannot renew itself: give the router a new one (site.yml, from a fresh "
            f"`kubectl create token -n {token.namespace} {token.service_account}`)"
        ]
    if not settings.renew or left > settings.renew_before:
        if left <= settings.warn_before:
            warnings.append(f"{where}: the token expires at {_when(token.expires_at)} ({left:.0f} s from now)")
        return row, warnings
    if check_mode:
        row["renewed"] = "would be"
        return row, warnings
    return _renew(where, path, context, text=text, token=token, settings=settings, timeout=timeout, left=left, row=row)


def _renew(
    where: str,
    path: str,
    context: str | None,
    *,
    text: str,
    token: Token,
    settings: CredentialSettings,
    timeout: float,
    left: float,
    row: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """A new token for the same service account, written into the kubeconfig atomically (0600)."""
    warnings: list[str] = []
    try:
        new = _request_token(path, context, token, max(MIN_LIFETIME, settings.lifetime), timeout)
        config = yaml.safe_load(text)
        _user_entry(config, context).setdefault("user", {})["token"] = new
        written = yaml.safe_dump(config, default_flow_style=False)
        write_atomic(path, written.encode(), 0o600)
        renewed = read_token(written, context)
    except (CredentialError, OSError) as exc:
        warnings.append(f"{where}: renewing the token (it expires at {_when(token.expires_at or 0)}) failed: {exc}")
        if left <= settings.warn_before:
            warnings.append(f"{where}: the token expires at {_when(token.expires_at or 0)} ({left:.0f} s from now)")
        return row, warnings
    row["renewed"] = True
    if renewed is not None and renewed.expires_at:
        row["expires"] = _when(renewed.expires_at)
    return row, warnings
