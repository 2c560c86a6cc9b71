"""The metrics server during a real run on Kafka: Apache Kafka (the reference) and
Tansu. Lag is the high watermark against the group's committed offset."""

from __future__ import annotations

from metrics_checks import check_metrics_during_run
from spate.testing.kafka_server import ServerProcess

SHORT_SESSION = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
"""The run's consumer leaves its group in seconds once it stops."""


async def test_metrics_on_apache_kafka(kafka_server: ServerProcess) -> None:
    await check_metrics_during_run(kafka_server.url, kafka_config=dict(SHORT_SESSION))


async def test_metrics_on_tansu(tansu_server: ServerProcess) -> None:
    await check_metrics_during_run(tansu_server.url, kafka_config=dict(SHORT_SESSION))
