"""A commit Apache Kafka refuses during a rebalance, and what at-least-once makes of it.

When a second member joins, cooperative-sticky rebalances in two rounds: the first
member gives up the partitions that move, then joins again at once. Here the newcomer
stalls (SIGSTOP, as a worker that hangs or is about to be killed) before the second
round, which then waits for its session to time out. A commit the first member sends
meanwhile waits behind its JoinGroup on the coordinator's connection and is answered
once the group moved to the next generation: refused with ILLEGAL_GENERATION, though
the partition stays with the member. Nothing is processed after it, so only
at-least-once's bookkeeping can bring the committed offset up to date before the
clean stop (issue 9, point 5); that stop usually meets the next round (the stalled
member's partition comes back) and has its own commit refused with
REBALANCE_IN_PROGRESS, which the revocation at close asks again.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

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
    """Fetch (which runs the rebalance callbacks) until ``done()``; records fetched
    meanwhile are not processed."""
    async with asyncio.timeout(30):
        while not done():
            await consumer.fetch(100, 0.2)


async def fetch_for(consumer: KafkaConsumer, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        await consumer.fetch(100, 0.1)


async def fetch_n(consumer: KafkaConsumer, count: int) -> list[Record]:
    records: list[Record] = []
    async with asyncio.timeout(30):
        while len(records) < count:
            records.extend(await consumer.fetch(count - len(records), 0.2))
    return records


NEWCOMER = """
import sys
import confluent_kafka

bootstrap, topic, group = sys.argv[1:]
consumer = confluent_kafka.Consumer({
    "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
    "partition.assignment.strategy": "cooperative-sticky",
    "session.timeout.ms": 6000, "heartbeat.interval.ms": 3000,
})
consumer.subscribe([topic])
while True:
    consumer.poll(0.1)
"""
"""A member in a process of its own, so that it can stall (SIGSTOP) mid-rebalance;
it heartbeats every 3 s, so it learns late that a second round began."""


@pytest.fixture
def start_newcomer(
    kafka: KafkaBroker, name: str
) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        bootstrap = kafka.url.removeprefix("kafka://")
        started.append(subprocess.Popen([sys.executable, "-c", NEWCOMER, bootstrap, name, name]))
        return started[-1]

    yield start
    for process in started:
        process.kill()
        process.wait()


async def test_a_commit_refused_during_a_rebalance_is_made_before_a_clean_stop(
    kafka: KafkaBroker,
    name: str,
    member: tuple[KafkaConsumer, AtLeastOnce],
    start_newcomer: Callable[[], subprocess.Popen[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer, delivery = member
    async with kafka.producer() as producer:
        for i in range(40):
            producer.send(name, b"%d" % i, partition=i % 2)
    records = await fetch_n(consumer, 40)
    # The newcomer's arrival takes a partition away; the newcomer then stalls, so the
    # rebalance's second round waits for its session to time out (6 s).
    newcomer = start_newcomer()
    await fetch_until(consumer, lambda: len(consumer.assignment()) == 1)
    newcomer.send_signal(signal.SIGSTOP)
    await fetch_for(consumer, 1.0)  # the member joined the second round: it waits
    [kept] = consumer.assignment()
    batch = [r for r in records if r.topic_partition == kept]
    await delivery.begin_batch()
    await delivery.end_batch([], {kept: batch[-1].offset}, batch)
    await delivery.settle()
    assert delivery.stats.commit_failures >= 1, "the rebalance did not refuse the commit"
    assert kept in consumer.assignment()
    # A clean stop, as the Worker makes it: settle, then close (which revokes).
    with caplog.at_level(logging.INFO, logger="spate.kafka"):
        await delivery.settle()
        await consumer.close()
    # The stalled member's partition, assigned while closing, is not checked: that
    # would wait timeout_s for committed offsets from a group this member is leaving.
    assert "could not check for retention gaps" not in caplog.text
    [lag] = [lag for lag in await kafka.lag(name, [name]) if lag.partition == kept.partition]
    assert (lag.committed, lag.lag) == (20, 0), "the refused commit was never made again"
