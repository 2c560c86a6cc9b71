"""The broker contract suite on an adapter plugged in with registry.register()."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import spate
from spate.brokers import registry, schemes
from spate.brokers.base import Broker
from spate.testing.contract import BrokerContract
from third_party_adapter import QueueBroker


class TestRegisteredBroker(BrokerContract):
    @pytest_asyncio.fixture
    async def broker(self, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Broker]:
        monkeypatch.setattr(schemes, "_SCHEMES", dict(schemes._SCHEMES))
        registry.register("myq", QueueBroker.from_url)
        url = f"myq://contract-{uuid.uuid4().hex}:1234"
        async with spate.connect(url, lease_ttl_s=1.0) as broker:
            assert isinstance(broker, QueueBroker)
            yield broker
