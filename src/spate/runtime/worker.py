"""The batch loop of one processor in one process (DESIGN §2, §6, §10).

fetch a batch → decode it with the topics' serdes → run the compiled pipeline, which
returns the records to publish → the delivery strategy publishes them and makes
outputs and offsets durable. Everything per record happens in tight loops over the
batch (decode, each pipeline stage, the sends); nothing awaits per record unless a
user function is ``async``.

Plain user functions run in the App's user thread (an executor passed in), one
hand-off per batch, so a batch of blocking code never starves the event loop: lease
heartbeats keep a slow processor's partitions, and other processors keep reading.
On brokers that keep group membership themselves (Kafka) the lifecycle passes none
and they run on the loop (see ``Lifecycle.user_thread``); so does a pipeline that
calls no user function (``Stage.user_code``: windows with built-in aggregations, sinks).

The worker is the consumer's :class:`~spate.brokers.base.RebalanceListener`; the
callbacks run inside ``fetch``/``close``, between batches, so they never race with
one. Stopping (``stop`` set) ends the loop after the current batch; closing the
consumer then calls ``on_revoked``, which commits what is pending, and releases the
partitions.

A broker outage does not stop the processor (DESIGN §6): a transient error ends the
consumer's *session* — its uncommitted work is dropped, not committed — and after an
exponential backoff (:mod:`spate.outage`) a new consumer joins and resumes from the
committed offsets. ``ProcessorStats.connected`` is False meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

from spate.brokers.base import Broker, Consumer, Producer, TransactionalProducer
from spate.clock import SYSTEM_CLOCK, Clock
from spate.config import Settings
from spate.errors import FencedError, SpateError
from spate.observability.tracing import traced
from spate.outage import Outage
from spate.partitions import LeaseEpochs, PartitionContext, Partitions
from spate.record import Record, TopicPartition, partition_names
from spate.retry import Retry
from spate.runtime.checkpoint import PreCommit
from spate.runtime.deadletters import DeadLetterPolicy
from spate.runtime.delivery import AtLeastOnce, Delivery, EffectivelyOnce, ExactlyOnce
from spate.runtime.errors import ErrorPolicy, error_policy
from spate.runtime.retrying import Retrier
from spate.runtime.retrytopics import RetryTopicPolicy, Route, due_ms
from spate.runtime.stats import ProcessorStats
from spate.serde import Serde, fast_decoder
from spate.state.local import backend_kind
from spate.state.manager import StateConfig, StateManager, state_root
from spate.streams.stages import Batch, Pipeline
from spate.streams.stream import Stream

log = logging.getLogger("spate.runtime")

TICK_INTERVAL_S = 1.0
"""How often a pipeline that acts on time (windows) is ticked while batches keep
coming; an idle one is ticked at every empty fetch the clock moved since."""

CLOSE_AFTER_ERROR_S = 5.0
"""How long closing a consumer may take after its loop failed (leaving during an
outage cannot succeed: its leases expire instead)."""


class Worker:
    """Runs one processor's stream against one broker until ``stop`` is set."""

    def __init__(
        self,
        app_name: str,
        stream: Stream[Any],
        broker: Broker,
        settings: Settings,
        *,
        on_error: str = "stop",
        retry: Retry | None = None,
        timeout_s: float | None = None,
        dead_letters: Mapping[str, str] | None = None,
        retry_routes: Mapping[str, Route] | None = None,
        delayed: bool = False,
        stats: ProcessorStats | None = None,
        executor: Executor | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.app_name = app_name
        self.stream = stream
        self.broker = broker
        self.settings = settings
        self.stats = stats or ProcessorStats(processor=stream.name, group=stream.group)
        self.retrier = Retrier(stream.name, retry, timeout_s, clock)
        self.pre_commit: list[PreCommit] = []
        """Hooks every batch runs before its offsets are committed (state flushes,
        changelog writes, dead letters: see :mod:`spate.runtime.checkpoint`)."""
        self.policy: ErrorPolicy
        if dead_letters:
            letters = DeadLetterPolicy(
                stream.name, dead_letters, self.stats, clock, self.retrier.take_attempts
            )
            self.pre_commit.append(letters.outbox.write)
            self.policy = letters
        else:
            self.policy = error_policy(on_error, stream.name)
        if retry_routes:
            moves = RetryTopicPolicy(
                stream.name,
                retry_routes,
                self.policy,
                self.stats,
                clock,
                self.retrier.take_attempts,
            )
            self.pre_commit.append(moves.outbox.write)
            self.policy = moves
        self.delayed = delayed
        """A retry topic's processor: each batch waits until its records are due."""
        self.executor = executor
        """Where plain user functions run (None: on the event loop)."""
        self.clock = clock
        self._outage = Outage(
            log, f"app={app_name} processor={stream.name} group={stream.group}", clock=clock
        )
        self._delivery: Delivery | None = None
        self._consumer: Consumer | None = None
        self.partitions: Partitions = {}
        """A context per partition owned now: made on assignment, dropped on
        revocation or loss. The same dict for the worker's life (pipelines hold it)."""
        self._serdes: dict[str, Serde[Any]] = {t.name: t.serde for t in stream.topics}
        self._fast_decoders = {name: fast_decoder(serde) for name, serde in self._serdes.items()}
        self._fast_decode = next(iter(self._fast_decoders.values()))
        self.state: StateManager | None = None
        """The stores the compiled pipeline's stages keep per partition (None: the
        pipeline keeps none, and the stateless path pays nothing for them)."""
        self._late_seen = 0
        """The session pipeline's late records already added to the stats."""
        self._checkpoint_due_s = -math.inf
        """When a full batch next ends in a checkpoint (``commit_interval_s`` after the
        last one); a batch that is not full always does: the consumer has caught up."""

    # --- rebalance listener -----------------------------------------------------------

    async def on_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        self.stats.rebalances += 1
        self.stats.assigned = self.stats.assigned | frozenset(partitions)
        log.info(
            "event=assigned app=%s processor=%s group=%s partitions=%s",
            self.app_name,
            self.stream.name,
            self.stream.group,
            partition_names(partitions),
        )
        epoch_of = self._lease_epochs(partitions)
        for tp in partitions:
            self.partitions[tp] = PartitionContext(tp, self.clock, epoch_of.get(tp))
        if self.state is not None:
            await self._open_stores(partitions)
        if self._delivery is not None:
            await self._delivery.on_assigned(partitions)

    def _lease_epochs(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        consumer: object = self._consumer  # leased consumers (local, NATS, Redis)
        if not isinstance(consumer, LeaseEpochs):
            return {}
        epochs: dict[TopicPartition, int] = {}
        for tp in partitions:
            with contextlib.suppress(FencedError):  # taken over already: no epoch to keep
                epochs.update(consumer.epochs([tp]))
        return epochs

    async def _open_stores(self, partitions: Sequence[TopicPartition]) -> None:
        """Open and restore the stores of ``partitions`` (again, after a rewind). What
        operators built in memory from the replaced stores (window indexes, watermarks,
        join buffers) goes with them: it holds the rewound batch's changes, and is
        rebuilt from the restored stores on first use."""
        assert self.state is not None
        opened = await self.state.reopen(partitions)
        for tp, stores in opened.items():
            context = self.partitions.get(tp)
            if context is not None:
                context.stores = stores
                context.state.clear()

    async def _rewound(self, partitions: Sequence[TopicPartition]) -> None:
        """A batch was not committed and will be read again: its changes must go."""
        if self.state is not None:
            await self._open_stores(partitions)

    def _drop_contexts(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            self.partitions.pop(tp, None)
        if self.state is not None:
            self.state.close(partitions)

    async def on_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        self.stats.rebalances += 1
        self.stats.assigned = self.stats.assigned - frozenset(partitions)
        log.info(
            "event=revoked app=%s processor=%s group=%s partitions=%s",
            self.app_name,
            self.stream.name,
            self.stream.group,
            partition_names(partitions),
        )
        try:
            if self._delivery is not None:
                await self._delivery.on_revoked(partitions)
            if self.state is not None:
                await self.state.hand_over(partitions)
        finally:
            self._drop_contexts(partitions)

    async def on_lost(self, partitions: Sequence[TopicPartition]) -> None:
        self.stats.rebalances += 1
        self.stats.partitions_lost += len(partitions)
        self.stats.assigned = self.stats.assigned - frozenset(partitions)
        log.warning(
            "event=lost app=%s processor=%s group=%s partitions=%s",
            self.app_name,
            self.stream.name,
            self.stream.group,
            partition_names(partitions),
        )
        self._drop_contexts(partitions)
        if self._delivery is not None:
            await self._delivery.on_lost(partitions)

    # --- the loop -----------------------------------------------------------------------

    def _transactional_id(self) -> str:
        """Stable across restarts when the process has an ``instance_id``: the restarted
        producer then fences its zombie and aborts the transaction it left open at once
        (readers wait ``transaction.timeout.ms`` otherwise). Zombies are fenced either
        way by the group generation sent with every transaction (KIP-447)."""
        instance = self.settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        return f"{self.app_name}.{self.stream.name}.{instance}"

    def _make_producer(self, exactly_once: bool) -> Producer:
        """Transactional where exactly-once has transactions; plain otherwise."""
        if exactly_once and self.broker.capabilities.transactions:
            return self.broker.producer(transactional_id=self._transactional_id())
        return self.broker.producer()

    def _make_delivery(
        self, producer: Producer, exactly_once: bool, consumer: Consumer
    ) -> Delivery:
        """Transactions where the broker has them; else, for exactly-once, dedup ids."""
        hooks = self.pre_commit
        if isinstance(producer, TransactionalProducer):
            return ExactlyOnce(
                producer, consumer, self.stats, pre_commit=hooks, on_rewind=self._rewound
            )
        if not exactly_once:
            return AtLeastOnce(producer, consumer, self.stats, pre_commit=hooks, clock=self.clock)
        prefix = f"{self.app_name}/{self.stream.group}/{self.stream.name}"
        return EffectivelyOnce(
            producer,
            consumer,
            self.stats,
            prefix=prefix,
            describe=self.broker.describe_topic,
            pre_commit=hooks,
            clock=self.clock,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set, then drain: finish, commit, release.

        A transient broker error (an outage: see ``SpateError.transient``) does not stop
        the processor: what is not committed is dropped, the consumer is closed, and
        after a backoff a new one resumes from the committed offsets (at-least-once;
        effectively-once ids still dedup), again and again until the broker is back.
        """
        settings = self.settings
        exactly_once = settings.processing_guarantee == "exactly-once"
        log.info(
            "event=start app=%s processor=%s group=%s topics=%s guarantee=%s",
            self.app_name,
            self.stream.name,
            self.stream.group,
            ",".join(self._serdes),
            settings.processing_guarantee,
        )
        self.stats.running = True
        error: BaseException | None = None
        try:
            async with self._make_producer(exactly_once) as producer:
                while True:
                    try:
                        await self._session(stop, producer, exactly_once)
                        return
                    except SpateError as exc:
                        if not exc.transient or stop.is_set():
                            raise
                        self.stats.connected = False
                        await self._pause(stop, self._outage.failed(exc))
                        if stop.is_set():
                            return
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.stats.running = False
            self._delivery = None
            self._consumer = None
            self.partitions.clear()
            if self.state is not None:
                self.state.close()
            line = "event=stop app=%s processor=%s consumed=%d produced=%d errors=%d duplicates=%d"
            args: tuple[object, ...] = (
                self.app_name,
                self.stream.name,
                self.stats.consumed,
                self.stats.produced,
                self.stats.errors,
                self.stats.duplicates,
            )
            if error is None:
                log.info(line, *args)
            else:  # error= is a field of its own, so the JSON format splits it from the rest
                log.error(line + " error=%s: %s", *args, type(error).__name__, error)

    async def _session(self, stop: asyncio.Event, producer: Producer, exactly_once: bool) -> None:
        """One consumer's life: join, process until ``stop``, drain and leave."""
        settings = self.settings
        consumer = self.broker.consumer(
            [t.name for t in self.stream.topics],
            self.stream.group,
            self,
            offset_reset=settings.offset_reset,
            instance_id=settings.instance_id,
        )
        self._delivery = delivery = self._make_delivery(producer, exactly_once, consumer)
        self._consumer = consumer
        self.partitions.clear()  # a session that ended without closing left its own
        pipeline = self.stream.compile(
            self.policy.record_failed, self.partitions, self.retrier.wrap
        )
        self._use_stores(pipeline.stores)
        self._late_seen = 0
        process = traced(self._process, settings, self.app_name, self.stream)
        outage = self._outage
        ticking, clock = pipeline.ticks, self.clock
        ticked_s = -math.inf  # a session acts on time once at its start
        # After a full batch, the next fetch does not wait: if nothing came, the
        # partitions were drained exactly, and their last batches settle at once rather
        # than after an idle fetch's timeout (a batch that is not full settles itself).
        # Not where a fetch waits to fill its batch: there it would halve the batches.
        polls = not consumer.fills_batches
        full = False
        try:
            await consumer.start()
            while not stop.is_set():
                wait_s = 0.0 if full and polls else settings.fetch_timeout_s
                records = await consumer.fetch(settings.batch_size, wait_s)
                full = len(records) == settings.batch_size
                if not outage.available:
                    outage.recovered()
                    self.stats.connected = True
                if self.delayed and records and not await self._until_due(records, stop, delivery):
                    break  # stopping: the batch is not processed, so not committed
                if records:
                    await process(records, pipeline, delivery)
                else:
                    await delivery.settle()
                if ticking:
                    now_s = clock.monotonic()
                    if now_s >= ticked_s + TICK_INTERVAL_S or (not records and now_s > ticked_s):
                        ticked_s = now_s
                        await self._tick(pipeline, delivery, now_s)
            await delivery.settle()
        except BaseException as exc:
            transient = isinstance(exc, SpateError) and exc.transient
            if transient:
                # Nothing of this session may become durable any more: the next one
                # replays it from the committed offsets. The listener callbacks that
                # closing makes then find no delivery to settle.
                self._delivery = None
                await delivery.discard()
            await self._close_after_error(consumer, bounded=transient)
            raise
        await consumer.close()

    def _use_stores(self, names: tuple[str, ...]) -> None:
        """Keep the stores ``names`` per partition, flushed before every commit."""
        if self.state is not None:
            self.state.close()  # a session that ended without closing left its own
            return
        if not names:
            return
        settings = self.settings
        config = StateConfig(
            app=self.app_name,
            processor=self.stream.name,
            group=self.stream.group,
            names=names,
            backend=backend_kind(settings.state_backend, self.broker.url),
            root=state_root(settings.state_dir, self.app_name),
        )
        self.state = StateManager(config, self.broker, self.stats, self.clock)
        self.pre_commit.insert(0, self.state.flush)

    async def _pause(self, stop: asyncio.Event, delay_s: float) -> None:
        """Wait ``delay_s`` on the clock, or less if ``stop`` is set meanwhile."""
        waits = [
            asyncio.ensure_future(self.clock.sleep(delay_s)),
            asyncio.ensure_future(stop.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _until_due(
        self, records: list[Record], stop: asyncio.Event, delivery: Delivery
    ) -> bool:
        """Wait until every record of a retry topic's batch is due (its partitions
        hold nothing else: the source partitions flow on in their own processor),
        committing what is done first; False if ``stop`` was set meanwhile."""
        wait_s = (due_ms(records) - self.clock.time_ms()) / 1000
        if wait_s > 0:
            await delivery.settle()
            await self._pause(stop, wait_s)
        return not stop.is_set()

    async def _close_after_error(self, consumer: Consumer, *, bounded: bool) -> None:
        """Close (revoke, commit what is acknowledged, leave) after the loop failed; a
        failure to close is logged, so the error that stopped the loop is the one raised.

        After an outage closing is ``bounded``: leaving the group cannot succeed while
        the broker is away, and the leases expire by themselves."""
        closing = consumer.close()
        try:
            await (asyncio.wait_for(closing, CLOSE_AFTER_ERROR_S) if bounded else closing)
        except Exception as exc:
            log.warning(
                "event=close_failed app=%s processor=%s error=%s: %s",
                self.app_name,
                self.stream.name,
                type(exc).__name__,
                exc,
            )

    async def _process(self, records: list[Record], pipeline: Pipeline, delivery: Delivery) -> None:
        started = time.perf_counter()
        policy, retrier = self.policy, self.retrier
        failed_before, retries_before = policy.failed, retrier.retries
        try:
            batch = self._decode(records)
            await delivery.begin_batch()
            try:
                outputs = await pipeline.run(batch, self.executor)
            except BaseException:
                await delivery.abort_batch(records)
                raise
        except BaseException:
            policy.discard()
            # The record that stopped the processor is an error too (event=stop errors=).
            self.stats.errors += policy.failed - failed_before
            self.stats.retries += retrier.retries - retries_before
            raise
        self.stats.retries += retrier.retries - retries_before
        self.stats.deduplicated += pipeline.dedup.dropped
        pipeline.dedup.dropped = 0
        # Offsets grow within a partition and a batch keeps their order: the last wins.
        last = {(r.topic, r.partition): r.offset for r in records}
        through = {TopicPartition(topic, part): offset for (topic, part), offset in last.items()}
        await delivery.end_batch(outputs, through, records)
        now_s = self.clock.monotonic()
        caught_up = len(records) < self.settings.batch_size
        if caught_up or now_s >= self._checkpoint_due_s:
            self._checkpoint_due_s = now_s + self.settings.commit_interval_s
            await delivery.checkpoint()
            if caught_up:
                await delivery.caught_up()
        if pipeline.ticks:
            late = pipeline.late_records()
            self.stats.late_records += late - self._late_seen
            self._late_seen = late
        self.stats.record_batch(
            len(records),
            len(outputs),
            self.policy.failed - failed_before,
            time.perf_counter() - started,
            records[-1].timestamp_ms,
        )

    async def _tick(self, pipeline: Pipeline, delivery: Delivery, now_s: float) -> None:
        """Let the stages that act on time act: what they emit is published and what they
        changed in the stores committed as a batch's would be, with no offsets."""
        await delivery.begin_batch()
        try:
            outputs = await pipeline.tick(now_s)
        except BaseException:
            self.policy.discard()
            await delivery.abort_batch(())
            raise
        await delivery.end_batch(outputs, {}, ())
        await delivery.settle()  # at most once a second: no batch to overlap with
        self.stats.produced += len(outputs)
        self.stats.ticked_s = now_s

    def _decode(self, records: list[Record]) -> Batch:
        """The batch as pipeline items; a record that does not decode goes to the policy."""
        serdes = self._serdes
        try:
            if len(serdes) == 1:
                decode = self._fast_decode
                return [(r, r.key, decode(r.value)) for r in records]
            decoders = self._fast_decoders
            return [(r, r.key, decoders[r.topic](r.value)) for r in records]
        except Exception:
            pass  # find the bad records one by one (decoding has no side effects)
        batch: Batch = []
        for r in records:
            try:
                batch.append((r, r.key, serdes[r.topic].decode(r.value)))
            except Exception as exc:
                self.policy.decode_failed(r, exc)
        return batch
