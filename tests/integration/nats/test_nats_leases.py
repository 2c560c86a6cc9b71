"""The JetStream key-value lease store: compare-and-set, expiry, growing epochs."""

from __future__ import annotations

import asyncio
import uuid

from spate.brokers.nats import NatsBroker
from spate.brokers.nats.leases import NatsLeaseStore, escape_key, unescape_key
from spate.clock import ManualClock
from spate.record import TopicPartition

TP = TopicPartition("orders", 0)


def fresh_group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


def test_key_escaping_round_trips() -> None:
    for text in ("plain-name_1", "with.dot", "sp ace/slash=eq", "ünï", ""):
        escaped = escape_key(text)
        assert all(c.isalnum() or c in "-_=" for c in escaped)
        assert unescape_key(escaped) == text


async def test_acquire_renew_release_and_epochs_grow(broker: NatsBroker) -> None:
    clock = ManualClock()
    store = NatsLeaseStore(broker.js, clock)
    group = fresh_group()
    assert await store.acquire(group, TP, "a", 5.0) == 1
    assert await store.acquire(group, TP, "b", 5.0) is None  # held by a live member
    assert await store.renew(group, {TP: 1}, "a", 5.0) == {TP}
    assert await store.renew(group, {TP: 1}, "b", 5.0) == set()
    await store.release(group, {TP: 1}, "a")
    assert await store.acquire(group, TP, "b", 5.0) == 2  # free at once after release
    clock.advance(6.0)  # b's lease expires unrenewed
    assert await store.acquire(group, TP, "a", 5.0) == 3
    assert await store.renew(group, {TP: 2}, "b", 5.0) == set()  # b lost it for good
    assert await store.holds(group, TP, "a", 3)
    assert not await store.holds(group, TP, "b", 2)


async def test_racing_acquirers_exactly_one_wins(broker: NatsBroker) -> None:
    store = NatsLeaseStore(broker.js)
    group = fresh_group()
    results = await asyncio.gather(*(store.acquire(group, TP, f"m{i}", 5.0) for i in range(8)))
    assert sorted(results, key=lambda r: r or 0)[-1] == 1
    assert sum(r is not None for r in results) == 1


async def test_heartbeat_lists_live_members_and_leave(broker: NatsBroker) -> None:
    clock = ManualClock()
    store = NatsLeaseStore(broker.js, clock)
    group = fresh_group()
    assert await store.heartbeat(group, "b", 3.0) == ["b"]
    results = await asyncio.gather(*(store.heartbeat(group, m, 3.0) for m in ("a", "c", "d")))
    assert results[-1] == sorted(results[-1])
    assert await store.members(group) == ["a", "b", "c", "d"]
    await store.leave(group, "c")
    clock.advance(2.0)
    assert await store.heartbeat(group, "a", 3.0) == ["a", "b", "d"]
    clock.advance(2.0)  # b and d did not heartbeat for 4 s > 3 s
    assert await store.heartbeat(group, "a", 3.0) == ["a"]
    assert group in await store.groups()
