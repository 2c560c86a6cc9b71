"""GroupMember and LeasedConsumer over the embedded broker's lease store, on a manual
clock: joins, hand-overs, expiry and fencing without sleeping through a ttl."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from spate.brokers.leased import GroupMember, LeasedConsumer
from spate.brokers.local import LocalBroker
from spate.brokers.local.leases import SqliteLeaseStore
from spate.brokers.local.storage import Database
from spate.clock import ManualClock
from spate.errors import FencedError
from spate.record import TopicPartition
from spate.testing.contract import RecordingListener

TTL_S = 10.0
PARTITIONS = [TopicPartition("t", p) for p in range(4)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def broker(clock: ManualClock) -> AsyncIterator[LocalBroker]:
    async with LocalBroker(
        None, memory_name=uuid.uuid4().hex, lease_ttl_s=TTL_S, clock=clock
    ) as broker:
        await broker.create_topic("t", 4)
        yield broker


def member(
    broker: LocalBroker, clock: ManualClock, name: str, store: SqliteLeaseStore | None = None
) -> GroupMember:
    async def partitions() -> list[TopicPartition]:
        return PARTITIONS

    store = store or SqliteLeaseStore(broker.db, clock)
    return GroupMember(store, "g", name, partitions=partitions, ttl_s=TTL_S, clock=clock)


class CancellationSwallowingStore(SqliteLeaseStore):
    """Once ``stall`` is set, a heartbeat waits until it is cancelled, then returns as
    if the answer had come in: what ``asyncio.wait_for`` does on Python 3.11 when the
    reply and the cancellation arrive in the same loop iteration (nats-py's requests
    use it), so the caller never sees the CancelledError."""

    def __init__(self, db: Database, clock: ManualClock) -> None:
        super().__init__(db, clock)
        self.stall = False
        self.stalled = asyncio.Event()

    async def heartbeat(self, group: str, member: str, ttl_s: float) -> list[str]:
        live = await super().heartbeat(group, member, ttl_s)
        if self.stall:
            self.stalled.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
        return live


async def test_hand_over_to_a_joining_member(broker: LocalBroker, clock: ManualClock) -> None:
    a, b = member(broker, clock, "a"), member(broker, clock, "b")
    await a.tick()
    assert a.take_changes().assigned == tuple(PARTITIONS)
    await b.tick()
    assert b.take_changes().assigned == ()
    await a.tick()
    changes = a.take_changes()
    assert changes.revoke == (PARTITIONS[1], PARTITIONS[3])
    await a.release(changes.revoke)
    await b.tick()
    assert b.take_changes().assigned == (PARTITIONS[1], PARTITIONS[3])
    assert b.epoch(PARTITIONS[1]) == 2
    assert a.epoch(PARTITIONS[0]) == 1
    assert a.epoch(PARTITIONS[1]) is None


async def test_a_partition_not_released_within_the_ttl_of_its_revocation_is_lost_to_the_joiner(
    broker: LocalBroker, clock: ManualClock
) -> None:
    # The revoke deadline: a member busy past it (here, never releasing) stops renewing
    # what it was asked to give back, so the joiner waits one ttl, as for a dead member.
    a, b = member(broker, clock, "a"), member(broker, clock, "b")
    await a.tick()
    a.take_changes()
    await b.tick()
    await a.tick()  # asked to give back 1 and 3: renewed now, never again
    assert a.take_changes().revoke == (PARTITIONS[1], PARTITIONS[3])
    for _ in range(3):  # heartbeats until just before the deadline
        clock.advance(TTL_S / 3 - 0.01)
        await a.tick()
        await b.tick()
        assert b.take_changes().assigned == ()
    assert a.take_changes().lost == ()
    clock.advance(0.1)
    await a.tick()
    await b.tick()
    assert a.take_changes().lost == (PARTITIONS[1], PARTITIONS[3])
    assert b.take_changes().assigned == (PARTITIONS[1], PARTITIONS[3])
    assert (a.epoch(PARTITIONS[0]), a.epoch(PARTITIONS[2])) == (1, 1)  # kept, renewed


async def test_expired_member_loses_everything(broker: LocalBroker, clock: ManualClock) -> None:
    a, b = member(broker, clock, "a"), member(broker, clock, "b")
    await a.tick()
    a.take_changes()
    clock.advance(TTL_S + 1)
    await b.tick()
    assert b.take_changes().assigned == tuple(PARTITIONS)
    assert all(b.epoch(tp) == 2 for tp in PARTITIONS)
    assert a.take_changes().lost == tuple(PARTITIONS)
    await a.tick()
    assert a.take_changes().assigned == ()


async def test_zombie_consumer_is_fenced(broker: LocalBroker, clock: ManualClock) -> None:
    zombie_listener = RecordingListener()
    zombie = broker.consumer(["t"], "g", zombie_listener)
    assert isinstance(zombie, LeasedConsumer)
    await zombie.fetch(10, 0.01)
    assert zombie.assignment() == frozenset(PARTITIONS)
    task = zombie.member._task
    assert task is not None
    task.cancel()
    clock.advance(TTL_S + 1)
    successor = broker.consumer(["t"], "g")
    await successor.fetch(10, 0.01)
    assert successor.assignment() == frozenset(PARTITIONS)
    with pytest.raises(FencedError):
        await zombie.commit({PARTITIONS[0]: 5})
    await zombie.fetch(10, 0.01)
    assert zombie_listener.partitions("lost") == set(PARTITIONS)
    assert zombie.assignment() == frozenset()
    await successor.commit({PARTITIONS[0]: 0})
    await successor.close()


async def test_lone_member_owns_all_partitions_at_once(broker: LocalBroker) -> None:
    listener = RecordingListener()
    async with broker.consumer(["t"], "g", listener) as consumer:
        assert await consumer.fetch(10, 0.01) == []
        assert consumer.assignment() == frozenset(PARTITIONS)
    assert listener.events == [("assigned", tuple(PARTITIONS)), ("revoked", tuple(PARTITIONS))]


async def test_batch_from_before_a_lost_and_retaken_lease_cannot_commit(
    broker: LocalBroker, clock: ManualClock
) -> None:
    zombie = broker.consumer(["t"], "g")
    assert isinstance(zombie, LeasedConsumer)
    await zombie.fetch(10, 0.01)
    task = zombie.member._task
    assert task is not None
    task.cancel()
    clock.advance(TTL_S + 1)
    successor = broker.consumer(["t"], "g")
    await successor.fetch(10, 0.01)
    await successor.close()
    await zombie.member.tick()
    assert zombie.member.epoch(PARTITIONS[0]) == 3
    with pytest.raises(FencedError):
        await zombie.commit({PARTITIONS[0]: 5})
    await zombie.fetch(10, 0.01)
    await zombie.commit({PARTITIONS[0]: 5})
    await zombie.close()


async def test_a_dead_member_leaves_no_group_behind(
    broker: LocalBroker, clock: ManualClock
) -> None:
    await member(broker, clock, "a").tick()
    assert await broker.groups() == ["g"]
    clock.advance(TTL_S * 2)
    assert await broker.groups() == []


async def joined_without_heartbeats(
    broker: LocalBroker,
) -> tuple[LeasedConsumer, RecordingListener]:
    """A consumer that took every lease when it joined, before fetching, and whose
    heartbeats then stop: the test runs each one (``member.tick()``) itself."""
    listener = RecordingListener()
    consumer = broker.consumer(["t"], "g", listener)
    assert isinstance(consumer, LeasedConsumer)
    await consumer.start()
    task = consumer.member._task
    assert task is not None
    task.cancel()
    return consumer, listener


async def test_a_partition_taken_and_then_wanted_elsewhere_is_never_handed_out(
    broker: LocalBroker, clock: ManualClock
) -> None:
    """After an outage a lone member may take every expired lease in one heartbeat,
    and learn in the next, before its consumer looked, that another member is back and
    should own some of them. Those are released without reaching the listener: handing
    them out as well would make the consumer read partitions it no longer owns, every
    commit of them fenced, until the next rebalance."""
    consumer, listener = await joined_without_heartbeats(broker)
    other = member(broker, clock, "z-other")
    await other.tick()
    await consumer.member.tick()
    await consumer.fetch(10, 0.01)
    assert consumer.assignment() == {PARTITIONS[0], PARTITIONS[2]}
    assert listener.events == [("assigned", (PARTITIONS[0], PARTITIONS[2]))]
    await other.tick()
    assert other.take_changes().assigned == (PARTITIONS[1], PARTITIONS[3])
    await consumer.close()


async def test_a_partition_taken_and_lost_before_the_consumer_looked_is_not_reported(
    broker: LocalBroker, clock: ManualClock
) -> None:
    consumer, listener = await joined_without_heartbeats(broker)
    clock.advance(TTL_S + 1)
    other = member(broker, clock, "other")
    await other.tick()
    await consumer.member.tick()
    await consumer.fetch(10, 0.01)
    assert listener.events == []
    assert consumer.assignment() == frozenset()
    await consumer.close()


async def test_close_ends_a_heartbeat_loop_whose_cancellation_was_swallowed(
    broker: LocalBroker,
) -> None:
    """A draining NATS worker hung in ``close`` this way (the rescale test on NATS):
    the loop went on heartbeating and ``close`` waited on it forever. The member has a
    clock of its own, so every sleep asked of it is the heartbeat loop's."""
    clock = ManualClock()
    store = CancellationSwallowingStore(broker.db, clock)
    a = member(broker, clock, "a", store)
    await a.start()
    store.stall = True
    clock.advance(await clock.asked(1))
    await store.stalled.wait()
    closing = asyncio.ensure_future(a.close())
    slept_again = asyncio.ensure_future(clock.asked(2))
    await asyncio.wait([closing, slept_again], return_when=asyncio.FIRST_COMPLETED)
    slept_again.cancel()
    assert closing.done(), "the heartbeat loop went back to sleep: close() waits on it"
    await closing
    assert await broker.groups() == []
