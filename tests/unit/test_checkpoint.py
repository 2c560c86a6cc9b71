"""The commit order (runtime/checkpoint.py) on the real memory:// broker: pre-commit
hooks write before the offsets are committed, inside the transaction under
exactly-once, and a failing hook means no commit; a checkpoint covers every batch
since the last one, and a failed batch drops them all."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest

import spate
from spate.brokers.base import Broker, Consumer, Producer
from spate.record import Record, TopicPartition
from spate.runtime.checkpoint import Offsets
from spate.runtime.delivery import AtLeastOnce, ExactlyOnce
from spate.runtime.stats import ProcessorStats

IN = TopicPartition("in", 0)


class HookFailed(Exception):
    pass


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    async with spate.connect("memory://checkpoint") as b:
        for topic in ("in", "out", "changelog"):
            await b.create_topic(topic, 1)
        async with b.producer() as p:
            for i in range(3):
                p.send("in", str(i).encode(), partition=0)
            await p.flush()
        yield b


async def stored(broker: Broker, topic: str) -> int:
    [lag] = await broker.lag("nobody", [topic])
    return lag.end_offset


async def committed(broker: Broker) -> int | None:
    [lag] = await broker.lag("g", ["in"])
    return lag.committed


Consumed = tuple[Consumer, list[Record]]


@pytest.fixture
async def consumed(broker: Broker) -> AsyncIterator[Consumed]:
    """Group g's consumer, holding the three records of `in` it fetched."""
    async with broker.consumer(["in"], "g") as consumer:
        yield consumer, await consumer.fetch(100, 1.0)


async def write_changelog(producer: Producer, through: Offsets) -> None:
    for tp, offset in through.items():
        producer.send("changelog", b"%d" % offset, key=tp.topic.encode())


async def fail(producer: Producer, through: Offsets) -> None:
    raise HookFailed("store flush failed")


async def end(
    delivery: AtLeastOnce | ExactlyOnce, records: list[Record], *, checkpoint: bool = True
) -> None:
    """One batch of ``records``, each copied to `out`; ended by a checkpoint unless not."""
    await delivery.begin_batch()
    outputs = [("out", r.value, r.key, r) for r in records]
    await delivery.end_batch(outputs, {IN: records[-1].offset}, records)
    if checkpoint:
        await delivery.checkpoint()


async def test_at_least_once_flushes_hook_writes_before_committing(
    broker: Broker, consumed: Consumed
) -> None:
    consumer, records = consumed
    seen_at_commit: list[int] = []
    commit = consumer.commit

    async def spying(through: Mapping[TopicPartition, int], *, wait: bool = True) -> None:
        seen_at_commit.append(await stored(broker, "changelog"))
        await commit(through, wait=wait)

    consumer.commit = spying  # type: ignore[method-assign]
    async with broker.producer() as producer:
        stats = ProcessorStats(processor="p", group="g")
        delivery = AtLeastOnce(producer, consumer, stats, pre_commit=[write_changelog])
        await end(delivery, records)
        await delivery.settle()
        assert seen_at_commit[:1] == [1]
        assert await committed(broker) == 3
        assert await stored(broker, "out") == 3


async def test_at_least_once_never_commits_a_batch_whose_hook_failed(
    broker: Broker, consumed: Consumed
) -> None:
    consumer, records = consumed
    async with broker.producer() as producer:
        stats = ProcessorStats(processor="p", group="g")
        delivery = AtLeastOnce(producer, consumer, stats, pre_commit=[write_changelog, fail])
        with pytest.raises(HookFailed):
            await end(delivery, records)
        await delivery.settle()
        assert await committed(broker) is None


