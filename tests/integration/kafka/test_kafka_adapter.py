"""The Kafka adapter against Apache Kafka: admin, publish, fetch, commit, seek, lag."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError
from confluent_kafka import TopicPartition as CkTopicPartition
from confluent_kafka.admin import AdminClient

import spate
from spate.app import App
from spate.brokers.base import OffsetReset
from spate.brokers.kafka import KafkaBroker
from spate.brokers.kafka.consumer import KafkaConsumer
from spate.errors import (
    ClosedError,
    ConfigError,
    ConnectError,
    TopicExistsError,
    TopicNotFoundError,
)
from spate.partitioner import partition_for_key
from spate.record import Record, TopicPartition
from spate.testing.app import TestApp
from spate.testing.contract import RecordingListener
from spate.testing.kafka_server import ServerProcess, free_port


async def fetch_n(consumer: spate.Consumer, n: int, timeout_s: float = 20.0) -> list[Record]:
    """Fetch until ``n`` records arrived (fails on timeout)."""
    records: list[Record] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(records) < n:
        assert asyncio.get_running_loop().time() < deadline, f"got {len(records)} of {n}"
        records.extend(await consumer.fetch(1000, 0.2))
    return records


async def test_topic_admin(kafka: KafkaBroker, name: str) -> None:
    info = await kafka.create_topic(
        name, 3, {"retention.ms": "3600000", "cleanup.policy": "delete", "replication.factor": "1"}
    )
    assert info.partitions == 3
    described = await kafka.describe_topic(name)
    assert described.partitions == 3
    assert described.config["retention.ms"] == "3600000"
    assert name in [t.name for t in await kafka.list_topics()]
    with pytest.raises(TopicExistsError):
        await kafka.create_topic(name, 3)
    assert (await kafka.create_topic(name, 5, exist_ok=True)).partitions == 3
    await kafka.delete_topic(name)
    assert name not in [t.name for t in await kafka.list_topics()]
    with pytest.raises(TopicNotFoundError):
        await kafka.describe_topic(name)
    with pytest.raises(TopicNotFoundError):
        await kafka.delete_topic(name)


async def test_publish_fetch_commit_lag(kafka: KafkaBroker, name: str) -> None:
    await kafka.create_topic(name, 4)
    async with kafka.producer() as producer:
        for i in range(1000):
            producer.send(name, b"v%d" % i, key=b"k%d" % (i % 50), headers=(("h", b"1"),))
        await producer.flush(10)
    async with kafka.consumer([name], name) as consumer:
        records = await fetch_n(consumer, 1000)
        assert len({(r.partition, r.offset) for r in records}) == 1000
        for r in records:
            assert r.key is not None
            assert r.partition == partition_for_key(r.key, 4), "keys land as spate.partitioner says"
            assert r.header("h") == b"1"
            assert r.timestamp_ms > 0
        assert consumer.assignment() == {TopicPartition(name, p) for p in range(4)}
        last: dict[TopicPartition, int] = {}
        for r in records:
            last[r.topic_partition] = max(last.get(r.topic_partition, -1), r.offset)
        await consumer.commit(last)
    lag = await kafka.lag(name, [name])
    assert [entry.lag for entry in lag] == [0, 0, 0, 0]
    assert sum(entry.end_offset for entry in lag) == 1000
    assert all(entry.committed == entry.end_offset for entry in lag)
    assert name in await kafka.groups()


async def topic_of_ten(kafka: KafkaBroker, name: str) -> None:
    """Topic ``name``, one partition, holding b"0" … b"9"."""
    await kafka.create_topic(name, 1)
    async with kafka.producer() as producer:
        for i in range(10):
            producer.send(name, b"%d" % i)


async def test_new_group_starts_earliest_and_resumes_after_commit(
    kafka: KafkaBroker, name: str
) -> None:
    await topic_of_ten(kafka, name)
    async with kafka.consumer([name], name) as consumer:
        records = await fetch_n(consumer, 10)
        assert [r.value for r in records] == [b"%d" % i for i in range(10)]
        await consumer.commit({TopicPartition(name, 0): 4})
    lag = await kafka.lag(name)
    assert (lag[0].committed, lag[0].end_offset, lag[0].lag) == (5, 10, 5)
    async with kafka.consumer([name], name) as consumer:
        records = await fetch_n(consumer, 5)
        assert [r.offset for r in records] == [5, 6, 7, 8, 9]
    async with kafka.consumer([name], name + "-late", offset_reset="latest") as consumer:
        assert await consumer.fetch(100, 1.0) == []


async def test_commit_without_waiting_lands_and_a_failure_is_logged(
    kafka: KafkaBroker, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    await topic_of_ten(kafka, name)
    async with kafka.consumer([name], name) as consumer:
        await fetch_n(consumer, 10)
        await consumer.commit({TopicPartition(name, 0): 6}, wait=False)
        deadline = asyncio.get_running_loop().time() + 20
        while (await kafka.lag(name, [name]))[0].committed != 7:
            assert asyncio.get_running_loop().time() < deadline, "commit never landed"
            await consumer.fetch(10, 0.1)  # serves librdkafka's commit callback
        assert isinstance(consumer, KafkaConsumer)
        with caplog.at_level(logging.WARNING, logger="spate.kafka"):
            consumer._on_commit(
                KafkaError(KafkaError.REBALANCE_IN_PROGRESS), [CkTopicPartition(name, 0, 9)]
            )
        assert f"event=commit_failed group={name} partitions={name}[0]" in caplog.text


async def test_seek(kafka: KafkaBroker, name: str) -> None:
    await kafka.create_topic(name, 1)
    async with kafka.producer() as producer:
        for i in range(20):
            producer.send(name, b"%d" % i)
    tp = TopicPartition(name, 0)
    async with kafka.consumer([name], name) as consumer:
        await fetch_n(consumer, 20)
        await consumer.seek(tp, 7)
        again = await fetch_n(consumer, 13)
        assert [r.offset for r in again] == list(range(7, 20))


async def test_seek_inside_on_assigned(kafka: KafkaBroker, name: str) -> None:
    await kafka.create_topic(name, 2)
    async with kafka.producer() as producer:
        for i in range(20):
            producer.send(name, b"%d" % i, partition=i % 2)

    class SeekOnAssign(RecordingListener):
        consumer: spate.Consumer

        async def on_assigned(self, partitions: Sequence[TopicPartition]) -> None:
            await super().on_assigned(partitions)
            for tp in partitions:
                await self.consumer.seek(tp, 8)

    listener = SeekOnAssign()
    async with kafka.consumer([name], name, listener) as consumer:
        listener.consumer = consumer
        records = await fetch_n(consumer, 4)
        assert sorted((r.partition, r.offset) for r in records) == [(0, 8), (0, 9), (1, 8), (1, 9)]


async def test_rebalance_between_two_members(kafka: KafkaBroker, name: str) -> None:
    """Cooperative rebalance: the first member's listener sees the revocation inside
    fetch() and can commit there; the second resumes from that commit."""
    await kafka.create_topic(name, 4)
    async with kafka.producer() as producer:
        for i in range(400):
            producer.send(name, b"%d" % i, key=b"%d" % i)
    first_events = RecordingListener()
    committed_on_revoke: list[TopicPartition] = []
    first = kafka.consumer([name], name, first_events)
    seen: dict[TopicPartition, int] = {}

    class CommitOnRevoke(RecordingListener):
        async def on_revoked(self, partitions: Sequence[TopicPartition]) -> None:
            await super().on_revoked(partitions)
            done = {tp: seen[tp] for tp in partitions if tp in seen}
            await first.commit(done)
            committed_on_revoke.extend(done)

    listener = CommitOnRevoke()
    first._listener = listener
    await first.start()
    for r in await fetch_n(first, 400):
        seen[r.topic_partition] = max(seen.get(r.topic_partition, -1), r.offset)
    assert len(first.assignment()) == 4
    second_events = RecordingListener()
    second = kafka.consumer([name], name, second_events)
    second_task = asyncio.create_task(fetch_n(second, 1, timeout_s=30))
    async with asyncio.timeout(30):
        while len(first.assignment()) == 4 or not second.assignment():
            await first.fetch(100, 0.2)
    assert first.assignment().isdisjoint(second.assignment())
    assert len(first.assignment() | second.assignment()) == 4
    assert listener.events[0][0] == "assigned"
    assert any(kind == "revoked" for kind, _ in listener.events)
    assert sorted(committed_on_revoke) == sorted(second.assignment())
    async with kafka.producer() as producer:
        for tp in second.assignment():
            producer.send(name, b"new", partition=tp.partition)
    new = await second_task
    assert all(r.value == b"new" for r in new), "the second member resumed after the commit"
    await second.close()
    await first.close()


async def test_fetch_after_close_and_missing_topic(kafka: KafkaBroker, name: str) -> None:
    consumer = kafka.consumer([name], name)
    with pytest.raises(TopicNotFoundError):
        await consumer.start()
    await consumer.close()
    with pytest.raises(ClosedError):
        await consumer.fetch(1, 0.1)
    producer = kafka.producer()
    with pytest.raises(TopicNotFoundError):
        producer.send(name, b"x")
    await producer.close()


async def test_bad_property_is_config_error(kafka_server: ServerProcess) -> None:
    with pytest.raises(ConfigError, match=r"no\.such\.property"):
        async with spate.connect(kafka_server.url, kafka_config={"no.such.property": 1}):
            pass
    with pytest.raises(ConfigError, match="unknown option"):
        spate.connect(kafka_server.url, kafka_conf={"acks": "all"})


async def run_and_expect_librdkafka_to_refuse(app: App) -> None:
    app.stream(app.topic("kafka-config-in"), group="g").to(app.topic("kafka-config-out"))
    with pytest.raises(ConfigError, match=r"no\.such\.property"):
        await app.run_async()


async def test_app_passes_kafka_config_to_librdkafka(kafka_server: ServerProcess) -> None:
    options = {"kafka_config": {"no.such.property": 1}}
    app = App("kafka-config", broker=kafka_server.url, broker_options=options)
    await run_and_expect_librdkafka_to_refuse(app)


async def test_app_kafka_config_still_works_with_a_deprecation_warning(
    kafka_server: ServerProcess,
) -> None:
    with pytest.warns(DeprecationWarning, match="broker_options"):
        app = App("kafka-config", broker=kafka_server.url, kafka_config={"no.such.property": 1})
    await run_and_expect_librdkafka_to_refuse(app)


async def test_url_query_passes_through(kafka_server: ServerProcess, name: str) -> None:
    url = f"{kafka_server.url}?compression.type=lz4&client.id=from-url"
    async with spate.connect(url) as broker:
        producer = broker.producer()
        assert isinstance(broker, KafkaBroker)
        await broker.create_topic(name, 1)
        producer.send(name, b"x" * 1000)
        await producer.flush(10)
        await producer.close()
    with pytest.raises(ConfigError, match="compression"):
        async with spate.connect(f"{kafka_server.url}?compression.type=nope") as broker:
            broker.producer()


async def test_unreachable_broker_is_connect_error() -> None:
    url = f"kafka://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectError):
        async with spate.connect(url, timeout_s=2):
            pass


@pytest.mark.parametrize(("policy", "resume", "skipped"), [("earliest", 8, 4), ("latest", 10, 6)])
async def test_committed_offset_deleted_by_retention_follows_policy_and_is_logged(
    kafka: KafkaBroker,
    kafka_server: ServerProcess,
    name: str,
    caplog: pytest.LogCaptureFixture,
    policy: OffsetReset,
    resume: int,
    skipped: int,
) -> None:
    """Retention is simulated exactly with DeleteRecords: the log start moves past the
    committed offset, as when retention deletes old segments."""
    await kafka.create_topic(name, 1)
    tp = TopicPartition(name, 0)
    async with kafka.producer() as producer:
        for i in range(10):
            producer.send(name, b"%d" % i)
    async with kafka.consumer([name], name) as consumer:
        await fetch_n(consumer, 10)
        await consumer.commit({tp: 3})
    admin = AdminClient({"bootstrap.servers": kafka_server.bootstrap})
    deleted = admin.delete_records([CkTopicPartition(name, 0, 8)])
    await asyncio.wrap_future(deleted[CkTopicPartition(name, 0, 8)])
    caplog.set_level(logging.WARNING, "spate.kafka")
    async with kafka.consumer([name], name, offset_reset=policy) as consumer:
        records: list[Record] = []
        for _ in range(10):  # join, then let the out-of-range reset happen
            records += await consumer.fetch(100, 0.2)
        async with kafka.producer() as producer:
            producer.send(name, b"new")
        records += await fetch_n(consumer, 1)
        assert records[0].offset == resume
        assert records[-1].value == b"new"
    assert (
        f"committed=4 earliest=8 resume={resume} policy={policy} skipped={skipped}" in caplog.text
    )


async def test_a_session_timeout_the_broker_refuses_fails_fetch(
    kafka_server: ServerProcess, name: str
) -> None:
    """librdkafka would retry JoinGroup forever; spate fails with ConfigError."""
    config = {"session.timeout.ms": 600, "heartbeat.interval.ms": 100}
    async with spate.connect(kafka_server.url, kafka_config=config) as broker:
        await broker.create_topic(name, 1)
        async with broker.consumer([name], name) as consumer:

            async def fetch_for_ten_seconds() -> None:
                for _ in range(50):
                    await consumer.fetch(10, 0.2)

            with pytest.raises(ConfigError, match="INVALID_SESSION_TIMEOUT"):
                await fetch_for_ten_seconds()


def test_configuration_precedence_and_unsafe_defaults() -> None:
    """spate defaults < URL query < kafka_config; nothing dropped or renamed."""
    from spate.brokers.kafka.config import KafkaOptions, KafkaSettings
    from spate.brokers.url import parse_broker_url

    parsed = parse_broker_url("kafka://u:pw@h1:9093,h2?linger.ms=20&acks=1&fetch.min.bytes=7")
    settings = KafkaSettings(parsed, KafkaOptions(kafka_config={"acks": "all", "custom.x": "y"}))
    producer = settings.producer("tx-1")
    assert producer["bootstrap.servers"] == "h1:9093,h2:9092"
    assert (producer["sasl.username"], producer["sasl.password"]) == ("u", "pw")
    assert producer["linger.ms"] == "20", "the URL beats spate's default"
    assert producer["acks"] == "all", "kafka_config beats the URL"
    assert producer["custom.x"] == "y", "unknown properties reach librdkafka (which judges)"
    assert producer["enable.idempotence"] is True
    assert producer["transactional.id"] == "tx-1"
    assert producer["transaction.timeout.ms"] == 10_000, "a killed worker's open transaction"
    assert "transaction.timeout.ms" not in settings.producer(None)
    consumer = settings.consumer("g", "latest")
    assert consumer["enable.auto.commit"] is False
    assert consumer["enable.auto.offset.store"] is False
    assert consumer["check.crcs"] is True
    assert consumer["auto.offset.reset"] == "latest"
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["fetch.min.bytes"] == "7"
    assert "group.instance.id" not in consumer
    assert settings.consumer("g", "latest", "web-1")["group.instance.id"] == "web-1"


async def test_plain_functions_run_on_the_event_loop(
    kafka_server: ServerProcess, name: str
) -> None:
    """librdkafka's threads keep the member alive, so a batch needs no hand-off to a
    user thread and back."""
    app = App(name, broker=kafka_server.url)
    seen: list[str] = []

    def note(value: Any) -> Any:
        seen.append(threading.current_thread().name)
        return value

    app.stream(app.topic(f"{name}-in"), group=name).map(note).to(app.topic(f"{name}-out"))
    async with TestApp(app, broker=kafka_server.url, timeout_s=60) as test:
        test.send(f"{name}-in", {"n": 1})
        await test.run_until_idle_async()
    assert seen == [threading.current_thread().name]


async def test_closing_the_broker_closes_its_producers_and_consumers(
    kafka_server: ServerProcess, name: str
) -> None:
    broker = spate.connect(kafka_server.url)
    await broker.start()
    await broker.create_topic(name, 1)
    listener = RecordingListener()
    consumer = broker.consumer([name], name, listener)
    producer = broker.producer()
    producer.send(name, b"first")
    await producer.flush()
    await fetch_n(consumer, 1)
    producer.send(name, b"buffered")
    await broker.close()
    assert listener.events[-1] == ("revoked", (TopicPartition(name, 0),))
    with pytest.raises(ClosedError):
        producer.send(name, b"late")
    with pytest.raises(ClosedError):
        await consumer.fetch(1, 0.1)
    async with spate.connect(kafka_server.url) as again, again.consumer([name], name + "-2") as c:
        assert [r.value for r in await fetch_n(c, 2)] == [b"first", b"buffered"]
