"""Group consumers on JetStream: per-owner durable consumers, AckAll commits, fencing,
takeover after the last acknowledged record, lag, and a hard server restart."""

from __future__ import annotations

import asyncio
import time

import pytest

import spate
from spate.brokers.base import Consumer
from spate.brokers.nats import NatsBroker
from spate.brokers.nats.admin import stream_name
from spate.brokers.nats.offsets import group_consumers
from spate.errors import FencedError
from spate.record import Record, TopicPartition
from spate.testing.nats_server import NatsServer


async def produce(broker: NatsBroker, topic: str, count: int, start: int = 0) -> None:
    producer = broker.producer()
    for i in range(start, start + count):
        producer.send(topic, b"%d" % i, key=b"k%d" % (i % 7))
    await producer.flush()
    await producer.close()


async def collect(consumer: Consumer, count: int, timeout_s: float = 10.0) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records.extend(await consumer.fetch(count - len(records), 0.5))
    return records


async def test_commit_is_an_ack_floor_and_a_new_owner_resumes_after_it(
    broker: NatsBroker, topic: str
) -> None:
    await broker.create_topic(topic, 1)
    await produce(broker, topic, 100)
    tp = TopicPartition(topic, 0)
    async with broker.consumer([topic], "g") as first:
        records = await collect(first, 100)
        assert [r.offset for r in records] == list(range(100))
        await first.commit({tp: 59})
        (info,) = await group_consumers(broker.js, stream_name(topic, 0), "g")
        assert info.config.ack_policy == "all"
        assert info.ack_floor is not None
        assert info.ack_floor.stream_seq == 60  # confirmed before commit returned
        assert info.num_ack_pending == 40
        (row,) = await broker.lag("g", [topic])
        assert (row.committed, row.end_offset, row.lag) == (60, 100, 40)
    async with broker.consumer([topic], "g") as second:
        resumed = await collect(second, 40)
        assert [r.offset for r in resumed] == list(range(60, 100))
        # The previous owner's consumer is gone: one durable consumer per group and partition.
        assert len(await group_consumers(broker.js, stream_name(topic, 0), "g")) == 1
    assert "g" in await broker.groups()


async def test_zombie_cannot_commit_after_takeover(nats_url: str, topic: str) -> None:
    async with (
        spate.connect(nats_url, lease_ttl_s=1.0) as broker_a,
        spate.connect(nats_url, lease_ttl_s=1.0) as broker_b,
    ):
        assert isinstance(broker_a, NatsBroker)
        await broker_a.create_topic(topic, 1)
        await broker_a.create_topic(f"{topic}-out", 1)
        await produce(broker_a, topic, 20)
        tp = TopicPartition(topic, 0)
        zombie = broker_a.consumer([topic], "g")
        records = await collect(zombie, 10)
        await zombie.commit({tp: records[4].offset})
        # Pause the zombie's heartbeats, as SIGSTOP would, until its lease expires.
        assert isinstance(zombie, spate.brokers.nats.consumer.NatsConsumer)
        task = zombie.member._task
        assert task is not None
        task.cancel()
        await asyncio.sleep(1.5)
        async with broker_b.consumer([topic], "g") as replacement:
            taken = await collect(replacement, 15)
            assert [r.offset for r in taken] == list(range(5, 20))
            # Both publish their outputs with ids from (topic, partition, offset, index):
            # what the zombie re-publishes after waking is dropped as a duplicate.
            for owner, batch in ((broker_b, taken), (broker_a, records)):
                producer = owner.producer()
                for r in batch:
                    producer.send(f"{topic}-out", r.value, dedup_id=f"{topic}:0:{r.offset}:0")
                await producer.flush()
            with pytest.raises(FencedError):
                await zombie.commit({tp: records[9].offset})
            await replacement.commit({tp: taken[-1].offset})
        (out,) = await broker_a.lag("nobody", [f"{topic}-out"])
        assert out.end_offset == 20  # 15 + 10 published, 5 of the zombie's dropped
        (row,) = await broker_a.lag("g", [topic])
        assert row.committed == 20
        zombie.member._task = None
        await zombie.close()


async def test_lag_counts_pending_records_per_partition(broker: NatsBroker, topic: str) -> None:
    await broker.create_topic(topic, 2)
    producer = broker.producer()
    for i in range(10):
        producer.send(topic, b"%d" % i, partition=i % 2)
    await producer.flush()
    async with broker.consumer([topic], "lagging") as consumer:
        records = await collect(consumer, 10)
        last = {r.topic_partition: r.offset for r in records}
        await consumer.commit({TopicPartition(topic, 0): 1})
        await consumer.commit({TopicPartition(topic, 1): last[TopicPartition(topic, 1)]})
    rows = {row.partition: row for row in await broker.lag("lagging", [topic])}
    assert (rows[0].committed, rows[0].lag) == (2, 3)
    assert (rows[1].committed, rows[1].lag) == (5, 0)


async def test_server_killed_and_restarted_nothing_acknowledged_is_lost(
    own_server: NatsServer, topic: str
) -> None:
    async with spate.connect(own_server.url, lease_ttl_s=2.0) as broker:
        assert isinstance(broker, NatsBroker)
        await broker.create_topic(topic, 2)
        await produce(broker, topic, 500)
        consumer = broker.consumer([topic], "g")
        seen = await collect(consumer, 500)
        last = {r.topic_partition: r.offset for r in seen}
        await consumer.commit(last)
        own_server.kill()
        restart = asyncio.get_running_loop().call_later(1.0, own_server.start)
        # Publishing during the outage waits for the server and then succeeds.
        await produce(broker, topic, 500, start=500)
        restart.cancel()
        more = await collect(consumer, 500, timeout_s=30)
        assert sorted(int(r.value) for r in more) == list(range(500, 1000))
        await consumer.commit({r.topic_partition: r.offset for r in more})
        await consumer.close()
        rows = await broker.lag("g", [topic])
        assert sum(row.end_offset for row in rows) == 1000
        assert all(row.lag == 0 for row in rows)
