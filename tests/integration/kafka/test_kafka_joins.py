"""group_by, stream-table and windowed stream-stream joins on the Kafka protocol,
against expected outputs (issue 13): Tansu for the quick runs, Apache Kafka (the
reference) for exactly-once through the hop and for each join once."""

from __future__ import annotations

import uuid

import pytest

import spate
from join_checks import SCENARIOS, check_group_by, check_table_join, check_window_join
from spate.testing.kafka_server import ServerProcess

TIMEOUT_S = 90


def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.mark.parametrize("scenario", [name for name in SCENARIOS if name != "group_by"])
async def test_joins_on_tansu(tansu_url: str, scenario: str) -> None:
    await SCENARIOS[scenario](tag(), tansu_url)


@pytest.mark.parametrize("server", ["tansu_url", "kafka_url"])
async def test_group_by_exactly_once(request: pytest.FixtureRequest, server: str) -> None:
    """The grouped processor reads a topic written in transactions: its group commits
    past the last commit marker, so it is idle (lag 0) once it has read everything."""
    url = request.getfixturevalue(server)
    await check_group_by(tag(), url, TIMEOUT_S, processing_guarantee="exactly-once")


async def test_stream_table_join_on_apache_kafka(kafka_server: ServerProcess) -> None:
    run = tag()
    await check_table_join(run, "left", kafka_server.url, TIMEOUT_S)
    async with spate.connect(kafka_server.url) as broker:
        table_topic = await broker.describe_topic(f"users-{run}")
        source = await broker.describe_topic(f"orders-{run}")
    assert table_topic.config.get("cleanup.policy") == "compact"  # created for a table
    assert "cleanup.policy" not in source.config


async def test_windowed_stream_stream_join_on_apache_kafka(kafka_server: ServerProcess) -> None:
    await check_window_join(tag(), "left", kafka_server.url, TIMEOUT_S)
