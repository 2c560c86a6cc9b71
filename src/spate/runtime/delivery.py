"""Commit strategies: at-least-once and exactly-once (DESIGN §6).

The worker runs every batch as ``begin_batch`` → pipeline (returns the outputs) →
``end_batch``, which publishes them (or ``abort_batch`` when the pipeline raised),
and asks for a ``checkpoint`` after the batches it covers (see
:mod:`spate.runtime.checkpoint`: when caught up, every ``commit_interval_s``, before
idling, a rebalance or a stop). The strategy owns the producer: it decides how
outputs and offsets become durable, and what a rebalance means for work that is not
committed yet. The order in which a checkpoint becomes durable (outputs → pre-commit
hooks → flush → offsets) is the same for all three and lives once, in
:class:`~spate.runtime.checkpoint.Checkpoint`.

* :class:`AtLeastOnce` flushes the producer, then commits the checkpoint's offsets:
  an offset is committed only after every output of its record was acknowledged.
  The flush and commit of one checkpoint overlap the processing of the next batch;
  those commits do not wait for the broker's answer, and the same offsets are
  committed again, waiting, when the processor idles, loses partitions or stops.
* :class:`ExactlyOnce` wraps each checkpoint's batches in a producer transaction
  whose commit also commits the offsets, atomically. A fenced or failed commit
  aborts: the outputs are dropped and the partitions still owned are rewound to the
  first records the transaction covered.
* :class:`EffectivelyOnce` is exactly-once on brokers with no transactions but with
  deduplication on publish (NATS, Redis): at-least-once, with every output carrying
  a deterministic id, so the broker drops the copy a replay publishes again — within
  the broker's deduplication window.

Whatever the strategy, outputs the broker dropped as duplicates are counted in
``ProcessorStats.duplicates`` and logged once per flush (``event=duplicates_dropped``):
expected after a replay, a sign of lost outputs otherwise, and never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from spate.brokers.base import Consumer, Producer, TopicInfo, TransactionalProducer
from spate.clock import SYSTEM_CLOCK, Clock
from spate.errors import BrokerError, CommitError, FencedError, SpateError
from spate.observability.tracing import OUTPUT_HEADERS
from spate.record import Record, TopicPartition, partition_names
from spate.runtime.checkpoint import Checkpoint, Offsets, OnDurable, PreCommit
from spate.runtime.stats import ProcessorStats
from spate.streams.stages import Output

log = logging.getLogger("spate.runtime")


REVOKE_RETRY_DELAYS_S = (0.1, 0.2, 0.4, 0.8, 1.5)
"""Pauses before asking again for a commit refused while partitions are revoked: 3 s
in all, well inside a rebalance's deadline and longer than a group's usual pause."""


class Delivery(Protocol):
    """How a processor makes a batch's outputs and offsets durable."""

    async def begin_batch(self) -> None: ...

    async def end_batch(
        self, outputs: Sequence[Output], through: Offsets, records: Sequence[Record]
    ) -> None:
        """The pipeline finished ``records``: publish ``outputs``; ``through`` is the
        last offset per partition."""
        ...

    async def abort_batch(self, records: Sequence[Record]) -> None:
        """The pipeline raised: drop every batch since the last checkpoint (they are
        read again) and never commit them."""
        ...

    async def checkpoint(self) -> None:
        """Start making every batch ended since the last checkpoint durable."""
        ...

    async def settle(self) -> None:
        """Make every finished batch durable now, and wait for it (idle, stop)."""
        ...

    async def caught_up(self) -> None:
        """The consumer has caught up (after a checkpoint): make the checkpoint durable
        now, not overlapping a next batch that may be long in coming — its outputs
        would wait for it, unflushed, and its offsets uncommitted."""
        ...

    async def on_assigned(self, partitions: Sequence[TopicPartition]) -> None: ...

    async def on_revoked(self, partitions: Sequence[TopicPartition]) -> None: ...

    async def on_lost(self, partitions: Sequence[TopicPartition]) -> None: ...

    async def discard(self) -> None:
        """The broker failed under this strategy: forget everything not committed (the
        next consumer reads it again) without talking to the broker."""
        ...


def add_first_offsets(first: dict[TopicPartition, int], records: Sequence[Record]) -> None:
    """Add to ``first`` the first offset of each partition of ``records`` it does not
    hold yet (where to rewind to)."""
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        if tp not in first:
            first[tp] = record.offset


