"""Fixtures shared by the integration and end-to-end tests: the fake marketplace on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import UpstreamPKI, make_pki
from tests.support.market import HOSTS, FakeMarket


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> UpstreamPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), HOSTS)


@pytest.fixture(scope="session")
def market(pki: UpstreamPKI) -> Iterator[FakeMarket]:
    server = FakeMarket(pki).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home directory for one proxy process (config, state, CA, log)."""
    return tmp_path_factory.mktemp("home")
