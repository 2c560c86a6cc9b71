"""A broker that stops answering: every call fails with a spate error (never a
confluent-kafka one), a transaction whose commit timed out is recovered by recreating
the producer, and a broker that is down is named within seconds. Each test owns a
private Tansu (it starts in milliseconds), since these tests pause or kill the server."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import spate
from spate.app import App
from spate.errors import CommitError, ConfigError, ConnectError, PublishError, SpateError
from spate.record import TopicPartition
from spate.testing.kafka_server import ServerProcess, ServerUnavailable, free_port, start_tansu

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


DOWN_WITHIN_S = 10.0
"""A bound on noticing that no broker answers (the default probe waits 5 s), not a
speed claim: librdkafka itself would wait for the 30 s request timeout."""


async def test_connecting_to_a_closed_port_fails_soon_naming_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ConnectError, match=rf"cannot reach Kafka at kafka://{address} within"):
        async with spate.connect(f"kafka://{address}"):
            pass
    assert time.monotonic() - started < DOWN_WITHIN_S


async def test_an_app_on_a_closed_port_fails_to_start_soon_naming_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    app = App("down", broker=f"kafka://{address}")

    @app.handler(app.topic("in"))
    def ignore(value: object) -> None:
        return None

    started = time.monotonic()
    with pytest.raises(ConnectError, match=rf"kafka://{address}"):
        await app.run_async()
    assert time.monotonic() - started < DOWN_WITHIN_S


@pytest.mark.parametrize("value", [0, -1, "soon"])
def test_connect_timeout_must_be_a_positive_number_of_seconds(value: object) -> None:
    with pytest.raises(ConfigError, match=r"connect_timeout_s=.* positive number of seconds"):
        spate.connect("kafka://127.0.0.1:9092", connect_timeout_s=value)


async def test_a_consumer_says_at_once_that_the_broker_went_down(
    private_tansu: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async with spate.connect(private_tansu.url, timeout_s=5, kafka_config=TANSU_GROUPS) as broker:
        await broker.create_topic("t", 1)
        async with broker.producer() as producer:
            producer.send("t", b"x")
        consumer = broker.consumer(["t"], "g")
        while not await consumer.fetch(10, 0.5):
            pass
        with caplog.at_level(logging.WARNING, logger="spate.kafka"):
            private_tansu.stop()
            deadline = time.monotonic() + DOWN_WITHIN_S
            while "event=broker_unavailable" not in caplog.text:
                assert time.monotonic() < deadline, "the outage was not reported"
                await consumer.fetch(10, 0.2)  # serves librdkafka's error callback
        assert f"event=broker_unavailable address={private_tansu.url} group=g" in caplog.text
        await consumer.close()
