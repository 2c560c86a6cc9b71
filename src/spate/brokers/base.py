"""The broker contract every adapter implements (DESIGN §5).

The runtime talks to brokers only through these classes and asks :class:`Capabilities`
what a broker can do; it never checks which broker it has.

Semantics every adapter keeps:

* ``Producer.send`` only buffers (no ``await`` per record); ``flush`` waits until the
  broker acknowledged everything sent so far, or raises :class:`PublishError`.
  ``send_many`` is the same for a whole batch, in order, at one call per batch.
* ``Consumer.fetch`` returns a *batch*. Rebalance callbacks of the listener run inside
  ``fetch`` (as Kafka's ``poll`` does), so the runtime never races with them.
* ``Consumer.commit(through)`` is cumulative: "every record up to and including this
  offset in this partition is done". The stored position is ``through + 1``.
* ``close`` of a consumer first calls ``on_revoked`` for what it still owns, so the
  runtime can commit, then leaves the group.
* A topic deleted while a consumer reads it makes ``fetch`` raise
  :class:`TopicNotFoundError` (:func:`topic_deleted`), on every broker: never silence.
* Vendor exceptions never escape: adapters map them onto :mod:`spate.errors`.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol, Self, overload

from spate.errors import CapabilityError, TopicNotFoundError
from spate.record import Headers, Record, TopicPartition

OffsetReset = Literal["earliest", "latest"]
_READ_TO_END_WAIT_S = 0.5
ReaderStart = int | Literal["earliest", "latest"]
"""Where a :class:`Reader` begins: an offset, or the first retained / next new record."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Capabilities:
    """What a broker can do; the runtime decides by these, never by broker type."""

    native_groups: bool
    """The broker assigns partitions and keeps members alive itself (Kafka);
    otherwise spate's leases do, with heartbeats on the event loop."""
    per_key_order: bool
    replay: bool
    """Records stay after consumption and can be re-read with ``seek``."""
    transactions: bool
    """Outputs and offset commits can be one atomic unit (exactly-once)."""
    dedup_on_publish: bool
    """The broker drops a re-published record carrying the same ``dedup_id``."""
    partitions: bool
    """Topics have several partitions, each an ordered log of its own."""
    seek: bool
    """Records have dense per-partition offsets a consumer can ``seek`` to."""
    admin: bool
    """Topics can be created, described, listed and deleted through the broker."""
    lag: bool
    """``lag`` and ``groups`` report what a group committed against the log's end."""
    reader: bool
    """``Broker.reader`` reads one partition from an offset without a group."""
    delete_records: bool = False
    """``Broker.delete_before`` deletes the oldest records of a topic by time (``spate
    dlq purge``). Defaults to False so an adapter written before it still builds."""
    compaction: bool = False
    """Topics created with ``cleanup.policy=compact`` keep the latest record per key
    (Kafka): a table's topic (``app.table``) is created so where the broker has it."""


CapabilityName = Literal["partitions", "seek", "admin", "lag", "reader", "delete_records"]


