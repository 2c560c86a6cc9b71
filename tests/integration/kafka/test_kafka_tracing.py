"""Trace context from producer to processor through Kafka record headers: Tansu (fast)
and Apache Kafka (the reference, also through a transaction under exactly-once)."""

from __future__ import annotations

from spate.testing.kafka_server import ServerProcess
from tracing_checks import check_trace_context

SHORT_SESSION = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
"""The run's consumers leave their groups in seconds once it stops."""


async def test_trace_context_on_tansu(tansu_server: ServerProcess) -> None:
    await check_trace_context(tansu_server.url, kafka_config=dict(SHORT_SESSION))


async def test_trace_context_through_a_kafka_transaction(kafka_server: ServerProcess) -> None:
    """exactly-once on Kafka sends the outputs in a transaction: the headers go too."""
    await check_trace_context(
        kafka_server.url, guarantee="exactly-once", kafka_config=dict(SHORT_SESSION)
    )
