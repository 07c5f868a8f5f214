# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed errors of the k8router engine. Only the modules' main() turns them into fail_json."""

from __future__ import annotations


class K8RouterError(Exception):
    """Base of every error the engine raises on purpose; the message says what and where.

    ``warnings`` are what the run had found before it failed (a bad Service, an expiring certificate): the
    module shows them with the failure.
    """

    def __init__(self, message: str, warnings: list[str] | None = None) -> None:
        super().__init__(message)
        self.warnings = list(warnings or [])


class ClusterReadError(K8RouterError):
    """A cluster could not be read completely (unreachable, refused, cut off)."""


class StatusConflictError(ClusterReadError):
    """A status write met a newer version of its Service than the one it was planned from (HTTP 409 Conflict)."""


class ConfigInvalidError(K8RouterError):
    """A rendered candidate failed validation; it was kept beside the live file, which is untouched."""

    def __init__(self, message: str, rejected: list[str]) -> None:
        super().__init__(message)
        self.rejected = rejected


class LockError(K8RouterError):
    """Another run holds the lock."""


class RuntimeApiError(K8RouterError):
    """haproxy's runtime API refused a command."""