def require(broker: Broker, capability: CapabilityName, action: str) -> None:
    """Raise CapabilityError naming ``action`` unless ``broker`` has ``capability``.

    Callers ask before they start (the CLI, TestApp), so a broker that cannot do
    something says so up front instead of failing halfway with a vendor error.
    """
    if not getattr(broker.capabilities, capability):
        raise CapabilityError(
            f"broker {broker.url} cannot {action}: it has no {capability!r} capability "
            f"(Capabilities.{capability} is False); use a broker that has it"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class TopicInfo:
    """A topic as the broker describes it."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    incarnation: str = ""
    """Which creation of the topic this is: an id the broker stores with the topic, new
    each time a topic of that name is created (after a delete, too). Effectively-once
    puts it in its dedup ids, so offsets of a re-created topic, which start again at 0,
    never repeat the ids of the old one. "" where the broker keeps none (it needs none
    without ``dedup_on_publish``) or for a topic created before spate stored one."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PartitionLag:
    """How far a group is behind in one partition.

    ``committed`` is the next offset the group will read (None: nothing committed yet);
    ``end_offset`` is the offset the next appended record will get.
    """

    topic: str
    partition: int
    committed: int | None
    end_offset: int
    lag: int


class RebalanceListener(Protocol):
    """Told when a consumer's partitions change. Called from inside ``fetch``/``close``."""

    async def on_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        """Partitions now owned; fetching them resumes from the committed offsets."""

    async def on_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Partitions about to go: commit and flush state before returning."""

    async def on_lost(self, partitions: Sequence[TopicPartition]) -> None:
        """Ownership is already gone: drop uncommitted work, never commit it."""


class NullListener:
    """A listener that does nothing, for consumers that do not care about rebalances."""

    async def on_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        return None

    async def on_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        return None

    async def on_lost(self, partitions: Sequence[TopicPartition]) -> None:
        return None


class AsyncResource:
    """``async with`` support for anything with ``start`` and ``close``."""

    async def start(self) -> None:
        """Acquire what the resource needs; idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release everything; idempotent."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


Outgoing = tuple[str, bytes, bytes | None, object]
"""One record for :meth:`Producer.send_many`: (topic, value, key, anything). The fourth
element is the caller's own (the runtime's source record) and is ignored, so the
runtime hands over its outputs as they are, without a copy per record."""


class Producer(AsyncResource):
    """Publishes records. ``send`` buffers; ``flush`` waits for acknowledgement."""

    duplicates: int = 0
    """Records the broker acknowledged but dropped because it had stored a record with
    the same ``dedup_id`` before (within its window), since this producer was made.
    Adapters with ``dedup_on_publish`` count them as the acknowledgements arrive, so a
    caller learns per ``flush`` what never reached the topic."""

    @abc.abstractmethod
    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
        dedup_id: str | None = None,
    ) -> None:
        """Buffer one record. ``partition=None`` uses :mod:`spate.partitioner`.

        ``dedup_id`` lets a broker with ``dedup_on_publish`` drop a re-published copy;
        other brokers ignore it. Such a broker passes it to the partitioner too, so an
        unkeyed copy lands on the partition of the first (dedup is per partition).
        """

    def send_many(self, outputs: Iterable[Outgoing]) -> None:
        """Buffer each ``(topic, value, key, _)`` in order, exactly as
        ``send(topic, value, key=key)`` would, one after the other.

        The runtime publishes a batch's outputs through this one call (DESIGN §10: work
        per batch), so an adapter can override it with a loop that pays its per-call
        costs (closed check, partition counts, keyword arguments) once per batch.
        """
        send = self.send
        for topic, value, key, _ in outputs:
            send(topic, value, key=key)

    def send_to_partition(
        self,
        topic: str,
        partition: int,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers = (),
    ) -> None:
        """Buffer ``values[i]`` with key ``keys[i]`` and ``headers``, each on
        ``partition`` of ``topic``, in order, exactly as ``send`` would one by one.

        A store's flush writes every key a batch changed to one changelog partition
        through this one call, so an adapter can buffer them without a call per record.
        """
        send = self.send
        for key, value in zip(keys, values, strict=True):
            send(topic, value, key=key, headers=headers, partition=partition)

    @abc.abstractmethod
    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every buffered record is acknowledged; raise PublishError if not."""


class TransactionalProducer(Producer):
    """A producer whose sends can be one atomic unit with a consumer's offset commit.

    Only brokers with ``Capabilities.transactions`` make one (``Broker.producer`` with
    a ``transactional_id``), so a plain :class:`Producer` has no transaction methods
    at all and exactly-once is typed to need this class. Between ``begin_transaction``
    and its commit or abort, ``send`` buffers into the transaction and ``flush``
    publishes nothing: the outputs become visible with the commit, or never.
    """

    @abc.abstractmethod
    async def begin_transaction(self) -> None:
        """Start a transaction; sends until its commit or abort belong to it."""

    @abc.abstractmethod
    async def commit_transaction(
        self, consumer: Consumer, offsets: Mapping[TopicPartition, int]
    ) -> None:
        """Atomically publish what was sent since ``begin_transaction`` and commit
        ``offsets`` (each the last processed offset, as in :meth:`Consumer.commit`)
        for ``consumer``'s group. Raises FencedError if ownership was lost."""

    @abc.abstractmethod
    async def abort_transaction(self) -> None:
        """Drop everything sent since ``begin_transaction``."""


