"""Real Kafka-protocol brokers for the Kafka tests: one per session, topics per test.

``kafka_server`` is Apache Kafka (the reference; SPATE_TEST_KAFKA=host:port uses an
external one); ``tansu_server`` is Tansu (SPATE_TEST_TANSU=host:port for an external
one). Jars are cached under ``.cache/`` at the repository root.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import spate
from spate.brokers.kafka import KafkaBroker
from spate.testing.kafka_server import ServerProcess, session_server

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = session_server("apache", tmp_path_factory.mktemp("kafka"), REPO / ".cache")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tansu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = session_server("tansu", tmp_path_factory.mktemp("tansu"))
    yield server
    server.stop()


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
