"""A nats-server with JetStream for the NATS tests.

One server per session, on a free loopback port, with a temporary store and
``sync_interval: always`` (an acknowledged write is on disk), killed at the end;
``SPATE_TEST_NATS=nats://host:port`` uses that server instead. Tests that stop the
server start their own (``own_server``) so they never disturb the shared one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

import spate
from spate.brokers.nats import NatsBroker
from spate.testing.nats_server import NatsServer, nats_test_url

LEASE_TTL_S = 1.0


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    with nats_test_url() as url:
        yield url


@pytest.fixture
async def broker(nats_url: str) -> AsyncIterator[NatsBroker]:
    broker = spate.connect(nats_url, lease_ttl_s=LEASE_TTL_S)
    assert isinstance(broker, NatsBroker)
    async with broker:
        yield broker


@pytest.fixture
def own_server() -> Iterator[NatsServer]:
    """A server of this test's own, which it may kill and restart."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def topic() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
