"""Kafka transactions through the adapter, on Apache Kafka (the reference: Tansu shows
aborted records to read_committed readers, so it proves nothing here)."""

from __future__ import annotations

from pathlib import Path

import pytest

import spate
from spate.brokers.kafka import KafkaBroker
from spate.errors import CapabilityError, FencedError
from spate.record import Record, TopicPartition
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