def topic_deleted(topic: str, group: str) -> TopicNotFoundError:
    """The error of a consumer whose topic was deleted under it, worded once for every
    broker. As Kafka Streams' MissingSourceTopicException, it stops the processor: a
    consumer that waited silently would look healthy while doing nothing."""
    return TopicNotFoundError(
        f"topic {topic!r} was deleted while group {group!r} consumed it; re-create it "
        f"(spate topics create {topic} --partitions N) and restart, or stop consuming it"
    )


class Consumer(AsyncResource):
    """Reads a group's share of some topics in batches."""

    group: str
    fills_batches: ClassVar[bool] = False
    """``fetch`` waits up to ``timeout_s`` for a full batch, not only for its first
    record (Kafka's consume). A fetch that does not wait then returns part of a batch
    even under load, so the runtime never polls such a consumer with ``timeout_s=0``."""

    @abc.abstractmethod
    async def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout_s`` for the first
        (for all of them where ``fills_batches``); ``timeout_s=0`` returns what is there."""

    @abc.abstractmethod
    async def commit(self, through: Mapping[TopicPartition, int], *, wait: bool = True) -> None:
        """Mark every record up to and including ``through[tp]`` as done.

        Raises FencedError when a partition is no longer owned by this member.
        ``wait=False`` lets a broker whose commits cost a thread hop and a round trip
        (Kafka) send the commit and return; a failure is then logged, not raised, and
        the caller must commit the same offsets again with ``wait=True`` before it
        relies on them (at-least-once does so when idle, on revocation and at stop).
        Brokers that commit cheaply on the event loop always wait.
        """

    @abc.abstractmethod
    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """Make the next fetch of ``tp`` start at ``offset`` (an owned partition)."""

    @abc.abstractmethod
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member owns right now."""


