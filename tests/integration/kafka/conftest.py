"""Real Kafka-protocol brokers for the Kafka tests: one per session, topics per test.

``kafka_server`` is Apache Kafka (the reference; SPATE_TEST_KAFKA=host:port uses an
external one); ``tansu_server`` is Tansu (SPATE_TEST_TANSU=host:port for an external
one). Jars are cached under ``.cache/`` at the repository root. The servers are shared
with the contract tests in the same run and stop when pytest exits.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import spate
from spate.brokers.kafka import KafkaBroker
from spate.testing.kafka_server import ServerProcess, session_server

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def kafka_server() -> ServerProcess:
    return session_server("apache", REPO / ".cache")


@pytest.fixture(scope="session")
def tansu_server() -> ServerProcess:
    return session_server("tansu")


@pytest.fixture
def tansu_url(tansu_server: ServerProcess) -> str:
    """Tansu's URL with short group timeouts: Tansu holds a new group's first join for
    a good part of the session timeout (an App run took 26 s with librdkafka's default
    45 s, 6 s with these)."""
    return f"{tansu_server.url}?session.timeout.ms=6000&heartbeat.interval.ms=500"


@pytest.fixture
def kafka_url(kafka_server: ServerProcess) -> str:
    return kafka_server.url


TEST_CONFIG = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
"""Short group timeouts so membership tests finish in seconds on a small machine."""


@pytest.fixture
async def kafka(kafka_server: ServerProcess) -> AsyncIterator[KafkaBroker]:
    broker = spate.connect(kafka_server.url, kafka_config=dict(TEST_CONFIG))
    assert isinstance(broker, KafkaBroker)
    async with broker:
        yield broker


@pytest.fixture
def name() -> str:
    """A fresh topic/group name per test, so tests share one broker safely."""
    return f"t-{uuid.uuid4().hex[:10]}"
