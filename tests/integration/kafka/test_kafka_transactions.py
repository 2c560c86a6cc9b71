"""Kafka transactions through the adapter, on Apache Kafka (the reference: Tansu shows
aborted records to read_committed readers, so it proves nothing here)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

import spate
from spate.brokers.kafka import KafkaBroker
from spate.errors import CapabilityError, FencedError
from spate.record import Record, TopicPartition
from spate.testing.contract import RecordingListener
from spate.testing.kafka_server import ServerProcess, session_server, start_apache_kafka

REPO = Path(__file__).resolve().parents[3]


async def read_committed(broker: KafkaBroker, topic: str) -> list[Record]:
    """Everything committed in ``topic``: each partition read up to its last stable
    offset by a reader (read_committed, no group)."""
    got: list[Record] = []
    for partition in range((await broker.describe_topic(topic)).partitions):
        async with broker.reader(topic, partition) as reader:
            got.extend(await reader.read_to_end(30.0))
    return got


async def test_committed_outputs_and_offsets_are_one_unit(kafka: KafkaBroker, name: str) -> None:
    source, sink = f"{name}-in", f"{name}-out"
    await kafka.create_topic(source, 1)
    await kafka.create_topic(sink, 2)
    async with kafka.producer() as plain:
        for i in range(30):
            plain.send(source, b"%d" % i)
    producer = kafka.producer(transactional_id=f"tx-{name}")
    async with producer, kafka.consumer([source], name) as consumer:
        records: list[Record] = []
        while len(records) < 30:
            records += await consumer.fetch(10, 0.5)
        for start in (0, 10, 20):
            await producer.begin_transaction()
            for r in records[start : start + 10]:
                producer.send(sink, r.value, key=r.value)
            if start == 10:
                await producer.abort_transaction()
                continue
            await producer.commit_transaction(
                consumer, {TopicPartition(source, 0): records[start + 9].offset}
            )
    seen = sorted(int(r.value) for r in await read_committed(kafka, sink))
    assert seen == [*range(10), *range(20, 30)], "the aborted transaction is invisible"
    (lag,) = await kafka.lag(name, [source])
    assert lag.committed == records[29].offset + 1


async def test_a_revocation_commits_the_open_transaction_from_inside_the_fetch(
    kafka: KafkaBroker, name: str
) -> None:
    """What the exactly-once runtime does when a member joins: the revocation's
    listener commits the open transaction with the offsets of the last fetch. Their
    resume positions and the group metadata are read while librdkafka's consume call
    waits in the callback, which once deadlocked until the rebalance timeout."""
    source, sink = f"{name}-in", f"{name}-out"
    await kafka.create_topic(source, 4)
    await kafka.create_topic(sink, 1)
    plain = kafka.producer()
    for i in range(40):
        plain.send(source, b"%d" % i, partition=i % 4)
    await plain.flush()
    producer = kafka.producer(transactional_id=f"tx-{name}")
    seen: dict[TopicPartition, int] = {}
    committed_on_revoke: list[dict[TopicPartition, int]] = []

    class CommitOnRevoke(RecordingListener):
        async def on_revoked(self, partitions: Sequence[TopicPartition]) -> None:
            await super().on_revoked(partitions)
            if committed_on_revoke:
                return  # closing: the transaction is committed already
            await producer.commit_transaction(first, seen)
            committed_on_revoke.append(dict(seen))
            for partition in range(4):  # the records of the partitions kept end the fetch
                plain.send(source, b"after", partition=partition)
            await plain.flush()

    first = kafka.consumer([source], name, CommitOnRevoke())
    async with producer, first:
        await producer.begin_transaction()
        fetched = 0
        while fetched < 40:
            records = await first.fetch(40 - fetched, 5.0)
            for r in records:
                producer.send(sink, r.value)
                seen[r.topic_partition] = r.offset
            fetched += len(records)
        async with kafka.consumer([source], name) as second:
            joining = asyncio.create_task(second.fetch(2, 10.0))
            async with asyncio.timeout(30):
                while not committed_on_revoke:  # two partitions kept: two records
                    assert not await first.fetch(2, 10.0) or committed_on_revoke
            await joining
    assert committed_on_revoke == [{TopicPartition(source, p): 9 for p in range(4)}]
    assert sorted(int(r.value) for r in await read_committed(kafka, sink)) == list(range(40))
    lag = await kafka.lag(name, [source])
    assert {entry.partition: entry.committed for entry in lag} == dict.fromkeys(range(4), 10)
    await plain.close()


async def test_a_producer_fenced_by_its_transaction_timeout_recovers_at_the_next_transaction(
    kafka_server: ServerProcess, name: str
) -> None:
    """A worker paused past ``transaction.timeout.ms``: the coordinator aborts its
    transaction and bumps the producer's epoch, so its commit is fenced. The producer
    must not stay fenced for ever: the next transaction starts on a new client, and
    closing the fenced one does not fail on what it could never deliver."""
    async with spate.connect(f"{kafka_server.url}?transaction.timeout.ms=1000") as broker:
        assert isinstance(broker, KafkaBroker)
        await broker.create_topic(name, 1)
        producer = broker.producer(transactional_id=f"tx-{name}")
        async with broker.consumer([name], name) as consumer:
            await consumer.start()
            await producer.begin_transaction()
            producer.send(name, b"timed out")
            await asyncio.sleep(3)  # the server aborts timed-out transactions every second
            producer.send(name, b"after the timeout")
            with pytest.raises(FencedError):
                await producer.commit_transaction(consumer, {})
            await producer.begin_transaction()
            producer.send(name, b"next")
            await producer.commit_transaction(consumer, {})
        await producer.close()
        assert [r.value for r in await read_committed(broker, name)] == [b"next"]


async def test_a_restarted_producer_fences_its_zombie(kafka: KafkaBroker, name: str) -> None:
    """Same transactional.id: the new producer's init fences the old one, whose commit
    fails with FencedError and whose records never become visible."""
    await kafka.create_topic(name, 1)
    zombie = kafka.producer(transactional_id=f"tx-{name}")
    await zombie.start()
    await zombie.begin_transaction()
    zombie.send(name, b"zombie")
    await zombie.flush()
    successor = kafka.producer(transactional_id=f"tx-{name}")
    await successor.start()
    await successor.begin_transaction()
    successor.send(name, b"successor")
    async with kafka.consumer([name], name) as consumer:
        await consumer.start()
        zombie.send(name, b"zombie-2")
        with pytest.raises(FencedError):
            await zombie.commit_transaction(consumer, {})
        await successor.commit_transaction(consumer, {})
    assert [r.value for r in await read_committed(kafka, name)] == [b"successor"]
    await successor.close()


async def test_exactly_once_on_a_broker_without_transactions_fails_at_start(
    tmp_path: Path, kafka_server: ServerProcess
) -> None:
    """A cluster that cannot host the transaction log (replication factor 3 on one node)
    gives a clear CapabilityError when the transactional producer starts."""
    if kafka_server.process is None:
        pytest.skip("needs a Kafka started by the tests (SPATE_TEST_KAFKA is external)")
    server = start_apache_kafka(
        tmp_path / "no-tx",
        cache_dir=REPO / ".cache",
        broker_config={"transaction.state.log.replication.factor": "3"},
    )
    try:
        async with spate.connect(server.url, timeout_s=4) as broker:
            producer = broker.producer(transactional_id="probe")
            with pytest.raises(CapabilityError, match="exactly-once needs Kafka transactions"):
                await producer.start()
    finally:
        server.stop()


def test_session_server_is_shared() -> None:
    """Both test directories get the same Apache Kafka process in one pytest run."""
    assert session_server("apache", REPO / ".cache") is session_server("apache", REPO / ".cache")
