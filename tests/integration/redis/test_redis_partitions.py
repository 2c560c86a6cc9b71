"""Per-partition stream operations: dense offsets, takeover, fencing, acks, dedup, lag."""

from __future__ import annotations

import asyncio

import pytest
import redis

from spate.brokers.redis import RedisBroker, keys
from spate.brokers.redis.leases import RedisLeaseStore
from spate.brokers.redis.streams import PartitionStreams, ReadRequest
from spate.errors import FencedError, PublishError
from spate.record import TopicPartition

TP = TopicPartition("orders", 0)


async def _produce(broker: RedisBroker, count: int, start: int = 0) -> None:
    async with broker.producer() as producer:
        for i in range(start, start + count):
            producer.send("orders", b"v%d" % i, partition=0, headers=(("n", b"%d" % i),))
        await producer.flush()


async def test_offsets_are_dense_and_records_round_trip(broker: RedisBroker) -> None:
    await broker.create_topic("orders", 2)
    async with broker.producer() as producer:
        producer.send("orders", b"a", key=None, partition=0, timestamp_ms=5)
        producer.send("orders", b"b", key=b"", partition=0, headers=(("h", b"1"), ("h", b"2")))
        producer.send("orders", b"c", partition=1)
        await producer.flush()
        producer.send("orders", b"d", partition=0)
        await producer.flush()
    streams = PartitionStreams(broker.client)
    store = RedisLeaseStore(broker.client)
    epoch = await store.acquire("g", TP, "m", 5.0)
    assert epoch is not None
    assert await streams.takeover("g", "m", {TP: epoch}, "earliest") == {TP: 0}
    records, fenced = await streams.read("g", "m", [ReadRequest(TP, epoch, 0, 10)])
    assert fenced == set()
    assert [(r.offset, r.value) for r in records] == [(0, b"a"), (1, b"b"), (2, b"d")]
    assert records[0].key is None
    assert records[0].timestamp_ms == 5
    assert records[1].key == b""
    assert records[1].headers == (("h", b"1"), ("h", b"2"))
    assert records[2].timestamp_ms > 1_600_000_000_000


async def test_publish_to_a_missing_topic_or_partition_names_topic_and_key(
    broker: RedisBroker,
) -> None:
    async with broker.producer() as producer:
        producer.send("nope", b"x", key=b"k1")
        with pytest.raises(PublishError, match=r"'nope'.*k1.*spate topics create nope"):
            await producer.flush()
        await broker.create_topic("two", 2)
        producer.send("two", b"x", key=b"k2", partition=2)
        with pytest.raises(PublishError, match=r"'two' partition 2.*k2"):
            await producer.flush()


async def test_deleted_topic_fails_a_producer_with_a_stale_cache(broker: RedisBroker) -> None:
    await broker.create_topic("orders")
    async with broker.producer() as producer:
        producer.send("orders", b"x")
        await producer.flush()
        await broker.delete_topic("orders")
        producer.send("orders", b"y")
        with pytest.raises(PublishError, match="orders"):
            await producer.flush()


async def test_dedup_ids_drop_republished_records_within_the_window(redis_url: str) -> None:
    import spate

    async with spate.connect(redis_url, dedup_window_s=0.3, retention_interval_s=0) as broker:
        assert isinstance(broker, RedisBroker)
        await broker.create_topic("orders")
        async with broker.producer() as producer:
            for _ in range(3):
                producer.send("orders", b"out", dedup_id="src-0-7-0")
                producer.send("orders", b"out2", dedup_id="src-0-7-1")
                await producer.flush()
            await asyncio.sleep(0.4)
            producer.send("orders", b"out", dedup_id="src-0-7-0")
            await producer.flush()
        lag = await broker.lag("nobody", ["orders"])
        assert lag[0].end_offset == 3, "two kept, two dropped twice, one after the window"


async def test_takeover_claims_pending_entries_and_redelivers_them_in_order(
    broker: RedisBroker,
) -> None:
    await broker.create_topic("orders")
    await _produce(broker, 10)
    streams = PartitionStreams(broker.client)
    store = RedisLeaseStore(broker.client)
    old = await store.acquire("g", TP, "old", 0.2)
    assert old is not None
    await streams.takeover("g", "old", {TP: old}, "earliest")
    records, _ = await streams.read("g", "old", [ReadRequest(TP, old, 0, 6)])
    assert [r.offset for r in records] == [0, 1, 2, 3, 4, 5]
    await streams.commit("g", {TP: (2, old)})
    admin = _admin(broker)
    assert admin.xpending("orders:0", "g")["pending"] == 3, "0..2 acked; 3..5 pending"
    await asyncio.sleep(0.3)
    new = await store.acquire("g", TP, "new", 5.0)
    assert new is not None
    assert new > old
    assert await streams.takeover("g", "new", {TP: new}, "earliest") == {TP: 3}
    pending = admin.xpending_range("orders:0", "g", "-", "+", 10)
    assert {p["consumer"] for p in pending} == {b"new"}, "nothing stranded on the old owner"
    records, _ = await streams.read("g", "new", [ReadRequest(TP, new, 3, 100)])
    assert [r.offset for r in records] == list(range(3, 10))

    records, fenced = await streams.read("g", "old", [ReadRequest(TP, old, 6, 100)])
    assert (records, fenced) == ([], {TP}), "a zombie cannot move the cursor"
    with pytest.raises(FencedError, match="orders:0"):
        await streams.commit("g", {TP: (9, old)})
    assert admin.xpending("orders:0", "g")["pending"] == 7, "the zombie acked nothing"
    await streams.commit("g", {TP: (9, new)})
    assert admin.xpending("orders:0", "g")["pending"] == 0
    assert admin.hget(keys.committed(TP), "g") == b"10"


