"""A commit Apache Kafka refuses during a rebalance, and what at-least-once makes of it.

When a second member joins, cooperative-sticky rebalances in two rounds: the first
member gives up the partitions that move, then joins again at once, and its JoinGroup
waits for the newcomer. A commit it sends meanwhile waits behind that JoinGroup on
the coordinator's connection, and is answered once the group moved to the next
generation: refused with ILLEGAL_GENERATION, though the partition stays with the
member. Nothing is processed after it, so only at-least-once's bookkeeping can bring
the committed offset up to date before the clean stop (issue 9, point 5).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from spate.brokers.kafka import KafkaBroker
from spate.brokers.kafka.consumer import KafkaConsumer
from spate.record import Record, TopicPartition
from spate.runtime.delivery import AtLeastOnce
from spate.runtime.stats import ProcessorStats

pytestmark = pytest.mark.slow


class DeliveryListener:
    """What the runtime's Worker does on a rebalance, for a delivery driven by hand."""

    def __init__(self) -> None:
        self.delivery: AtLeastOnce | None = None

    async def on_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        return None

    async def on_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        assert self.delivery is not None
        await self.delivery.on_revoked(partitions)

    async def on_lost(self, partitions: Sequence[TopicPartition]) -> None:
        assert self.delivery is not None
        await self.delivery.on_lost(partitions)


@pytest.fixture
async def member(kafka: KafkaBroker, name: str) -> AsyncIterator[tuple[KafkaConsumer, AtLeastOnce]]:
    """A consumer of topic ``name`` (2 partitions) with at-least-once delivery."""
    await kafka.create_topic(name, 2)
    listener = DeliveryListener()
    consumer = kafka.consumer([name], name, listener)
    producer = kafka.producer()
    delivery = AtLeastOnce(producer, consumer, ProcessorStats(processor="p", group=name))
    listener.delivery = delivery
    async with producer, consumer:
        yield consumer, delivery


async def fetch_until(consumer: KafkaConsumer, done: Callable[[], bool]) -> None:
    """Fetch (which runs the rebalance callbacks) until ``done()``."""
    async with asyncio.timeout(30):
        while not done():
            assert not await consumer.fetch(100, 0.2)


async def fetch_n(consumer: KafkaConsumer, count: int) -> list[Record]:
    records: list[Record] = []
    async with asyncio.timeout(30):
        while len(records) < count:
            records.extend(await consumer.fetch(count - len(records), 0.2))
    return records


@pytest.mark.parametrize("stop_during_rebalance", [False, True])
async def test_a_commit_refused_during_a_rebalance_is_made_before_a_clean_stop(
    kafka: KafkaBroker,
    name: str,
    member: tuple[KafkaConsumer, AtLeastOnce],
    stop_during_rebalance: bool,
) -> None:
    """Stopping while the rebalance still runs, the stop's own commits are often
    refused too (REBALANCE_IN_PROGRESS): the revocation at close asks again."""
    consumer, delivery = member
    await fetch_until(consumer, lambda: len(consumer.assignment()) == 2)
    newcomer = kafka.consumer([name], name)
    joining = asyncio.create_task(fetch_until(newcomer, lambda: bool(newcomer.assignment())))
    await fetch_until(consumer, lambda: len(consumer.assignment()) == 1)
    [kept] = consumer.assignment()
    async with kafka.producer() as producer:
        for i in range(20):
            producer.send(name, b"%d" % i, partition=kept.partition)
    records = await fetch_n(consumer, 20)
    await delivery.begin_batch()
    await delivery.end_batch([], {kept: records[-1].offset}, records)
    await delivery.settle()
    assert delivery.stats.commit_failures >= 1, "the rebalance did not refuse the commit"
    assert consumer.assignment() == {kept}
    if not stop_during_rebalance:
        await joining
    # A clean stop, as the Worker makes it: settle, then close (which revokes).
    await delivery.settle()
    await consumer.close()
    await joining
    await newcomer.close()
    [lag] = [lag for lag in await kafka.lag(name, [name]) if lag.partition == kept.partition]
    assert (lag.committed, lag.lag) == (20, 0), "the refused commit was never made again"