class Reader(AsyncResource):
    """Reads one partition in offset order from a chosen start: no group, no commits,
    no rebalance — for looking at a topic, restoring state, or checking outputs.

    ``start`` resolves when the reader starts (``async with`` or the first ``fetch``):
    an offset below the first retained record starts at that record, one beyond the
    end starts at the end; TopicNotFoundError if the topic is missing, ConfigError if
    the partition is. Reading at the end waits up to ``timeout_s``, then returns [].
    """

    topic_partition: TopicPartition

    @abc.abstractmethod
    async def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` next records of the partition, in offset order,
        waiting at most ``timeout_s`` for the first."""

    @abc.abstractmethod
    async def seek(self, start: ReaderStart) -> None:
        """Make the next fetch begin at ``start`` (resolved as at the reader's start)."""

    @abc.abstractmethod
    async def bounds(self) -> tuple[int, int]:
        """(first retained offset, offset the next appended record gets) of the
        partition now: the same ends ``lag`` measures against."""

    async def settled_end(self, timeout_s: float) -> int:
        """The end of the partition once everything written to it so far is settled:
        readable, or known never to be (an aborted transaction's). A reader that must
        see every record committed before now (a store's restore) reads up to it.

        Where records are readable once written this is ``bounds()[1]``. Kafka's
        read_committed end stops at the first transaction still open, and records of
        transactions committed after it wait behind it: there this waits (up to
        ``timeout_s``, then a transient error) until no transaction open now is."""
        return (await self.bounds())[1]

    @property
    @abc.abstractmethod
    def position(self) -> int:
        """The offset the next fetch returns first (or would, once written)."""

    async def read_to_end(
        self, timeout_s: float, max_records: int = 10_000, *, settled: bool = False
    ) -> list[Record]:
        """Every record from the position up to the partition's end as it is now;
        TimeoutError if that takes longer than ``timeout_s``. ``settled``: up to
        :meth:`settled_end`, so every transaction committed before the call is read
        (on Kafka a committed transaction's records become readable only once the
        broker has written its marker, which may come after the group's offsets
        show it committed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        end = await self.settled_end(timeout_s) if settled else (await self.bounds())[1]
        records: list[Record] = []
        while self.position < end:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"reader of {self.topic_partition.topic}[{self.topic_partition.partition}] "
                    f"at {self.position}, not at the end {end} after {timeout_s}s"
                )
            records.extend(await self.fetch(max_records, min(remaining, _READ_TO_END_WAIT_S)))
        return records


class Broker(AsyncResource):
    """One connection to a messaging system: admin, producers and consumers."""

    capabilities: Capabilities
    url: str

    @property
    def available(self) -> bool:
        """False while the adapter knows its broker is unreachable and keeps trying to
        get it back (readiness: not ready); True otherwise, also before ``start``."""
        return True

    @abc.abstractmethod
    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
        *,
        exist_ok: bool = False,
    ) -> TopicInfo:
        """Create a topic; with ``exist_ok`` an existing one is returned as it is."""

    @abc.abstractmethod
    async def describe_topic(self, name: str) -> TopicInfo:
        """The topic's partition count and config; TopicNotFoundError if missing."""

    @abc.abstractmethod
    async def delete_topic(self, name: str) -> None:
        """Delete a topic and its records; TopicNotFoundError if missing."""

    @abc.abstractmethod
    async def list_topics(self) -> list[TopicInfo]:
        """Every topic, sorted by name."""

    @overload
    def producer(self) -> Producer: ...

    @overload
    def producer(self, *, transactional_id: str) -> TransactionalProducer: ...

    @overload
    def producer(self, *, transactional_id: str | None) -> Producer: ...

    def producer(self, *, transactional_id: str | None = None) -> Producer:
        """A new producer; ``transactional_id`` makes it a :class:`TransactionalProducer`
        (exactly-once), which only a broker with ``Capabilities.transactions`` has."""
        if transactional_id is None:
            return self._new_producer()
        if not self.capabilities.transactions:
            raise CapabilityError(
                f"broker {self.url} has no transactions; processing_guarantee="
                "'exactly-once' publishes with dedup_id there instead (the broker drops "
                "a re-published copy within its deduplication window)"
            )
        return self._new_transactional_producer(transactional_id)

    @abc.abstractmethod
    def _new_producer(self) -> Producer:
        """A plain producer (``producer()``)."""

    def _new_transactional_producer(self, transactional_id: str) -> TransactionalProducer:
        """A transactional producer; brokers with ``Capabilities.transactions`` override
        this (``producer`` refuses the others before asking)."""
        raise CapabilityError(f"{type(self).__name__} makes no transactional producers")

    @abc.abstractmethod
    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        listener: RebalanceListener | None = None,
        *,
        offset_reset: OffsetReset = "earliest",
        instance_id: str | None = None,
    ) -> Consumer:
        """A group member reading ``topics``; a new group starts at ``offset_reset``.

        ``instance_id`` names this member across restarts: a broker with native groups
        makes it a static member (Kafka's ``group.instance.id``), which gets its
        partitions back on restart without a rebalance. Lease brokers need no such
        name (a restarted member takes expired leases) and ignore it.
        """

    def reader(self, topic: str, partition: int = 0, start: ReaderStart = "earliest") -> Reader:
        """A :class:`Reader` of one partition from ``start`` (where ``Capabilities.reader``)."""
        raise CapabilityError(f"broker {self.url} has no partition reader")

    async def delete_before(self, topic: str, before_ms: int) -> int:
        """Delete, in every partition of ``topic``, the records before the first one
        whose timestamp is ``before_ms`` or later (all of them if none is); return how
        many were deleted (where ``Capabilities.delete_records``).

        A log only loses its head: offsets of what stays never change, a partition's
        first retained offset moves up, and a group positioned before it resumes there.
        Records a group has not committed yet are deleted all the same, as Kafka's
        DeleteRecords does. TopicNotFoundError if ``topic`` is missing.
        """
        raise CapabilityError(
            f"broker {self.url} cannot delete records: it has no 'delete_records' "
            "capability (Capabilities.delete_records is False)"
        )

    @abc.abstractmethod
    async def lag(self, group: str, topics: Sequence[str] | None = None) -> list[PartitionLag]:
        """Per-partition lag of ``group`` (all topics it committed on when None)."""

    async def committed(
        self, group: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Where a new member of ``group`` resumes each of ``partitions`` (0 where the
        group committed nothing): the offsets a store is restored up to. A broker whose
        commits can be in flight (a transaction completing) overrides it to wait for
        them, as its consumers do."""
        topics = sorted({tp.topic for tp in partitions})
        known = {
            TopicPartition(p.topic, p.partition): p.committed for p in await self.lag(group, topics)
        }
        return {tp: known.get(tp) or 0 for tp in partitions}

    @abc.abstractmethod
    async def groups(self) -> list[str]:
        """Every group the broker knows, sorted."""


BrokerOptions = Mapping[str, Any]