async def test_a_commit_with_one_stale_epoch_commits_nothing(broker: RedisBroker) -> None:
    await broker.create_topic("orders", 2)
    other = TopicPartition("orders", 1)
    async with broker.producer() as producer:
        for i in range(4):
            producer.send("orders", b"%d" % i, partition=i % 2)
        await producer.flush()
    streams = PartitionStreams(broker.client)
    store = RedisLeaseStore(broker.client)
    mine = await store.acquire("g", TP, "m", 5.0)
    stale = await store.acquire("g", other, "m", 0.1)
    assert mine is not None
    assert stale is not None
    await streams.takeover("g", "m", {TP: mine, other: stale}, "earliest")
    await streams.read("g", "m", [ReadRequest(TP, mine, 0, 10), ReadRequest(other, stale, 0, 10)])
    await asyncio.sleep(0.2)
    assert await store.acquire("g", other, "n", 5.0) == stale + 1
    with pytest.raises(FencedError, match="orders:1") as caught:
        await streams.commit("g", {TP: (1, mine), other: (1, stale)})
    assert "orders:0" not in str(caught.value)
    lags = {x.partition: x.committed for x in await broker.lag("g", ["orders"])}
    assert lags == {0: None, 1: None}, "all or nothing"
    await streams.commit("g", {TP: (1, mine)})
    assert {x.partition: x.committed for x in await broker.lag("g", ["orders"])}[0] == 2


async def test_a_read_from_an_earlier_offset_reads_again(broker: RedisBroker) -> None:
    await broker.create_topic("orders")
    await _produce(broker, 5)
    streams = PartitionStreams(broker.client)
    epoch = await RedisLeaseStore(broker.client).acquire("g", TP, "m", 5.0)
    assert epoch is not None
    await streams.takeover("g", "m", {TP: epoch}, "earliest")
    await streams.read("g", "m", [ReadRequest(TP, epoch, 0, 100)])
    records, _ = await streams.read("g", "m", [ReadRequest(TP, epoch, 1, 100)])
    assert [r.offset for r in records] == [1, 2, 3, 4]


async def test_latest_reset_starts_at_the_end(broker: RedisBroker) -> None:
    await broker.create_topic("orders")
    await _produce(broker, 5)
    streams = PartitionStreams(broker.client)
    epoch = await RedisLeaseStore(broker.client).acquire("g", TP, "m", 5.0)
    assert epoch is not None
    assert await streams.takeover("g", "m", {TP: epoch}, "latest") == {TP: 5}
    await _produce(broker, 2, start=5)
    records, _ = await streams.read("g", "m", [ReadRequest(TP, epoch, 5, 100)])
    assert [r.value for r in records] == [b"v5", b"v6"]


async def test_lag_is_computed_on_every_version_and_matches_redis_7(broker: RedisBroker) -> None:
    await broker.create_topic("orders", 2)
    await _produce(broker, 8)
    streams = PartitionStreams(broker.client)
    epoch = await RedisLeaseStore(broker.client).acquire("g", TP, "m", 5.0)
    assert epoch is not None
    await streams.takeover("g", "m", {TP: epoch}, "earliest")
    await streams.read("g", "m", [ReadRequest(TP, epoch, 0, 100)])
    await streams.commit("g", {TP: (4, epoch)})
    lags = await broker.lag("g")
    assert [(x.partition, x.committed, x.end_offset, x.lag) for x in lags] == [
        (0, 5, 8, 3),
        (1, None, 0, 0),
    ]
    admin = _admin(broker)
    group = admin.xinfo_groups("orders:0")[0]
    if "lag" in group:
        assert group["lag"] == 0, "Redis counts delivered entries; spate counts committed ones"


def _admin(broker: RedisBroker) -> redis.Redis:
    kwargs = broker.client.redis.connection_pool.connection_kwargs
    return redis.Redis(host=kwargs["host"], port=kwargs["port"], db=kwargs["db"])
