"""The broker contract suite on Redis Streams, unchanged, on every available version."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

import spate
from spate.brokers.base import Broker
from spate.testing.contract import BrokerContract
from spate.testing.redis_server import (
    flush_database,
    server_url_for_tests,
    server_versions_for_tests,
)


@pytest.fixture(scope="module", params=server_versions_for_tests())
def redis_server_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    version: str = request.param
    with server_url_for_tests(version, tmp_path_factory.mktemp(f"redis-{version}")) as url:
        yield url


class TestRedisBroker(BrokerContract):
    @pytest.fixture
    async def broker(self, redis_server_url: str) -> AsyncIterator[Broker]:
        flush_database(redis_server_url)
        async with spate.connect(
            redis_server_url, lease_ttl_s=1.0, retention_interval_s=0
        ) as broker:
            yield broker
