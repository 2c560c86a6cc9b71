"""A broker that stops answering: every call fails with a spate error (never a
confluent-kafka one), and a transaction whose commit timed out is recovered by
recreating the producer. Each test owns a private Tansu (it starts in milliseconds),
since these tests pause or kill the server."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import spate
from spate.errors import CommitError, PublishError, SpateError
from spate.record import TopicPartition
from spate.testing.kafka_server import ServerProcess, ServerUnavailable, start_tansu

TANSU_GROUPS = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 400}
"""Tansu holds a JoinGroup for about half the session timeout."""


@pytest.fixture
def private_tansu(tmp_path: Path) -> Iterator[ServerProcess]:
    try:
        server = start_tansu(tmp_path / "tansu")
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    yield server
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


async def test_a_commit_that_times_out_recreates_the_producer(
    private_tansu: ServerProcess,
) -> None:
    assert private_tansu.process is not None
    config = {**TANSU_GROUPS, "transaction.timeout.ms": 5000, "socket.timeout.ms": 2000}
    async with spate.connect(private_tansu.url, timeout_s=3, kafka_config=config) as broker:
        await broker.create_topic("in", 1)
        await broker.create_topic("out", 1)
        async with broker.producer() as plain:
            plain.send("in", b"x")
        producer = broker.producer(transactional_id="outage")
        async with producer, broker.consumer(["in"], "g") as consumer:
            records: list[spate.Record] = []
            while not records:
                records = await consumer.fetch(10, 0.5)
            await producer.begin_transaction()
            producer.send("out", b"lost-or-aborted")
            private_tansu.process.send_signal(signal.SIGSTOP)
            with pytest.raises(CommitError, match="recreated"):
                await producer.commit_transaction(consumer, {TopicPartition("in", 0): 0})
            private_tansu.process.send_signal(signal.SIGCONT)
            await producer.begin_transaction()
            producer.send("out", b"after")
            await producer.commit_transaction(consumer, {TopicPartition("in", 0): 0})


async def test_with_the_server_gone_every_call_is_a_spate_error(
    private_tansu: ServerProcess,
) -> None:
    config = {**TANSU_GROUPS, "message.timeout.ms": 2000}
    async with spate.connect(private_tansu.url, timeout_s=1, kafka_config=config) as broker:
        await broker.create_topic("t", 1)
        producer = broker.producer()
        producer.send("t", b"warm-up")
        await producer.flush(5)
        consumer = broker.consumer(["t"], "g")
        while not await consumer.fetch(10, 0.5):
            pass
        private_tansu.stop()
        producer.send("t", b"never")
        with pytest.raises(PublishError):
            await producer.flush(5)
        calls = {
            "describe_topic": broker.describe_topic("t"),
            "create_topic": broker.create_topic("u", 1),
            "list_topics": broker.list_topics(),
            "lag": broker.lag("g", ["t"]),
            "groups": broker.groups(),
            "commit": consumer.commit({TopicPartition("t", 0): 0}),
        }
        for what, call in calls.items():
            with pytest.raises(SpateError):  # noqa: PT012 - names the call that did not fail
                await asyncio.wait_for(call, 30)
                pytest.fail(f"{what} did not fail")
        await consumer.close()
        await producer.close()
