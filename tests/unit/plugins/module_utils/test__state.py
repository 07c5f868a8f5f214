"""The state store: last-known-good snapshots, layout, atomic writes and the run lock (real flock)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.k8router.edge.plugins.module_utils._errors import LockError
from ansible_collections.k8router.edge.plugins.module_utils._model import Backend, ClusterSnapshot
from ansible_collections.k8router.edge.plugins.module_utils._state import StateStore, write_atomic


def test_snapshot_and_layout_round_trip(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    assert store.load_snapshot("alpha") is None
    assert store.load_layout() == {}
    snap = ClusterSnapshot("alpha", 1.5, {"a.example.org": ["ns/a"]}, [Backend("10.0.0.1", 80)])
    store.save_snapshot(snap)
    store.save_layout({"structure": "x", "slots": {}})
    assert store.load_snapshot("alpha") == snap
    assert store.load_layout() == {"structure": "x", "slots": {}}
    assert oct((tmp_path / "state" / "clusters" / "alpha.json").stat().st_mode & 0o777) == "0o600"


def test_damaged_snapshot_is_no_last_known_good(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    (tmp_path / "clusters").mkdir()
    (tmp_path / "clusters" / "alpha.json").write_text('{"name": "alpha"')
    assert store.load_snapshot("alpha") is None


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomic(str(target), b"one", 0o640)
    write_atomic(str(target), b"two", 0o640)
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_second_holder_waits_then_gets_the_lock(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    order: list[str] = []
    with store.lock(5):

        def second() -> None:
            with store.lock(5):
                order.append("second")

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first done")
    thread.join()
    assert order == ["first done", "second"]


def test_lock_timeout_says_who_holds_it(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    expected = rf"another k8router run \(pid {os.getpid()}\) holds .*Nothing was changed"
    with store.lock(1), pytest.raises(LockError, match=expected), store.lock(0.3):
        pytest.fail("the second holder got the lock")
