"""The broker contract suite (DESIGN §12): one behavioural test class for every adapter.

A test module subclasses :class:`BrokerContract` and provides a ``broker`` fixture that
yields a *started* broker; the suite runs UNCHANGED on every adapter and skips only
what the broker's :class:`~spate.brokers.base.Capabilities` say it cannot do::

    class TestMyBroker(BrokerContract):
        @pytest_asyncio.fixture
        async def broker(self) -> AsyncIterator[Broker]:
            async with MyBroker(...) as broker:
                yield broker

        @pytest.fixture
        def contract_timing(self) -> ContractTiming:   # optional: a slow broker
            return ContractTiming(settle_timeout_s=60)

Brokers with leases should be configured by the fixture with a short lease ttl (a
second or two) so rebalances settle quickly. Every test creates its own topics with
:meth:`BrokerContract.fresh_topic`, so one broker may serve the whole class.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from spate.brokers.base import Broker, Capabilities, Consumer, Reader
from spate.brokers.registry import connect
from spate.errors import (
    CapabilityError,
    ClosedError,
    ConfigError,
    FencedError,
    SpateError,
    TopicExistsError,
    TopicNotFoundError,
)
from spate.partitioner import partition_for_key
from spate.record import Record, TopicPartition


@dataclass(frozen=True, kw_only=True, slots=True)
class ContractTiming:
    """Timing knobs; override the ``contract_timing`` fixture for a slow broker."""

    fetch_timeout_s: float = 0.2
    """What one ``fetch`` call may wait."""
    settle_timeout_s: float = 20.0
    """The longest a test waits for records to arrive or a rebalance to settle."""
    quiet_s: float = 0.5
    """How long a test watches to be sure that nothing (more) arrives."""


@dataclass
class RecordingListener:
    """A rebalance listener that remembers every call, in order."""

    events: list[tuple[str, tuple[TopicPartition, ...]]] = field(default_factory=list)

    async def on_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        self.events.append(("assigned", tuple(sorted(partitions))))

    async def on_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        self.events.append(("revoked", tuple(sorted(partitions))))

    async def on_lost(self, partitions: Sequence[TopicPartition]) -> None:
        self.events.append(("lost", tuple(sorted(partitions))))

    def partitions(self, kind: str) -> set[TopicPartition]:
        return {tp for event, tps in self.events if event == kind for tp in tps}


class BrokerContract:
    """Behaviour every broker adapter keeps. Subclass it and provide ``broker``."""

    pytestmark = [pytest.mark.asyncio]

    # -- fixtures and helpers ------------------------------------------------------------

    @pytest.fixture
    def contract_timing(self) -> ContractTiming:
        return ContractTiming()

    @staticmethod
    def fresh_topic(prefix: str = "t") -> str:
        """A topic name no other test uses."""
        return f"contract-{prefix}-{uuid.uuid4().hex[:10]}"

    @staticmethod
    def fresh_group(prefix: str = "g") -> str:
        return f"contract-{prefix}-{uuid.uuid4().hex[:10]}"

    async def new_topic(self, broker: Broker, partitions: int = 1, prefix: str = "t") -> str:
        name = self.fresh_topic(prefix)
        await broker.create_topic(name, partitions)
        return name

    @staticmethod
    async def produce(
        broker: Broker, topic: str, count: int, *, keyed: bool = True, start: int = 0
    ) -> None:
        async with broker.producer() as producer:
            for i in range(start, start + count):
                producer.send(topic, b"value-%d" % i, key=b"key-%d" % (i % 17) if keyed else None)
            await producer.flush()

    @staticmethod
    async def collect(
        consumer: Consumer,
        count: int,
        timing: ContractTiming,
        *,
        max_records: int = 100,
    ) -> list[Record]:
        """Fetch until ``count`` records arrived (or the settle timeout passed)."""
        got: list[Record] = []
        deadline = time.monotonic() + timing.settle_timeout_s
        while len(got) < count and time.monotonic() < deadline:
            batch = await consumer.fetch(max_records, timing.fetch_timeout_s)
            assert isinstance(batch, list)
            assert len(batch) <= max_records
            got.extend(batch)
        return got

    @staticmethod
    async def read(reader: Reader, count: int, timing: ContractTiming) -> list[Record]:
        """Fetch from ``reader`` until ``count`` records arrived (or the settle timeout)."""
        got: list[Record] = []
        deadline = time.monotonic() + timing.settle_timeout_s
        while len(got) < count and time.monotonic() < deadline:
            got.extend(await reader.fetch(min(4, count - len(got)), timing.fetch_timeout_s))
        return got

    @staticmethod
    def require_reader(broker: Broker) -> None:
        if not broker.capabilities.reader:
            pytest.skip(f"{type(broker).__name__} has no partition reader")

    @staticmethod
    async def until(
        condition: Callable[[], bool],
        consumers: Sequence[Consumer],
        timing: ContractTiming,
        sink: Callable[[list[Record]], None] | None = None,
    ) -> None:
        """Keep every consumer fetching (rebalances happen inside fetch) until
        ``condition`` holds; fail after the settle timeout."""
        deadline = time.monotonic() + timing.settle_timeout_s
        while not condition():
            assert time.monotonic() < deadline, "the group did not settle in time"
            batches = await asyncio.gather(
                *(c.fetch(100, timing.fetch_timeout_s) for c in consumers)
            )
            if sink is not None:
                for batch in batches:
                    sink(batch)

    @staticmethod
    async def keep_fetching(consumer: Consumer, timing: ContractTiming) -> None:
        """Fetch for the settle timeout: for a test that expects fetch to raise."""
        deadline = time.monotonic() + timing.settle_timeout_s
        while time.monotonic() < deadline:
            await consumer.fetch(100, timing.fetch_timeout_s)

    @staticmethod
    async def quietly(consumers: Sequence[Consumer], timing: ContractTiming) -> list[Record]:
        """Everything fetched during ``quiet_s``."""
        got: list[Record] = []
        deadline = time.monotonic() + timing.quiet_s
        while time.monotonic() < deadline:
            for batch in await asyncio.gather(
                *(c.fetch(100, timing.fetch_timeout_s) for c in consumers)
            ):
                got.extend(batch)
        return got

    # -- admin ---------------------------------------------------------------------------

    async def test_declares_capabilities(self, broker: Broker) -> None:
        assert isinstance(broker.capabilities, Capabilities)
        assert isinstance(broker.url, str)

    async def test_create_describe_list_delete(self, broker: Broker) -> None:
        name = self.fresh_topic("admin")
        info = await broker.create_topic(name, 3)
        assert (info.name, info.partitions) == (name, 3)
        described = await broker.describe_topic(name)
        assert (described.name, described.partitions) == (name, 3)
        listed = await broker.list_topics()
        assert name in [t.name for t in listed]
        assert [t.name for t in listed] == sorted(t.name for t in listed)
        with pytest.raises(TopicExistsError):
            await broker.create_topic(name, 3)
        again = await broker.create_topic(name, 5, exist_ok=True)
        assert again.partitions == 3
        await broker.delete_topic(name)
        with pytest.raises(TopicNotFoundError):
            await broker.describe_topic(name)
        with pytest.raises(TopicNotFoundError):
            await broker.delete_topic(name)
        assert name not in [t.name for t in await broker.list_topics()]

    async def test_a_recreated_topic_is_a_new_incarnation(self, broker: Broker) -> None:
        """Effectively-once ids name the input topic's incarnation: a deleted and
        re-created topic restarts its offsets at 0, so only the incarnation keeps its
        new records' ids from repeating the old ones'."""
        if not broker.capabilities.dedup_on_publish:
            pytest.skip(f"{type(broker).__name__} does not deduplicate on publish")
        name = self.fresh_topic("incarnation")
        first = await broker.create_topic(name, 2)
        assert first.incarnation
        assert (await broker.describe_topic(name)).incarnation == first.incarnation
        assert (await broker.create_topic(name, 2, exist_ok=True)).incarnation == first.incarnation
        await broker.delete_topic(name)
        second = await broker.create_topic(name, 2)
        assert second.incarnation not in ("", first.incarnation)
        listed = {t.name: t.incarnation for t in await broker.list_topics()}
        assert listed[name] == second.incarnation == (await broker.describe_topic(name)).incarnation

    async def test_bad_arguments_raise_spate_errors(self, broker: Broker) -> None:
        with pytest.raises(SpateError):
            await broker.create_topic(self.fresh_topic(), 0)
        with pytest.raises(SpateError):
            await broker.create_topic("not a valid/topic name", 1)
        with pytest.raises(TopicNotFoundError):
            await broker.describe_topic(self.fresh_topic("missing"))

    # -- publish and fetch ---------------------------------------------------------------

    async def test_records_keep_key_headers_and_timestamp(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        topic = await self.new_topic(broker)
        headers = (("trace", b"abc"), ("kind", b"x"), ("trace", b"def"))
        async with broker.producer() as producer:
            producer.send(topic, b"one", key=b"k1", headers=headers, timestamp_ms=1_700_000_000_123)
            producer.send(topic, b"two")
            await producer.flush()
        async with broker.consumer([topic], self.fresh_group()) as consumer:
            records = await self.collect(consumer, 2, contract_timing)
        assert [r.value for r in records] == [b"one", b"two"]
        first, second = records
        assert (first.topic, first.partition, first.key) == (topic, 0, b"k1")
        assert first.headers == headers
        assert first.header("trace") == b"def"
        assert first.timestamp_ms == 1_700_000_000_123
        assert second.key is None
        assert second.headers == ()
        assert second.timestamp_ms > 0
        assert second.offset > first.offset

    async def test_fetch_returns_batches_in_order_per_partition(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        topic = await self.new_topic(broker, 3)
        await self.produce(broker, topic, 600)
        async with broker.consumer([topic], self.fresh_group()) as consumer:
            records = await self.collect(consumer, 600, contract_timing, max_records=128)
            extra = await self.quietly([consumer], contract_timing)
        assert extra == []
        assert sorted(r.value for r in records) == sorted(b"value-%d" % i for i in range(600))
        by_key: dict[bytes | None, list[int]] = {}
        last_offset: dict[int, int] = {}
        for record in records:
            assert record.offset > last_offset.get(record.partition, -1)
            last_offset[record.partition] = record.offset
            by_key.setdefault(record.key, []).append(int(record.value.split(b"-")[1]))
        for sequence in by_key.values():
            assert sequence == sorted(sequence), "per-key order was not kept"

    async def test_keys_partition_like_spate_partitioner(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        topic = await self.new_topic(broker, 4)
        keys = [b"user-%d" % i for i in range(40)]
        async with broker.producer() as producer:
            for key in keys:
                producer.send(topic, key, key=key)
            producer.send(topic, b"pinned", key=b"user-0", partition=3)
            await producer.flush()
        async with broker.consumer([topic], self.fresh_group()) as consumer:
            records = await self.collect(consumer, 41, contract_timing)
        assert len(records) == 41
        for record in records:
            if record.value == b"pinned":
                assert record.partition == 3
            else:
                assert record.key is not None
                assert record.partition == partition_for_key(record.key, 4)

    async def test_send_many_is_send_in_order(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        topic, other = await self.new_topic(broker, 4), await self.new_topic(broker, 2)
        outputs = [
            (topic if i % 5 else other, b"many-%d" % i, b"user-%d" % (i % 7) if i % 3 else None, i)
            for i in range(60)
        ]
        async with broker.producer() as producer:
            producer.send_many(outputs)
            await producer.flush()
        async with broker.consumer([topic, other], self.fresh_group()) as consumer:
            records = await self.collect(consumer, 60, contract_timing)
        assert sorted(r.value for r in records) == sorted(value for _, value, _, _ in outputs)
        last: dict[tuple[str, int], int] = {}
        for record in sorted(records, key=lambda r: r.offset):
            index = int(record.value.split(b"-")[1])
            assert index > last.get((record.topic, record.partition), -1), "order was not kept"
            last[(record.topic, record.partition)] = index
            if record.key is not None:
                assert record.partition == partition_for_key(record.key, 4 if index % 5 else 2)
        assert {r.partition for r in records if r.topic == topic and r.key is None} == {0, 1, 2, 3}

    async def test_unkeyed_records_spread_over_partitions(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        topic = await self.new_topic(broker, 3)
        await self.produce(broker, topic, 30, keyed=False)
        async with broker.consumer([topic], self.fresh_group()) as consumer:
            records = await self.collect(consumer, 30, contract_timing)
        assert len(records) == 30
        assert {r.partition for r in records} == {0, 1, 2}

    # -- groups, commits, seek -----------------------------------------------------------

    async def test_commit_is_resumed_by_a_new_member(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        topic = await self.new_topic(broker)
        group = self.fresh_group()
        await self.produce(broker, topic, 20)
        async with broker.consumer([topic], group) as consumer:
            records = await self.collect(consumer, 20, contract_timing, max_records=5)
            assert len(records) == 20
            await consumer.commit({TopicPartition(topic, 0): records[4].offset})
            await consumer.commit({TopicPartition(topic, 0): records[9].offset})
        assert group in await broker.groups()
        (lag,) = await broker.lag(group, [topic])
        assert lag.committed == records[9].offset + 1
        assert lag.lag > 0
        async with broker.consumer([topic], group) as consumer:
            resumed = await self.collect(consumer, 10, contract_timing)
            assert [r.value for r in resumed] == [r.value for r in records[10:]]
            await consumer.commit({TopicPartition(topic, 0): resumed[-1].offset})
        (lag,) = await broker.lag(group, [topic])
        assert lag.lag == 0
        assert lag.committed == lag.end_offset

    async def test_lag_of_a_group(self, broker: Broker, contract_timing: ContractTiming) -> None:
        topic = await self.new_topic(broker, 2)
        group = self.fresh_group()
        await self.produce(broker, topic, 10, keyed=False)
        async with broker.consumer([topic], group) as consumer:
            records = await self.collect(consumer, 10, contract_timing)
            last = {}
            for record in records:
                last[record.topic_partition] = record.offset
            first_tp = min(last)
            await consumer.commit({first_tp: last[first_tp]})
        lags = {(entry.topic, entry.partition): entry for entry in await broker.lag(group, [topic])}
        assert set(lags) == {(topic, 0), (topic, 1)}
        assert lags[first_tp].lag == 0
        assert lags[first_tp].committed == last[first_tp] + 1
        other = lags[(topic, 1 - first_tp.partition)]
        assert other.committed is None
        assert other.lag == 5
        assert [e.topic for e in await broker.lag(group)] == [topic, topic]

    async def test_seek_rereads(self, broker: Broker, contract_timing: ContractTiming) -> None:
        topic = await self.new_topic(broker)
        await self.produce(broker, topic, 10)
        async with broker.consumer([topic], self.fresh_group()) as consumer:
            records = await self.collect(consumer, 10, contract_timing)
            await consumer.seek(TopicPartition(topic, 0), records[3].offset)
            again = await self.collect(consumer, 7, contract_timing)
        assert [r.value for r in again] == [r.value for r in records[3:]]

    async def test_latest_offset_reset_skips_existing_records(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        topic = await self.new_topic(broker)
        await self.produce(broker, topic, 5)
        consumer = broker.consumer([topic], self.fresh_group(), offset_reset="latest")
        async with consumer:
            await self.until(lambda: bool(consumer.assignment()), [consumer], contract_timing)
            await self.produce(broker, topic, 3, start=100)
            records = await self.collect(consumer, 3, contract_timing)
        assert [r.value for r in records] == [b"value-100", b"value-101", b"value-102"]

    async def test_two_members_split_partitions(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        topic = await self.new_topic(broker, 4)
        group = self.fresh_group()
        everything = {TopicPartition(topic, p) for p in range(4)}
        first_listener, second_listener = RecordingListener(), RecordingListener()
        got: list[Record] = []
        async with broker.consumer([topic], group, first_listener) as first:
            await self.until(lambda: first.assignment() == everything, [first], contract_timing)
            assert first_listener.partitions("assigned") == everything
            async with broker.consumer([topic], group, second_listener) as second:

                def split() -> bool:
                    a, b = first.assignment(), second.assignment()
                    return bool(a) and bool(b) and not a & b and a | b == everything

                await self.until(split, [first, second], contract_timing, got.extend)
                assert second.assignment() <= first_listener.partitions("revoked")
                assert second_listener.partitions("assigned") == second.assignment()
                await self.produce(broker, topic, 200)
                deadline = time.monotonic() + contract_timing.settle_timeout_s
                owners: dict[TopicPartition, set[int]] = {}
                while len(got) < 200 and time.monotonic() < deadline:
                    for index, consumer in enumerate((first, second)):
                        batch = await consumer.fetch(100, contract_timing.fetch_timeout_s)
                        for record in batch:
                            owners.setdefault(record.topic_partition, set()).add(index)
                        got.extend(batch)
                assert sorted(r.value for r in got) == sorted(b"value-%d" % i for i in range(200))
                assert all(len(who) == 1 for who in owners.values())
                moved = next(iter(second.assignment()))
                with pytest.raises(FencedError):
                    await first.commit({moved: 0})

    async def test_every_group_sees_every_record(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        topic = await self.new_topic(broker, 2)
        await self.produce(broker, topic, 50)
        for group in (self.fresh_group("a"), self.fresh_group("b")):
            async with broker.consumer([topic], group) as consumer:
                records = await self.collect(consumer, 50, contract_timing)
            assert sorted(r.value for r in records) == sorted(b"value-%d" % i for i in range(50))

    async def test_consumer_reads_several_topics(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        one, two = await self.new_topic(broker), await self.new_topic(broker, 2)
        await self.produce(broker, one, 5)
        await self.produce(broker, two, 5, start=5)
        async with broker.consumer([one, two], self.fresh_group()) as consumer:
            records = await self.collect(consumer, 10, contract_timing)
        assert {r.topic for r in records} == {one, two}
        assert len(records) == 10

    async def test_consuming_a_missing_topic_fails_at_start(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        missing = self.fresh_topic("missing")
        consumer = broker.consumer([missing], self.fresh_group())
        try:
            with pytest.raises(TopicNotFoundError, match=missing):
                await consumer.fetch(1, contract_timing.fetch_timeout_s)
        finally:
            await consumer.close()

    async def test_deleting_a_consumed_topic_stops_its_consumer(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        """One behaviour everywhere (as Kafka Streams' MissingSourceTopicException): a
        consumer whose topic is deleted under it raises TopicNotFoundError naming the
        topic and the group, never goes silent and never leaks a vendor error."""
        topic = await self.new_topic(broker, 2)
        group = self.fresh_group()
        await self.produce(broker, topic, 4)
        async with broker.consumer([topic], group) as consumer:
            assert len(await self.collect(consumer, 4, contract_timing)) == 4
            await consumer.commit({TopicPartition(topic, 0): 0})
            async with connect(broker.url) as admin:  # as `spate topics delete` would
                await admin.delete_topic(topic)
            with pytest.raises(TopicNotFoundError) as info:
                await self.keep_fetching(consumer, contract_timing)
        assert f"topic {topic!r} was deleted while group {group!r} consumed it" in str(info.value)

    # -- lifecycle -----------------------------------------------------------------------

    async def test_close_revokes_and_refuses_further_use(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        topic = await self.new_topic(broker, 2)
        listener = RecordingListener()
        consumer = broker.consumer([topic], self.fresh_group(), listener)
        await consumer.start()
        everything = {TopicPartition(topic, 0), TopicPartition(topic, 1)}
        await self.until(lambda: consumer.assignment() == everything, [consumer], contract_timing)
        assert listener.events[0] == ("assigned", tuple(sorted(everything)))
        await consumer.close()
        assert listener.events[-1] == ("revoked", tuple(sorted(everything)))
        await consumer.close()
        with pytest.raises(ClosedError):
            await consumer.fetch(10, contract_timing.fetch_timeout_s)
        producer = broker.producer()
        await producer.close()
        with pytest.raises(ClosedError):
            producer.send(topic, b"late")

    async def test_on_revoked_can_commit_while_the_consumer_closes(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        """Closing revokes first, and the runtime commits what it finished from inside
        ``on_revoked`` — also when a failed loop closes it with offsets pending."""
        topic, group = await self.new_topic(broker), self.fresh_group()
        await self.produce(broker, topic, 5)
        done: dict[TopicPartition, int] = {}
        consumers: list[Consumer] = []

        class CommitOnRevoke(RecordingListener):
            async def on_revoked(self, partitions: Sequence[TopicPartition]) -> None:
                await super().on_revoked(partitions)
                await consumers[0].commit({tp: done[tp] for tp in partitions if tp in done})

        consumer = broker.consumer([topic], group, CommitOnRevoke())
        consumers.append(consumer)
        await consumer.start()
        for record in await self.collect(consumer, 5, contract_timing):
            done[record.topic_partition] = record.offset
        await consumer.close()
        [lag] = await broker.lag(group, [topic])
        assert lag.committed == 5

    async def test_producer_close_flushes(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        topic = await self.new_topic(broker)
        producer = broker.producer()
        producer.send(topic, b"buffered")
        await producer.close()
        async with broker.consumer([topic], self.fresh_group()) as consumer:
            records = await self.collect(consumer, 1, contract_timing)
        assert [r.value for r in records] == [b"buffered"]

    # -- exactly-once and dedup ----------------------------------------------------------

    async def test_transaction_commit_publishes_and_commits_together(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        if not broker.capabilities.transactions:
            pytest.skip(f"{type(broker).__name__} has no transactions")
        source, sink = await self.new_topic(broker), await self.new_topic(broker)
        group = self.fresh_group()
        await self.produce(broker, source, 4)
        producer = broker.producer(transactional_id=f"contract-{uuid.uuid4().hex[:8]}")
        async with producer, broker.consumer([source], group) as consumer:
            records = await self.collect(consumer, 4, contract_timing)
            tp = TopicPartition(source, 0)
            await producer.begin_transaction()
            for record in records[:2]:
                producer.send(sink, record.value.upper())
            await producer.commit_transaction(consumer, {tp: records[1].offset})
            await producer.begin_transaction()
            producer.send(sink, b"aborted")
            await producer.abort_transaction()
            await producer.begin_transaction()
            producer.send(sink, b"never-committed")
            async with broker.consumer([sink], self.fresh_group("reader")) as reader:
                outputs = await self.collect(reader, 2, contract_timing)
                outputs += await self.quietly([reader], contract_timing)
            await producer.abort_transaction()
        assert [r.value for r in outputs] == [b"VALUE-0", b"VALUE-1"]
        (lag,) = await broker.lag(group, [source])
        assert lag.committed == records[1].offset + 1

    async def test_transaction_of_a_fenced_member_is_refused(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        if not broker.capabilities.transactions:
            pytest.skip(f"{type(broker).__name__} has no transactions")
        source, sink = await self.new_topic(broker, 2), await self.new_topic(broker)
        group = self.fresh_group()
        producer = broker.producer(transactional_id=f"contract-{uuid.uuid4().hex[:8]}")
        async with producer, broker.consumer([source], group) as first:
            everything = {TopicPartition(source, 0), TopicPartition(source, 1)}
            await self.until(lambda: first.assignment() == everything, [first], contract_timing)
            async with broker.consumer([source], group) as second:
                await self.until(
                    lambda: bool(second.assignment()) and len(first.assignment()) == 1,
                    [first, second],
                    contract_timing,
                )
                moved = next(iter(second.assignment()))
                await producer.begin_transaction()
                producer.send(sink, b"from-a-zombie")
                with pytest.raises(FencedError):
                    await producer.commit_transaction(first, {moved: 0})
                async with broker.consumer([sink], self.fresh_group("reader")) as reader:
                    assert await self.quietly([reader], contract_timing) == []

    async def test_dedup_on_publish(self, broker: Broker, contract_timing: ContractTiming) -> None:
        if not broker.capabilities.dedup_on_publish:
            pytest.skip(f"{type(broker).__name__} does not deduplicate on publish")
        topic = await self.new_topic(broker)
        async with broker.producer() as producer:
            producer.send(topic, b"once", dedup_id="orders-0-17-0")
            await producer.flush()
            assert producer.duplicates == 0
            producer.send(topic, b"once", dedup_id="orders-0-17-0")
            producer.send(topic, b"other", dedup_id="orders-0-18-0")
            await producer.flush()
            assert producer.duplicates == 1, "a dropped copy must be counted, never silent"
        async with broker.consumer([topic], self.fresh_group()) as consumer:
            records = await self.collect(consumer, 2, contract_timing)
            records += await self.quietly([consumer], contract_timing)
        assert [r.value for r in records] == [b"once", b"other"]

    async def test_dedup_holds_for_unkeyed_records_from_another_producer(
        self, broker: Broker
    ) -> None:
        """Brokers drop duplicates per partition: an unkeyed record with a ``dedup_id``
        must land on the same partition whichever producer re-publishes it."""
        if not broker.capabilities.dedup_on_publish:
            pytest.skip(f"{type(broker).__name__} does not deduplicate on publish")
        topic = await self.new_topic(broker, partitions=4)
        async with broker.producer() as first:
            for i in range(3):
                first.send(topic, b"v%d" % i, dedup_id=f"in/0/{i}/0")
            await first.flush()
        async with broker.producer() as successor:  # its round-robin starts again at 0
            successor.send(topic, b"v2", dedup_id="in/0/2/0")
            await successor.flush()
        assert sum(row.end_offset for row in await broker.lag("g", [topic])) == 3

    # -- readers -------------------------------------------------------------------------

    async def test_reader_reads_a_partition_in_batches_in_order(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        self.require_reader(broker)
        topic = await self.new_topic(broker, partitions=2)
        async with broker.producer() as producer:
            for i in range(10):
                producer.send(topic, b"value-%d" % i, partition=1)
            await producer.flush()
        async with broker.reader(topic, 1) as reader:
            assert reader.topic_partition == TopicPartition(topic, 1)
            assert reader.position == 0
            first = await reader.fetch(4, contract_timing.settle_timeout_s)
            assert 1 <= len(first) <= 4
            rest = await self.read(reader, 10 - len(first), contract_timing)
            assert reader.position == 10
        records = first + rest
        assert [r.offset for r in records] == list(range(10))
        assert [r.value for r in records] == [b"value-%d" % i for i in range(10)]
        assert {(r.topic, r.partition) for r in records} == {(topic, 1)}

    async def test_reader_starts_at_an_offset_and_seeks(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        self.require_reader(broker)
        topic = await self.new_topic(broker)
        await self.produce(broker, topic, 8)
        async with broker.reader(topic, 0, start=5) as reader:
            assert [r.offset for r in await self.read(reader, 3, contract_timing)] == [5, 6, 7]
            await reader.seek(2)
            assert reader.position == 2
            again = await self.read(reader, 2, contract_timing)
            assert [(r.offset, r.value) for r in again] == [(2, b"value-2"), (3, b"value-3")]
            await reader.seek("earliest")
            assert reader.position == 0
            assert await reader.bounds() == (0, 8)
            await reader.seek(1000)
            assert reader.position == 8

    async def test_reader_at_the_end_waits_then_returns_empty(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        self.require_reader(broker)
        topic = await self.new_topic(broker)
        async with broker.reader(topic) as empty:
            assert await empty.fetch(10, contract_timing.fetch_timeout_s) == []
            assert empty.position == 0
        await self.produce(broker, topic, 3)
        async with broker.reader(topic, start="latest") as reader:
            assert reader.position == 3
            assert await reader.fetch(10, contract_timing.fetch_timeout_s) == []
            await self.produce(broker, topic, 2, start=100)
            records = await self.read(reader, 2, contract_timing)
        assert [(r.offset, r.value) for r in records] == [(3, b"value-100"), (4, b"value-101")]

    async def test_reader_reaches_the_end_past_transactions(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        """Committed records only, and a position that reaches the end even where the
        log holds offsets without records (transaction markers), so 'read up to the
        end' terminates."""
        self.require_reader(broker)
        if not broker.capabilities.transactions:
            pytest.skip(f"{type(broker).__name__} has no transactions")
        source, sink = await self.new_topic(broker), await self.new_topic(broker)
        await self.produce(broker, source, 1)
        producer = broker.producer(transactional_id=f"contract-{uuid.uuid4().hex[:8]}")
        async with producer, broker.consumer([source], self.fresh_group()) as consumer:
            (record,) = await self.collect(consumer, 1, contract_timing)
            await producer.begin_transaction()
            producer.send(sink, b"kept")
            await producer.commit_transaction(consumer, {record.topic_partition: record.offset})
            await producer.begin_transaction()
            producer.send(sink, b"aborted")
            await producer.abort_transaction()
        async with broker.reader(sink) as reader:
            got = await reader.read_to_end(contract_timing.settle_timeout_s)
        assert [r.value for r in got] == [b"kept"]

    async def test_reader_commits_nothing_and_joins_no_group(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        self.require_reader(broker)
        topic = await self.new_topic(broker)
        await self.produce(broker, topic, 3)
        groups_before = await broker.groups()
        async with broker.reader(topic) as reader:
            assert len(await self.read(reader, 3, contract_timing)) == 3
        assert await broker.groups() == groups_before

    async def test_delete_before_removes_the_oldest_records_by_time(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        """Each partition loses its records older than the cut, offsets of the rest do
        not change, and a group that committed before the cut resumes at the first
        record kept. Each flush is one batch (the embedded broker deletes whole ones)."""
        if not broker.capabilities.delete_records:
            with pytest.raises(CapabilityError, match="delete_records"):
                await broker.delete_before(self.fresh_topic("missing"), 0)
            pytest.skip(f"{type(broker).__name__} cannot delete records")
        topic = await self.new_topic(broker, partitions=2)
        now_ms = int(time.time() * 1000)
        old_ms, cut_ms = now_ms - 60_000, now_ms - 30_000
        async with broker.producer() as producer:
            for partition, old, new in ((0, 3, 2), (1, 2, 1)):
                for timestamp_ms, count in ((old_ms, old), (now_ms, new)):
                    for i in range(count):
                        producer.send(
                            topic, b"%d" % i, partition=partition, timestamp_ms=timestamp_ms + i
                        )
                    await producer.flush()
        group = self.fresh_group()
        async with broker.consumer([topic], group) as consumer:
            await self.collect(consumer, 5, contract_timing)
            await consumer.commit({TopicPartition(topic, 0): 0})
        assert await broker.delete_before(topic, old_ms - 1) == 0
        assert await broker.delete_before(topic, cut_ms) == 5
        assert await broker.delete_before(topic, cut_ms) == 0
        if broker.capabilities.reader:
            for partition, first, end in ((0, 3, 5), (1, 2, 3)):
                async with broker.reader(topic, partition) as reader:
                    assert await reader.bounds() == (first, end)
                    kept = await reader.read_to_end(contract_timing.settle_timeout_s)
                assert [r.offset for r in kept] == list(range(first, end))
                assert all(r.timestamp_ms >= now_ms for r in kept)
        async with broker.consumer([topic], group) as consumer:
            resumed = await self.collect(consumer, 3, contract_timing)
        assert sorted((r.partition, r.offset) for r in resumed) == [(0, 3), (0, 4), (1, 2)]
        with pytest.raises(TopicNotFoundError):
            await broker.delete_before(self.fresh_topic("missing"), cut_ms)

    async def test_reader_refuses_bad_arguments_and_use_after_close(
        self, broker: Broker, contract_timing: ContractTiming
    ) -> None:
        self.require_reader(broker)
        with pytest.raises(TopicNotFoundError):
            async with broker.reader(self.fresh_topic("missing")):
                pass
        topic = await self.new_topic(broker, partitions=2)
        with pytest.raises(ConfigError, match="partition 2 does not exist"):
            async with broker.reader(topic, 2):
                pass
        with pytest.raises(ConfigError, match="start=-1"):
            broker.reader(topic, 0, start=-1)
        reader = broker.reader(topic)
        async with reader:
            await reader.fetch(1, contract_timing.fetch_timeout_s)
        with pytest.raises(ClosedError):
            await reader.fetch(1, contract_timing.fetch_timeout_s)


__all__ = ["BrokerContract", "ContractTiming", "RecordingListener"]
