"""Delivery strategies on the real memory:// broker: when outputs and offsets land."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping

import pytest

import spate
from spate.brokers.base import Broker, Consumer
from spate.clock import ManualClock
from spate.errors import CommitError, FencedError
from spate.record import Record, TopicPartition
from spate.runtime import delivery as delivery_module
from spate.runtime.delivery import AtLeastOnce, ExactlyOnce
from spate.runtime.stats import ProcessorStats

IN = TopicPartition("in", 0)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    async with spate.connect("memory://delivery") as b:
        await b.create_topic("in", 1)
        await b.create_topic("out", 1)
        async with b.producer() as p:
            for i in range(6):
                p.send("in", str(i).encode(), partition=0)
            await p.flush()
        yield b


async def end_offsets(broker: Broker) -> tuple[int | None, int]:
    """(committed position of group g on `in`, records in `out`)."""
    [lag_in] = await broker.lag("g", ["in"])
    [lag_out] = await broker.lag("nobody", ["out"])
    return lag_in.committed, lag_out.end_offset


async def run_batch(delivery: AtLeastOnce | ExactlyOnce, records: list[Record]) -> None:
    await delivery.begin_batch()
    outputs = [("out", r.value, r.key, r) for r in records]
    await delivery.end_batch(outputs, {IN: records[-1].offset}, records)
    await delivery.checkpoint()


async def started_consumer(broker: Broker) -> tuple[Consumer, list[Record]]:
    consumer = broker.consumer(["in"], "g")
    await consumer.start()
    records = await consumer.fetch(100, 1.0)
    assert len(records) == 6
    return consumer, records


async def test_at_least_once_commits_a_batch_once_the_next_one_ends(broker: Broker) -> None:
    consumer, records = await started_consumer(broker)
    producer = broker.producer()
    delivery = AtLeastOnce(producer, consumer, ProcessorStats(processor="p", group="g"))
    async with producer, consumer:
        await run_batch(delivery, records[:3])
        assert await end_offsets(broker) == (None, 0)  # in flight with the next batch
        await run_batch(delivery, records[3:])
        assert await end_offsets(broker) == (3, 3)  # batch 1 settled while batch 2 ran
        await delivery.settle()
        assert await end_offsets(broker) == (6, 6)
    assert delivery.stats.commits == 2


Commits = list[tuple[dict[TopicPartition, int], bool]]


@pytest.fixture
async def spied(broker: Broker) -> AsyncIterator[tuple[AtLeastOnce, list[Record], Commits]]:
    """At-least-once over a started consumer whose commits are recorded as
    (offsets, wait), and still made."""
    consumer, records = await started_consumer(broker)
    calls: Commits = []
    commit = consumer.commit

    async def spy(through: Mapping[TopicPartition, int], *, wait: bool = True) -> None:
        calls.append((dict(through), wait))
        await commit(through, wait=wait)

    consumer.commit = spy  # type: ignore[method-assign]
    producer = broker.producer()
    async with producer, consumer:
        stats = ProcessorStats(processor="p", group="g")
        yield AtLeastOnce(producer, consumer, stats), records, calls


async def test_pipelined_commits_do_not_wait_and_settle_confirms_them(
    broker: Broker, spied: tuple[AtLeastOnce, list[Record], Commits]
) -> None:
    """Commits overlapping the next batch are sent with wait=False; settling (idle,
    revoke, stop) commits the same offsets again and waits for them, once."""
    delivery, records, calls = spied
    await run_batch(delivery, records[:2])
    await run_batch(delivery, records[2:4])
    await run_batch(delivery, records[4:])
    assert calls == [({IN: 1}, False), ({IN: 3}, False)]
    await delivery.begin_batch()  # batch 3 committed without waiting
    await delivery.abort_batch([])
    assert calls[-1] == ({IN: 5}, False)
    await delivery.settle()
    assert calls[-1] == ({IN: 5}, True)
    await delivery.settle()
    assert len(calls) == 4
    assert await end_offsets(broker) == (6, 6)


async def test_lost_partitions_are_not_confirmed(
    spied: tuple[AtLeastOnce, list[Record], Commits],
) -> None:
    delivery, records, calls = spied
    await run_batch(delivery, records[:3])
    await run_batch(delivery, records[3:])
    assert calls == [({IN: 2}, False)]
    await delivery.on_lost([IN])
    await delivery.settle()
    assert calls == [({IN: 2}, False)]


async def test_at_least_once_drops_lost_partitions_and_never_commits_them(
    broker: Broker,
) -> None:
    consumer, records = await started_consumer(broker)
    producer = broker.producer()
    delivery = AtLeastOnce(producer, consumer, ProcessorStats(processor="p", group="g"))
    async with producer, consumer:
        await run_batch(delivery, records[:3])
        await delivery.on_lost([IN])
        await delivery.settle()
        assert await end_offsets(broker) == (None, 3)  # outputs may repeat; offsets stay


class Refusing:
    """Makes the consumer's next ``count`` commits fail with ``error``, as a group in
    the middle of a rebalance does; the commits after them are made."""

    def __init__(self, consumer: Consumer, error: type[Exception]) -> None:
        self.error = error
        self.count = 0
        self.refused = 0
        self._commit = consumer.commit
        consumer.commit = self.commit  # type: ignore[method-assign]

    def refuse(self, count: int) -> None:
        self.count = count

    async def commit(self, through: Mapping[TopicPartition, int], *, wait: bool = True) -> None:
        if self.count:
            self.count -= 1
            self.refused += 1
            raise self.error(f"refused: commit {dict(through)}")
        await self._commit(through, wait=wait)


Refused = tuple[AtLeastOnce, list[Record], Refusing]


@pytest.fixture(params=[CommitError, FencedError])
async def refusing(broker: Broker, request: pytest.FixtureRequest) -> AsyncIterator[Refused]:
    """At-least-once over a consumer that refuses commits when told, as Kafka does
    during a rebalance: REBALANCE_IN_PROGRESS is a CommitError, ILLEGAL_GENERATION
    (a commit of the generation the rebalance replaced) a FencedError."""
    consumer, records = await started_consumer(broker)
    refusing = Refusing(consumer, request.param)
    producer = broker.producer()
    async with producer, consumer:
        stats = ProcessorStats(processor="p", group="g")
        yield AtLeastOnce(producer, consumer, stats), records, refusing


async def test_a_refused_commit_of_an_owned_partition_is_made_by_the_next_one(
    broker: Broker, refusing: Refused
) -> None:
    """The partition stays here: with no records after the refused commit, only the
    next commit can bring the committed offset up to date."""
    delivery, records, refusal = refusing
    await run_batch(delivery, records[:3])
    await run_batch(delivery, records[3:])  # batch 1 committed without waiting
    refusal.refuse(1)
    await delivery.settle()
    assert refusal.refused == 1
    assert await end_offsets(broker) == (3, 6)
    await delivery.settle()  # idle: commit again
    assert await end_offsets(broker) == (6, 6)


async def test_a_commit_refused_on_revoke_is_asked_again_before_release(
    broker: Broker, refusing: Refused
) -> None:
    """Revoke (and every stop, which revokes) is the last chance to commit: the next
    owner would re-read what was processed here."""
    delivery, records, refusal = refusing
    await run_batch(delivery, records[:3])
    await run_batch(delivery, records[3:])
    refusal.refuse(3)
    await delivery.on_revoked([IN])
    assert refusal.refused == 3
    assert await end_offsets(broker) == (6, 6)


async def test_commits_asked_again_on_revoke_wait_on_the_injected_clock(
    broker: Broker, refusing: Refused
) -> None:
    """The pauses between the asks are the clock's: a manual clock drives them, so
    the schedule is tested without sleeping."""
    at_least_once, records, refusal = refusing
    clock = ManualClock()
    delivery = AtLeastOnce(
        at_least_once.producer, at_least_once.consumer, at_least_once.stats, clock=clock
    )
    await run_batch(delivery, records)
    refusal.refuse(2)
    revoking = asyncio.create_task(delivery.on_revoked([IN]))
    for ask in (1, 2):
        clock.advance(await asyncio.wait_for(clock.asked(ask), 5.0))
    await asyncio.wait_for(revoking, 5.0)
    assert clock.sleeps == list(delivery_module.REVOKE_RETRY_DELAYS_S[:2])
    assert await end_offsets(broker) == (6, 6)


async def test_a_commit_refused_on_every_retry_is_abandoned_and_logged(
    broker: Broker,
    refusing: Refused,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(delivery_module, "REVOKE_RETRY_DELAYS_S", (0.0, 0.0))
    delivery, records, refusal = refusing
    await run_batch(delivery, records[:3])
    refusal.refuse(100)
    with caplog.at_level(logging.WARNING, logger="spate.runtime"):
        await delivery.on_revoked([IN])
    assert refusal.refused == 3
    assert "event=commit_abandoned processor=p partitions=in[0] offsets=3" in caplog.text
    refusal.refuse(0)
    await delivery.settle()  # released: never committed by this member again
    assert refusal.refused == 3
    assert await end_offsets(broker) == (None, 3)


async def test_a_commit_without_waiting_that_fails_later_is_made_by_settle(
    broker: Broker, refusing: Refused
) -> None:
    """On Kafka a wait=False commit's failure only reaches a log line (librdkafka's
    on_commit callback): its offsets stay unconfirmed until a waiting commit lands."""
    delivery, records, refusal = refusing
    made = refusal._commit

    async def fails_later(through: Mapping[TopicPartition, int], *, wait: bool = True) -> None:
        if wait:
            await made(through, wait=True)

    refusal._commit = fails_later
    await run_batch(delivery, records[:3])
    await run_batch(delivery, records[3:])
    await delivery.begin_batch()  # batch 2 committed without waiting, and lost
    await delivery.abort_batch([])
    assert await end_offsets(broker) == (None, 6)
    refusal.refuse(1)
    await delivery.settle()  # refused as well
    assert await end_offsets(broker) == (None, 6)
    await delivery.settle()
    assert await end_offsets(broker) == (6, 6)


@pytest.mark.parametrize("refusing", [FencedError], indirect=True)
async def test_a_fenced_commit_drops_partitions_owned_elsewhere(
    broker: Broker, refusing: Refused, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery, records, refusal = refusing
    await run_batch(delivery, records[:3])
    monkeypatch.setattr(delivery.consumer, "assignment", frozenset)
    refusal.refuse(1)
    await delivery.settle()
    await delivery.settle()
    assert refusal.refused == 1
    assert await end_offsets(broker) == (None, 3)


async def test_exactly_once_rewinds_a_failed_transaction(broker: Broker) -> None:
    consumer, records = await started_consumer(broker)
    producer = broker.producer(transactional_id="t")
    delivery = ExactlyOnce(producer, consumer, ProcessorStats(processor="p", group="g"))
    async with producer, consumer:
        await run_batch(delivery, records[:3])
        assert await end_offsets(broker) == (3, 3)
        await delivery.begin_batch()
        producer.send("out", b"x")
        await delivery.abort_batch(records[3:])
        assert await end_offsets(broker) == (3, 3)
        again = await consumer.fetch(100, 1.0)
        assert [r.offset for r in again] == [3, 4, 5]
