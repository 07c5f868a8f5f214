# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The router's own state: last-known-good snapshots per cluster, the applied layout, the load-balancer address
allocations, the run lock. Nothing else reads or writes these files."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ansible_collections.k8router.edge.plugins.module_utils._errors import LockError
from ansible_collections.k8router.edge.plugins.module_utils._model import ClusterSnapshot

ALLOCATIONS = "lb-addresses.json"


def write_atomic(path: str, data: bytes, mode: int = 0o640) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of it."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".k8router-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class StateStore:
    """Files under the state directory (mode 0700): ``clusters/<name>.json``, ``layout.json`` and
    ``lb-addresses.json``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _ensure(self) -> None:
        os.makedirs(os.path.join(self.directory, "clusters"), mode=0o700, exist_ok=True)

    def load_snapshot(self, name: str) -> ClusterSnapshot | None:
        path = os.path.join(self.directory, "clusters", f"{name}.json")
        try:
            with open(path, encoding="utf-8") as handle:
                return ClusterSnapshot.from_json(json.load(handle))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return None  # a damaged file is no last-known-good

    def save_snapshot(self, snapshot: ClusterSnapshot) -> None:
        self._ensure()
        path = os.path.join(self.directory, "clusters", f"{snapshot.name}.json")
        write_atomic(path, json.dumps(snapshot.to_json(), sort_keys=True).encode(), 0o600)

    def load_layout(self) -> dict[str, Any]:
        try:
            with open(os.path.join(self.directory, "layout.json"), encoding="utf-8") as handle:
                data = json.load(handle)
                return data if isinstance(data, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    def save_layout(self, layout: Mapping[str, Any]) -> None:
        self._ensure()
        write_atomic(os.path.join(self.directory, "layout.json"), json.dumps(layout, sort_keys=True).encode(), 0o600)

    def load_allocations(self) -> dict[str, str]:
        """The load-balancer addresses of the last run, by Service (to report what changed: never an input of
        the allocation, which the Services' status and requests decide)."""
        try:
            with open(os.path.join(self.directory, ALLOCATIONS), encoding="utf-8") as handle:
                data = json.load(handle)
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def save_allocations(self, addresses: Mapping[str, str]) -> None:
        self._ensure()
        write_atomic(os.path.join(self.directory, ALLOCATIONS), json.dumps(addresses, sort_keys=True).encode(), 0o600)

    @contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        """Hold ``k8router.lock`` for the run; wait up to ``timeout`` seconds for another run to finish."""
        self._ensure()
        path = os.path.join(self.directory, "k8router.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                        raise LockError(
                            f"another k8router run (pid {holder}) holds {path}; waited {timeout:g} s. "
                            "Nothing was changed by this run."
                        ) from None
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock
