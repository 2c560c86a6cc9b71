"""A nats-server with JetStream for the NATS tests.

One server per session, on a free loopback port, with a temporary store and
``sync_interval: always`` (an acknowledged write is on disk), killed at the end;
``SPATE_TEST_NATS=nats://host:port`` uses that server instead. Tests that stop the
server start their own (``own_server``) so they never disturb the shared one.
``cluster_factory`` makes groups of App worker processes (:mod:`nats_workers`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

import spate
from nats_workers import Cluster
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


@pytest.fixture
def cluster_factory(tmp_path: Path, nats_url: str) -> Iterator[Callable[..., Cluster]]:
    """Makes :class:`nats_workers.Cluster` s; kills their workers at the end."""
    made: list[Cluster] = []

    def make(
        guarantee: str = "at-least-once", *, delay_s: float = 0.0, batch: int = 200
    ) -> Cluster:
        cluster = Cluster(tmp_path, nats_url, guarantee=guarantee, delay_s=delay_s, batch=batch)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop_all()
