"""Retention: trimming never removes what a group has not acknowledged, unless allowed."""

from __future__ import annotations

import asyncio

import spate
from spate.brokers.redis import RedisBroker
from spate.brokers.redis.leases import RedisLeaseStore
from spate.brokers.redis.streams import PartitionStreams, ReadRequest
from spate.clock import ManualClock
from spate.record import TopicPartition

TP = TopicPartition("logs", 0)


async def _fill(broker: RedisBroker, count: int, timestamp_ms: int | None = None) -> None:
    async with broker.producer() as producer:
        for i in range(count):
            producer.send("logs", b"%d" % i, partition=0, timestamp_ms=timestamp_ms)
        await producer.flush()


class Reader:
    """One group's member on the partition, driven step by step."""

    def __init__(self, broker: RedisBroker, group: str) -> None:
        self.streams = PartitionStreams(broker.client)
        self.store = RedisLeaseStore(broker.client)
        self.group = group
        self.epoch = 0
        self.position = 0

    async def join(self) -> Reader:
        epoch = await self.store.acquire(self.group, TP, "m", 30.0)
        assert epoch is not None
        self.epoch = epoch
        await self.streams.takeover(self.group, "m", {TP: epoch}, "earliest")
        return self

    async def read(self, count: int) -> None:
        request = ReadRequest(TP, self.epoch, self.position, count)
        records, _ = await self.streams.read(self.group, "m", [request])
        assert len(records) == count
        self.position += count

    async def commit(self, through: int) -> None:
        await self.streams.commit(self.group, {TP: (through, self.epoch)})


async def _first_offset(broker: RedisBroker) -> int:
    return (await broker.enforce_retention())[TP].first_offset


async def test_max_records_trims_only_what_every_group_acknowledged(broker: RedisBroker) -> None:
    await broker.create_topic("logs", 1, {"retention.records": "5"})
    await _fill(broker, 20)
    fast = await Reader(broker, "fast").join()
    await fast.read(20)
    await fast.commit(19)
    slow = await Reader(broker, "slow").join()
    await slow.read(12)
    await slow.commit(7)
    assert await _first_offset(broker) == 8, "slow acknowledged 0..7 only"
    await slow.commit(9)
    assert await _first_offset(broker) == 10, "10, 11 are delivered but pending"
    await slow.read(8)
    await slow.commit(19)
    assert await _first_offset(broker) == 15
    assert (await broker.lag("slow", ["logs"]))[0].lag == 0
    assert await broker.records_lost("slow") == {}


async def test_a_group_that_read_nothing_blocks_trimming(broker: RedisBroker) -> None:
    await broker.create_topic("logs", 1, {"retention.records": "1"})
    await _fill(broker, 10)
    await Reader(broker, "idle").join()
    assert await _first_offset(broker) == 0


async def test_allowed_loss_trims_anyway_and_counts_the_loss(broker: RedisBroker) -> None:
    await broker.create_topic("logs", 1, {"retention.records": "5", "retention.allow.loss": "true"})
    await _fill(broker, 20)
    slow = await Reader(broker, "slow").join()
    await slow.read(10)
    await slow.commit(5)
    result = (await broker.enforce_retention())[TP]
    assert (result.first_offset, result.removed, result.lost) == (15, 15, 9)
    assert await broker.records_lost("slow") == {TP: 9}
    lag = (await broker.lag("slow", ["logs"]))[0]
    assert (lag.committed, lag.end_offset, lag.lag) == (6, 20, 5)


async def test_age_retention_uses_record_timestamps_and_the_injected_clock(
    redis_url: str,
) -> None:
    clock = ManualClock(start_ms=1_000_000)
    async with spate.connect(redis_url, clock=clock, retention_interval_s=0) as broker:
        assert isinstance(broker, RedisBroker)
        await broker.create_topic("logs", 1, {"retention.ms": "60000"})
        await _fill(broker, 4, timestamp_ms=1_000_000)
        await _fill(broker, 3, timestamp_ms=1_030_000)
        reader = await Reader(broker, "g").join()
        await reader.read(7)
        await reader.commit(6)
        assert await _first_offset(broker) == 0
        clock.advance(61)
        assert await _first_offset(broker) == 4
        clock.advance(30)
        assert await _first_offset(broker) == 7


async def test_trimming_under_load_never_removes_an_unacknowledged_entry(
    broker: RedisBroker,
) -> None:
    """A producer, a slow committing consumer and an aggressive trimmer run together;
    the consumer must still see every offset exactly in sequence."""
    total = 3000
    await broker.create_topic("logs", 1, {"retention.records": "50"})
    stop = asyncio.Event()

    async def produce() -> None:
        async with broker.producer() as producer:
            for start in range(0, total, 100):
                for i in range(start, start + 100):
                    producer.send("logs", b"%d" % i, partition=0)
                await producer.flush()
                await asyncio.sleep(0.005)

    async def trim() -> int:
        rounds = 0
        while not stop.is_set():
            await broker.enforce_retention()
            rounds += 1
            await asyncio.sleep(0.002)
        return rounds

    seen: list[int] = []
    trimmer = asyncio.create_task(trim())
    async with broker.consumer(["logs"], "slow") as consumer:
        producer = asyncio.create_task(produce())
        while len(seen) < total:
            batch = await consumer.fetch(37, 1.0)
            seen.extend(r.offset for r in batch)
            await asyncio.sleep(0.003)
            if batch:
                await consumer.commit({TP: batch[-1].offset})
        await producer
    stop.set()
    assert await trimmer > 10
    assert seen == list(range(total))
    assert await broker.records_lost("slow") == {}
    assert (await _first_offset(broker)) == total - 50
