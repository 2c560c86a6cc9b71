"""The broker contract suite on the embedded broker: memory:// and local://."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from spate.brokers.base import Broker
from spate.brokers.local import LocalBroker
from spate.testing.contract import BrokerContract

LEASE_TTL_S = 1.0


class TestMemoryBroker(BrokerContract):
    @pytest_asyncio.fixture
    async def broker(self) -> AsyncIterator[Broker]:
        async with LocalBroker(
            None, memory_name=f"contract-{uuid.uuid4().hex}", lease_ttl_s=LEASE_TTL_S
        ) as broker:
            yield broker


class TestLocalBroker(BrokerContract):
    @pytest_asyncio.fixture
    async def broker(self, tmp_path: Path) -> AsyncIterator[Broker]:
        async with LocalBroker(
            tmp_path / "broker", lease_ttl_s=LEASE_TTL_S, synchronous="normal"
        ) as broker:
            yield broker