async def test_exactly_once_hook_writes_are_in_the_transaction(
    broker: Broker, consumed: Consumed
) -> None:
    consumer, records = consumed
    async with broker.producer(transactional_id="t") as producer:
        stats = ProcessorStats(processor="p", group="g")
        delivery = ExactlyOnce(producer, consumer, stats, pre_commit=[write_changelog, fail])
        with pytest.raises(HookFailed):
            await end(delivery, records)
        assert await stored(broker, "changelog") == 0
        assert await stored(broker, "out") == 0
        assert await committed(broker) is None
        # The failed batch's transaction is over; the next one commits the hook's
        # write together with the outputs and the offsets.
        delivery.pre_commit = [write_changelog]
        await end(delivery, records)
        assert (await stored(broker, "changelog"), await committed(broker)) == (1, 3)


async def test_exactly_once_aborted_transaction_drops_hook_writes(
    broker: Broker, consumed: Consumed, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, records = consumed
    async with broker.producer(transactional_id="t") as producer:
        stats = ProcessorStats(processor="p", group="g")
        delivery = ExactlyOnce(producer, consumer, stats, pre_commit=[write_changelog])
        monkeypatch.setattr(consumer, "epochs", lambda tps: dict.fromkeys(tps, -1))
        await end(delivery, records)
        assert stats.commit_failures == 1
        assert await stored(broker, "changelog") == 0
        assert await committed(broker) is None


class Throughs:
    """A pre-commit hook that keeps the offsets of each checkpoint it ran for."""

    def __init__(self) -> None:
        self.seen: list[dict[TopicPartition, int]] = []

    async def __call__(self, producer: Producer, through: Offsets) -> None:
        self.seen.append(dict(through))
        await write_changelog(producer, through)


async def test_at_least_once_checkpoint_covers_every_batch_since_the_last(
    broker: Broker, consumed: Consumed
) -> None:
    consumer, records = consumed
    hook = Throughs()
    async with broker.producer() as producer:
        stats = ProcessorStats(processor="p", group="g")
        delivery = AtLeastOnce(producer, consumer, stats, pre_commit=[hook])
        for record in records:
            await end(delivery, [record], checkpoint=False)
        await delivery.begin_batch()  # the last batch's outputs flush with the next one
        await delivery.abort_batch([])
        # Outputs flow after every batch; offsets and hooks wait for the checkpoint.
        assert (await stored(broker, "out"), await committed(broker)) == (3, None)
        await delivery.settle()
        assert hook.seen == []  # aborted: none of them
        assert await committed(broker) is None
        for record in records:
            await end(delivery, [record], checkpoint=False)
        await delivery.settle()
        assert hook.seen == [{IN: 2}]
        assert (await stored(broker, "changelog"), await committed(broker)) == (1, 3)
        assert stats.commits == 1


async def test_exactly_once_one_transaction_covers_the_batches_and_rewinds_to_the_first(
    broker: Broker, consumed: Consumed, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, records = consumed
    hook = Throughs()
    async with broker.producer(transactional_id="t") as producer:
        stats = ProcessorStats(processor="p", group="g")
        delivery = ExactlyOnce(producer, consumer, stats, pre_commit=[hook])
        await end(delivery, records[:1], checkpoint=False)
        await end(delivery, records[1:], checkpoint=False)
        assert await stored(broker, "out") == 0  # nothing visible before the commit
        with monkeypatch.context() as fenced:
            fenced.setattr(consumer, "epochs", lambda tps: dict.fromkeys(tps, -1))
            await delivery.checkpoint()
        assert stats.commit_failures == 1
        assert (await stored(broker, "out"), await committed(broker)) == (0, None)
        again = await consumer.fetch(100, 1.0)
        assert [r.offset for r in again] == [0, 1, 2]  # rewound to the first batch's start
        await end(delivery, again[:2], checkpoint=False)
        await end(delivery, again[2:], checkpoint=False)
        await delivery.settle()
        assert hook.seen == [{IN: 2}, {IN: 2}]
        assert (await stored(broker, "out"), await committed(broker)) == (3, 3)
        assert stats.commits == 1
