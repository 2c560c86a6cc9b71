"""The Redis LeaseStore: membership, set-if-absent leases, compare-and-set, epochs."""

from __future__ import annotations

import asyncio

from spate.brokers.redis import RedisBroker
from spate.brokers.redis.leases import RedisLeaseStore
from spate.record import TopicPartition

TP = TopicPartition("orders", 0)


async def test_heartbeat_lists_live_members_and_drops_expired_ones(broker: RedisBroker) -> None:
    store = RedisLeaseStore(broker.client)
    assert await store.heartbeat("g", "b", 0.3) == ["b"]
    assert await store.heartbeat("g", "a", 5.0) == ["a", "b"]
    await asyncio.sleep(0.4)
    assert await store.heartbeat("g", "a", 5.0) == ["a"]
    await store.leave("g", "a")
    assert await store.heartbeat("g", "c", 5.0) == ["c"]
    assert "g" in await broker.groups()


async def test_a_lease_has_one_holder_and_epochs_only_grow(broker: RedisBroker) -> None:
    store = RedisLeaseStore(broker.client)
    first = await store.acquire("g", TP, "a", 5.0)
    assert first == 1
    assert await store.acquire("g", TP, "b", 5.0) is None
    assert await store.acquire("other-group", TP, "b", 5.0) == 1, "groups are independent"
    await store.release("g", {TP: first}, "b")
    assert await store.acquire("g", TP, "b", 5.0) is None, "only the holder can release"
    await store.release("g", {TP: first}, "a")
    second = await store.acquire("g", TP, "b", 5.0)
    assert second == 2


async def test_renew_extends_only_leases_still_held_at_that_epoch(broker: RedisBroker) -> None:
    store = RedisLeaseStore(broker.client)
    other = TopicPartition("orders", 1)
    epoch = await store.acquire("g", TP, "a", 0.3)
    other_epoch = await store.acquire("g", other, "a", 0.3)
    assert epoch is not None
    assert other_epoch is not None
    assert await store.renew("g", {TP: epoch, other: other_epoch + 5}, "a", 0.3) == {TP}
    for _ in range(3):
        await asyncio.sleep(0.15)
        assert await store.renew("g", {TP: epoch}, "a", 0.3) == {TP}
    await asyncio.sleep(0.4)
    assert await store.renew("g", {TP: epoch}, "a", 0.3) == set(), "expired"
    taken = await store.acquire("g", TP, "b", 5.0)
    assert taken is not None
    assert taken > epoch
    assert await store.renew("g", {TP: epoch}, "a", 5.0) == set()
