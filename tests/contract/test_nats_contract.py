"""The broker contract suite on NATS JetStream (a nats-server started for the session,
or ``$SPATE_TEST_NATS``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

import spate
from spate.brokers.base import Broker
from spate.testing.contract import BrokerContract
from spate.testing.nats_server import nats_test_url


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    with nats_test_url() as url:
        yield url


class TestNatsBroker(BrokerContract):
    @pytest.fixture
    async def broker(self, nats_url: str) -> AsyncIterator[Broker]:
        async with spate.connect(nats_url, lease_ttl_s=1.0) as broker:
            yield broker