class AtLeastOnce(Checkpoint[Producer]):
    """Flush, then commit: never an offset whose outputs are not acknowledged.

    Pipelined (DESIGN §10): batch *n*'s outputs are flushed in the background while
    the user code of batch *n + 1* runs, and the flush finishes before *n + 1*'s
    outputs are sent, so a flush never overlaps a send and outputs keep their order.
    Outputs are flushed after every batch, checkpoint or not: they reach their readers
    as soon as they would with a commit per batch, and a buffer holding a whole
    interval's outputs would cost more than the flushes (the allocator, not the
    broker, pays for thousands of live output buffers). A checkpoint's commit rides
    on the flush after it. These commits are sent without waiting for the broker's
    answer (on Kafka that saves a thread hop and a round trip per batch); their
    offsets stay *unconfirmed* until idling, a rebalance or a stop commits them again
    and waits. A crash replays at most what was not committed: the batches since the
    last checkpoint.
    """

    def __init__(
        self,
        producer: Producer,
        consumer: Consumer,
        stats: ProcessorStats,
        *,
        pre_commit: Sequence[PreCommit] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(producer, consumer, stats, pre_commit=pre_commit)
        self.clock = clock
        """Paces the commits asked again on revocation (injected: tests advance it)."""
        self._unsettled: list[dict[TopicPartition, int]] = []
        self._then: list[OnDurable] = []
        """The unsettled batches' hook callbacks, called once their flush succeeded."""
        self._pending: dict[TopicPartition, int] = {}
        self._unconfirmed: dict[TopicPartition, int] = {}
        """Committed without waiting: committed again, waiting, by ``settle``."""
        self._settling: asyncio.Task[None] | None = None
        self._unflushed = False
        """Outputs were sent since the last flush."""
        self._duplicates_seen = producer.duplicates
        """``producer.duplicates`` when last looked at (the producer outlives a
        delivery: after an outage the next session's delivery shares it)."""

    async def begin_batch(self) -> None:
        if (self._unsettled or self._unflushed) and self._settling is None:
            self._settling = asyncio.create_task(self._settle(wait=False))

    async def end_batch(
        self, outputs: Sequence[Output], through: Offsets, records: Sequence[Record]
    ) -> None:
        await super().end_batch(outputs, through, records)
        self._unflushed = True

    async def _before_send(self) -> None:
        await self._wait_settling()

    async def _durable(self, through: Offsets, then: Sequence[OnDurable]) -> None:
        self._unsettled.append(dict(through))
        self._then.extend(then)

    async def abort_batch(self, records: Sequence[Record]) -> None:
        await self._wait_settling()
        self._drop_open()

    async def settle(self) -> None:
        """Checkpoint, flush and commit every finished batch now, and wait for the commit."""
        await self._wait_settling()
        await self.checkpoint()
        await self._settle(wait=True)

    async def caught_up(self) -> None:
        """Flush and commit now, without waiting for the commit's answer."""
        await self._wait_settling()
        await self._settle(wait=False)

    async def on_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        return None

    async def on_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Commit before the partitions go, asking again while the group refuses.

        A group in the middle of a rebalance refuses commits for a moment (Kafka:
        REBALANCE_IN_PROGRESS, or ILLEGAL_GENERATION for one sent before the new
        generation was known). Nobody commits a released partition's offsets later
        but its next owner, after re-reading what this member already processed,
        so the last chance is here, and this runs at every stop too.
        """
        await self.settle()
        for delay_s in REVOKE_RETRY_DELAYS_S:
            if not any(tp in self._pending for tp in partitions):
                return
            await self.clock.sleep(delay_s)
            await self._commit(self._pending, wait=True)
        refused = {tp: self._pending[tp] for tp in partitions if tp in self._pending}
        if refused:
            log.warning(
                "event=commit_abandoned processor=%s partitions=%s offsets=%s; their next "
                "owner resumes from the last commit",
                self.stats.processor,
                partition_names(refused),
                ",".join(str(offset + 1) for _, offset in sorted(refused.items())),
            )
            self._forget(partitions)

    async def on_lost(self, partitions: Sequence[TopicPartition]) -> None:
        await self._wait_settling()
        self._forget(partitions)

    def _forget(self, partitions: Sequence[TopicPartition]) -> None:
        """Never commit these partitions' offsets: this member does not own them."""
        for tp in partitions:
            self._pending.pop(tp, None)
            self._unconfirmed.pop(tp, None)
            self._through.pop(tp, None)
            for through in self._unsettled:
                through.pop(tp, None)

    async def discard(self) -> None:
        task, self._settling = self._settling, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # the failure is the session's, already being raised
        self._drop_open()
        self._unflushed = False
        self._unsettled.clear()
        self._then.clear()
        self._pending.clear()
        self._unconfirmed.clear()

    async def _wait_settling(self) -> None:
        task, self._settling = self._settling, None
        if task is not None:
            await task

    async def _settle(self, *, wait: bool) -> None:
        batches, self._unsettled = self._unsettled, []
        then, self._then = self._then, []
        if batches or self._unflushed:
            self._unflushed = False
            await self.producer.flush()
            self._count_duplicates()
            for on_durable in then:
                on_durable()
        for through in batches:
            self._pending.update(through)
        if wait and self._unconfirmed:
            self._pending = {**self._unconfirmed, **self._pending}
            self._unconfirmed.clear()
        await self._commit(self._pending, wait=wait)

    def _count_duplicates(self) -> None:
        dropped = self.producer.duplicates - self._duplicates_seen
        if dropped:
            self._duplicates_seen += dropped
            self.stats.duplicates += dropped
            log.warning(
                "event=duplicates_dropped processor=%s group=%s count=%d",
                self.stats.processor,
                self.stats.group,
                dropped,
            )

    async def _commit(self, offsets: Offsets, *, wait: bool) -> None:
        if not offsets:
            return
        committing = dict(offsets)
        started = time.perf_counter()
        try:
            await self.consumer.commit(committing, wait=wait)
        except FencedError as exc:
            # Offsets of partitions another member owns now are dropped: it re-reads and
            # re-publishes them (at-least-once), and keeping them would fail forever.
            # Those this member still owns are kept: Kafka refuses a commit sent with
            # the generation a rebalance just replaced, though cooperative assignment
            # left the partition here, and nothing else would ever commit it again.
            self.stats.commit_failures += 1
            log.warning(
                "event=commit_fenced processor=%s partitions=%s error=%s",
                self.stats.processor,
                partition_names(committing),
                exc,
            )
            owned = self.consumer.assignment()
            self._forget([tp for tp in committing if tp not in owned])
            return
        except CommitError as exc:
            # Kept pending: the next commit covers these offsets too.
            self.stats.commit_failures += 1
            log.warning(
                "event=commit_failed processor=%s partitions=%s error=%s",
                self.stats.processor,
                partition_names(committing),
                exc,
            )
            return
        self.stats.commits += 1
        self.stats.commit_duration.observe(time.perf_counter() - started)
        for tp, offset in committing.items():
            if self._pending.get(tp) == offset:
                del self._pending[tp]
        if not wait:
            self._unconfirmed.update(committing)


class EffectivelyOnce(AtLeastOnce):
    """At-least-once whose outputs carry ids that are the same on every replay.

    The id is ``<prefix>/<topic>@<incarnation>/<partition>/<offset>/<index>``: the
    prefix names the app, the group and the processor, then come the source record and
    the output's index among that record's outputs. A record replayed after a crash, a
    failover or by a zombie yields the same ids and the broker drops the copies.

    Offsets alone do not name a record: a topic deleted and created again counts from
    0 anew, and its new records would reuse the old ones' ids and be dropped. The
    topic's ``incarnation`` (new at every creation) tells them apart; it is read once
    per topic after each assignment, by the first batch that needs it, never per
    record. The group keeps a new group's re-run of old records from colliding with
    the outputs of the group that ran them first.
    """

    def __init__(
        self,
        producer: Producer,
        consumer: Consumer,
        stats: ProcessorStats,
        *,
        prefix: str,
        describe: Callable[[str], Awaitable[TopicInfo]],
        pre_commit: Sequence[PreCommit] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(producer, consumer, stats, pre_commit=pre_commit, clock=clock)
        self.prefix = prefix
        self._describe = describe
        self._heads: dict[str, str] = {}
        """Per source topic, the id's text up to the partition."""

    async def on_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        # Read the incarnation again: the topic may have been re-created meanwhile.
        for tp in partitions:
            self._heads.pop(tp.topic, None)

    async def end_batch(
        self, outputs: Sequence[Output], through: Offsets, records: Sequence[Record]
    ) -> None:
        heads = self._heads
        # A tick's outputs (windows closing with the clock) come with no offsets.
        topics = {tp.topic for tp in through} or {source.topic for *_, source in outputs}
        for topic in topics:
            if topic not in heads:
                info = await self._describe(topic)
                heads[topic] = f"{self.prefix}/{topic}@{info.incarnation}/"
        await super().end_batch(outputs, through, records)

    def _send(self, outputs: Sequence[Output]) -> None:
        send = self.producer.send
        heads = self._heads
        headers = OUTPUT_HEADERS.get()
        previous: tuple[int, int, str] | None = None
        topic: str | None = None
        head = ""
        index = 0
        for out_topic, value, key, source in outputs:
            # A record's outputs are contiguous: every stage keeps the batch's order. They
            # are told by place, not identity: a join's pairs are copies of their record
            # (each with the pair's event time), and so are a window's outputs.
            place = (source.offset, source.partition, source.topic)
            if place == previous:
                index += 1
            else:
                index = 0
                previous = place
                if source.topic is not topic:  # a batch's records share the string
                    topic = source.topic
                    head = heads[topic]
            dedup_id = f"{head}{source.partition}/{source.offset}/{index}"
            send(out_topic, value, key=key, dedup_id=dedup_id, headers=headers)


class ExactlyOnce(Checkpoint[TransactionalProducer]):
    """One producer transaction per checkpoint; its commit also commits the offsets.

    The transaction begins with the first batch after a checkpoint and covers every
    batch up to the next. The outputs and the pre-commit hooks' writes are sent inside
    it, and its commit flushes them and commits the offsets as one unit.
    """

    _open = False
    """A transaction is open (begun, neither committed nor aborted)."""

    def __init__(
        self,
        producer: TransactionalProducer,
        consumer: Consumer,
        stats: ProcessorStats,
        *,
        pre_commit: Sequence[PreCommit] = (),
        on_rewind: Callable[[Sequence[TopicPartition]], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(producer, consumer, stats, pre_commit=pre_commit)
        self.on_rewind = on_rewind
        """Told which owned partitions will read batches again, after the rewind (the
        stores drop what those batches changed)."""
        self._first: dict[TopicPartition, int] = {}
        """Per partition, the first offset the open transaction covers."""

    async def begin_batch(self) -> None:
        if not self._open:
            await self.producer.begin_transaction()
            self._open = True

    async def end_batch(
        self, outputs: Sequence[Output], through: Offsets, records: Sequence[Record]
    ) -> None:
        first = self._first
        if any(tp not in first for tp in through):  # once per partition and transaction
            add_first_offsets(first, records)
        await super().end_batch(outputs, through, records)

    async def _durable(self, through: Offsets, then: Sequence[OnDurable]) -> None:
        first, self._first = self._first, {}
        started = time.perf_counter()
        try:
            await self.producer.commit_transaction(self.consumer, through)
        except (FencedError, BrokerError) as exc:
            self.stats.commit_failures += 1
            log.warning(
                "event=transaction_aborted processor=%s partitions=%s error=%s: %s",
                self.stats.processor,
                partition_names(through),
                type(exc).__name__,
                exc,
            )
            # Some adapters end the transaction when its commit fails, others need
            # an abort: ask for one, and an adapter with nothing open may refuse.
            with contextlib.suppress(SpateError):
                await self.producer.abort_transaction()
            self._open = False
            await self._rewind(first)
            return
        self._open = False
        self.stats.commits += 1
        self.stats.commit_duration.observe(time.perf_counter() - started)
        for on_durable in then:
            on_durable()

    async def _hook_failed(self) -> None:
        await self.discard()

    async def abort_batch(self, records: Sequence[Record]) -> None:
        await self._abort(records)

    async def _abort(self, records: Sequence[Record] = ()) -> None:
        """Abort the open transaction: every batch it covers (and ``records``, a batch
        that failed before its end) is read again."""
        first, self._first = self._first, {}
        add_first_offsets(first, records)
        self._drop_open()
        if self._open:
            self._open = False
            try:
                await self.producer.abort_transaction()
            except SpateError as exc:
                log.warning("event=abort_failed processor=%s error=%s", self.stats.processor, exc)
        await self._rewind(first)

    async def _rewind(self, first: Offsets) -> None:
        """These offsets are not committed: partitions still owned read them again."""
        owned = self.consumer.assignment()
        rewound: list[TopicPartition] = []
        for tp, offset in first.items():
            if tp in owned:
                try:
                    await self.consumer.seek(tp, offset)
                except SpateError as exc:
                    log.info(
                        "event=rewind_skipped processor=%s partition=%s error=%s",
                        self.stats.processor,
                        partition_names({tp: offset}),
                        exc,
                    )
                    continue
                rewound.append(tp)
        if rewound and self.on_rewind is not None:
            await self.on_rewind(rewound)

    async def settle(self) -> None:
        await self.checkpoint()  # the transaction's commit waits for the broker

    async def caught_up(self) -> None:
        return None  # the checkpoint's transaction committed already

    async def on_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        return None

    async def on_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        await self.checkpoint()  # while this member still owns them

    async def on_lost(self, partitions: Sequence[TopicPartition]) -> None:
        """The open transaction covers batches of partitions another member owns now:
        its commit would be fenced, so it is aborted and the owned ones read again."""
        if self._open:
            await self._abort()

    async def discard(self) -> None:
        self._first = {}
        self._drop_open()
        if self._open:
            self._open = False
            with contextlib.suppress(SpateError):
                await self.producer.abort_transaction()
