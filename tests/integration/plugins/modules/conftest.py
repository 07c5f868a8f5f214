"""Fixtures for the module tests: a real haproxy in a network namespace (tests/fixtures/haproxylab.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fixtures.haproxylab import Haproxy, running_haproxy


@pytest.fixture(scope="session")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Haproxy]:
    if os.geteuid() != 0:
        pytest.fail("the haproxy integration tests need root (network namespaces)", pytrace=False)
    with running_haproxy(tmp_path_factory.mktemp("haproxy")) as h:
        yield h
