"""The Kafka consumer: Kafka's own group protocol, bridged into asyncio.

librdkafka runs rebalance callbacks inside ``consume()``, on the thread that called it.
spate runs ``consume()`` on a dedicated worker thread (so the event loop stays free)
and, from inside librdkafka's callback, runs the async listener on the event loop and
*waits for it* (``run_coroutine_threadsafe(...).result()``). That keeps the contract:
the listener runs inside ``fetch()``, and on revoke the runtime's commit completes
before librdkafka hands the partitions to another member.

While the consume thread waits in a callback, librdkafka calls on the same consumer
from another thread block (a synchronous commit would deadlock), so the waiting
thread serves them: ``commit`` inside a listener is queued to it and run there.
A listener that overruns ``rebalance_timeout_s`` is logged and the revocation
proceeds (Kafka would otherwise evict this member at ``max.poll.interval.ms``).

Assignment is incremental (cooperative-sticky): only moved partitions are revoked.
Seeks requested inside ``on_assigned`` become the starting offsets of that
assignment, since librdkafka cannot seek a partition it is not yet fetching.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import confluent_kafka as ck
from confluent_kafka import KafkaError, KafkaException

from spate.brokers.base import Consumer, NullListener, RebalanceListener, topic_deleted
from spate.brokers.kafka.config import create_client
from spate.brokers.kafka.errors import TOPIC_GONE, UNRECOVERABLE, to_spate_error
from spate.brokers.kafka.probe import DEFAULT_CONNECT_TIMEOUT_S, probe
from spate.brokers.lifecycle import OwningBroker
from spate.errors import ClosedError, CommitError, FencedError, TopicNotFoundError
from spate.record import Record, TopicPartition

logger = logging.getLogger("spate.kafka")

T = TypeVar("T")


class KafkaConsumer(Consumer):
    """A member of a Kafka consumer group reading ``topics`` in batches."""

    fills_batches = True

    def __init__(
        self,
        config: dict[str, Any],
        topics: Sequence[str],
        group: str,
        listener: RebalanceListener | None,
        *,
        url: str,
        timeout_s: float,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        rebalance_timeout_s: float = 60.0,
        owner: OwningBroker | None = None,
    ) -> None:
        self._owner = owner
        self.group = group
        self._topics = list(topics)
        self._listener: RebalanceListener = listener or NullListener()
        self._offset_reset = str(config.get("auto.offset.reset", "earliest"))
        self._url = url
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._rebalance_timeout_s = rebalance_timeout_s
        self._consumer: ck.Consumer = create_client(
            ck.Consumer, {**config, "error_cb": self._on_error, "on_commit": self._on_commit}
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "spate-kafka-consume")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._owned: set[TopicPartition] = set()
        self._assigning: set[TopicPartition] = set()
        self._pending_seeks: dict[TopicPartition, int] = {}
        self._callback_error: BaseException | None = None
        self._fatal: KafkaError | None = None
        self._topic_gone = False
        """librdkafka said a topic or partition is unknown: fetch checks our topics."""
        self._inflight: concurrent.futures.Future[list[Record]] | None = None
        self._last_fetched: list[Record] = []
        """What the last fetch returned (exactly-once commits ask where it ended)."""
        self._callback_thread: threading.Thread | None = None
        self._callback_work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._started = False
        self._closing = False
        self._closed = False
        self._released = False
        """Closed refuses fetch at once; released (the client is gone) refuses commits,
        which the runtime still makes in ``on_revoked`` during close."""

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Check that the topics exist, then join the group (on the first fetch)."""
        if self._started:
            return
        if self._closed:
            raise ClosedError("start of a closed Kafka consumer")
        self._loop = asyncio.get_running_loop()
        metadata = await probe(self._consumer, self._url, self._connect_timeout_s)
        missing = self._missing_topics(metadata)
        if missing:
            raise TopicNotFoundError(
                f"cannot consume topic(s) {', '.join(map(repr, missing))} on {self._url}: "
                "they do not exist; create them first (spate topics create NAME)"
            )
        try:
            self._consumer.subscribe(
                self._topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        except KafkaException as exc:
            raise to_spate_error(exc, f"subscribe to {self._topics}") from exc
        self._started = True

    def _missing_topics(self, metadata: Any) -> list[str]:
        return [t for t in self._topics if t not in metadata.topics or metadata.topics[t].error]

    async def _check_topics_still_exist(self) -> None:
        """After librdkafka reported an unknown topic: TopicNotFoundError if one of ours
        was deleted. librdkafka only logs that (through error_cb, every second) and
        keeps the partitions assigned, so without this check the consumer goes silent."""
        self._topic_gone = False
        try:
            metadata = await self._call(lambda: self._consumer.list_topics(None, self._timeout_s))
        except KafkaException as exc:
            raise to_spate_error(exc, f"describe topics {self._topics}") from exc
        missing = self._missing_topics(metadata)
        if missing:
            raise topic_deleted(missing[0], self.group)

    async def close(self) -> None:
        """Revoke (so the runtime commits), leave the group, release the client."""
        if self._closed:
            return
        self._closed = True
        if self._inflight is not None:
            await asyncio.wrap_future(self._inflight)
        try:
            owned = sorted(self._owned)
            if owned:
                await self._listener.on_revoked(owned)
        finally:
            self._owned.clear()
            self._closing = True
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._consumer.close
                )
            except KafkaException as exc:
                logger.warning("event=consumer_close_failed group=%s error=%s", self.group, exc)
            finally:
                self._released = True
                self._executor.shutdown(wait=False)
                if self._owner is not None:
                    self._owner.forget(self)

    # -- librdkafka callbacks (run on the consume thread) -----------------------------

    def _on_commit(self, error: KafkaError | None, partitions: list[ck.TopicPartition]) -> None:
        """The outcome of a commit made with ``wait=False`` (served inside ``consume``)."""
        failed = [p for p in partitions if p.error is not None]
        if error is None and not failed:
            return
        logger.warning(
            "event=commit_failed group=%s partitions=%s error=%s retry=next_commit",
            self.group,
            ",".join(f"{p.topic}[{p.partition}]" for p in failed or partitions) or "-",
            error if error is not None else failed[0].error,
        )

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka retries a lost broker for ever: say at the first sign (every
        connection down) which address stopped answering."""
        if error.fatal() or error.code() in UNRECOVERABLE:
            self._fatal = error
        elif error.code() in TOPIC_GONE:
            self._topic_gone = True
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            # librdkafka reports it once per outage: when the last connection drops.
            logger.warning(
                "event=broker_unavailable address=%s group=%s error=%s; librdkafka keeps "
                "reconnecting",
                self._url,
                self.group,
                error.str(),
            )
            return
        logger.warning("event=client_error group=%s url=%s error=%s", self.group, self._url, error)

    def _run_listener(self, coroutine: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``coroutine`` on the event loop and wait for it, from the consume thread."""
        if self._closing or self._loop is None:
            coroutine.close()
            return
        # Set before the coroutine is scheduled: a commit it makes must already find
        # this thread waiting to serve it. A fresh queue per callback, so a late end
        # marker of an overrun listener cannot end the next wait early.
        work_queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._callback_work = work_queue
        self._callback_thread = threading.current_thread()
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        future.add_done_callback(lambda _: work_queue.put(None))
        deadline = time.monotonic() + self._rebalance_timeout_s
        try:
            while (
                work := work_queue.get(timeout=max(0.0, deadline - time.monotonic()))
            ) is not None:
                work()
            future.result()
        except queue.Empty:
            future.cancel()
            logger.warning(
                "event=rebalance_callback_timeout group=%s callback=%s timeout_s=%s",
                self.group,
                what,
                self._rebalance_timeout_s,
            )
        except BaseException as exc:
            if self._callback_error is None:
                self._callback_error = exc
        finally:
            self._callback_thread = None

    async def _call(self, function: Callable[[], T], *, blocking: bool = True) -> T:
        """Run a librdkafka call: on the consume thread while it waits in a rebalance
        callback (anywhere else it would deadlock: even ``position`` and ``seek`` wait
        for the consume call in progress), else on a worker thread, or right here when
        it does not block."""
        if self._callback_thread is None:
            return await asyncio.to_thread(function) if blocking else function()
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def work() -> None:
            try:
                result.set_result(function())
            except BaseException as exc:
                result.set_exception(exc)

        self._callback_work.put(work)
        return await asyncio.wrap_future(result)

    def _on_assign(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        tps = _tps(partitions)
        self._owned.update(tps)
        self._assigning.update(tps)
        try:
            if tps:
                self._run_listener(self._listener.on_assigned(tps), "on_assigned")
        finally:
            self._assigning.difference_update(tps)
        for p in partitions:
            offset = self._pending_seeks.pop(TopicPartition(p.topic, p.partition), None)
            if offset is not None:
                p.offset = offset
        if not self._closing:
            # Closing, nothing will be read: asking for committed offsets there only
            # waits (for timeout_s) on a group that this member is leaving.
            self._report_retention_gaps(consumer, [p for p in partitions if p.offset < 0])
        consumer.incremental_assign(partitions)

    def _report_retention_gaps(
        self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]
    ) -> None:
        """Log, with a count, every committed offset that retention already deleted.

        librdkafka then applies ``auto.offset.reset`` silently; an operator must learn
        that records were skipped unprocessed and how many.
        """
        if not partitions:
            return
        try:
            committed = consumer.committed(partitions, self._timeout_s)
            for tp in committed:
                if tp.offset < 0:
                    continue
                low, high = consumer.get_watermark_offsets(tp, self._timeout_s)
                if tp.offset >= low:
                    continue
                resume = low if self._offset_reset in _FROM_START else high
                logger.warning(
                    "event=offsets_deleted_by_retention group=%s partition=%s[%d] "
                    "committed=%d earliest=%d resume=%d policy=%s skipped=%d",
                    self.group,
                    tp.topic,
                    tp.partition,
                    tp.offset,
                    low,
                    resume,
                    self._offset_reset,
                    resume - tp.offset,
                )
        except KafkaException as exc:
            logger.info("event=retention_check_failed group=%s error=%s", self.group, exc)

    def _on_revoke(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        tps = [tp for tp in _tps(partitions) if tp in self._owned]
        try:
            if tps:
                self._run_listener(self._listener.on_revoked(tps), "on_revoked")
        finally:
            self._owned.difference_update(tps)
            consumer.incremental_unassign(partitions)

    def _on_lost(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        tps = [tp for tp in _tps(partitions) if tp in self._owned]
        self._owned.difference_update(tps)
        try:
            if tps:
                self._run_listener(self._listener.on_lost(tps), "on_lost")
        finally:
            consumer.incremental_unassign(partitions)

    # -- the contract ----------------------------------------------------------------

    async def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._closed:
            raise ClosedError("fetch on a closed Kafka consumer")
        if not self._started:
            await self.start()
        self._inflight = self._executor.submit(self._consume, max_records, timeout_s)
        try:
            records = await asyncio.wrap_future(self._inflight)
        except KafkaException as exc:
            raise to_spate_error(exc, f"fetch from {self._topics}") from exc
        finally:
            self._inflight = None
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            raise error
        if self._fatal is not None:
            raise to_spate_error(self._fatal, f"Kafka consumer of group {self.group!r}")
        if self._topic_gone:
            await self._check_topics_still_exist()
        self._last_fetched = records
        return records

    def _consume(self, max_records: int, timeout_s: float) -> list[Record]:
        """On the consume thread: a batch of messages, as Records.

        Converting here, right after librdkafka built the messages, touches them while
        they are still in this core's cache, and their memory is freed where it was
        allocated; on the event loop the same loop cost more.
        """
        return to_records(self._consumer.consume(max_records, timeout_s), self._message_error)

    def _message_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.code() in TOPIC_GONE:
            self._topic_gone = True  # fetch checks the topics once this batch is out
            return
        if error.fatal() or error.code() in UNRECOVERABLE:
            raise to_spate_error(error, f"fetch from {self._topics}")
        logger.warning("event=fetch_error group=%s error=%s", self.group, error)

    def require_owned(self, partitions: Iterable[TopicPartition]) -> None:
        """Raise FencedError naming any partition this member does not own now."""
        lost = sorted(tp for tp in partitions if tp not in self._owned)
        if lost:
            raise FencedError(
                f"group {self.group!r}: this member no longer owns "
                f"{', '.join(f'{t}[{p}]' for t, p in lost)}; another member took them over"
            )

    async def commit(self, through: Mapping[TopicPartition, int], *, wait: bool = True) -> None:
        """``wait=False`` (outside a rebalance) hands the commit to librdkafka and
        returns: no thread hop, no round trip; ``_on_commit`` logs a failure."""
        if self._released:
            raise ClosedError("commit on a closed Kafka consumer")
        if not through:
            return
        self.require_owned(through)
        positions = [ck.TopicPartition(t, p, o + 1) for (t, p), o in through.items()]
        if not wait and self._callback_thread is None:
            try:
                self._consumer.commit(offsets=positions, asynchronous=True)
            except KafkaException as exc:
                raise to_spate_error(exc, f"commit for group {self.group!r}", CommitError) from exc
            return
        try:
            result = await self._call(
                lambda: self._consumer.commit(offsets=positions, asynchronous=False)
            )
        except KafkaException as exc:
            raise to_spate_error(exc, f"commit for group {self.group!r}", CommitError) from exc
        for position in result:
            if position.error is not None:
                context = f"commit {position.topic}[{position.partition}]"
                raise to_spate_error(position.error, context, CommitError)

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        if self._released:
            raise ClosedError("seek on a closed Kafka consumer")
        if tp in self._assigning:
            self._pending_seeks[tp] = offset
            return
        self.require_owned((tp,))
        position = ck.TopicPartition(tp.topic, tp.partition, offset)
        try:
            await self._call(lambda: self._consumer.seek(position), blocking=False)
        except KafkaException as exc:
            raise to_spate_error(exc, f"seek {tp.topic}[{tp.partition}] to {offset}") from exc

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._owned)

    async def transaction_offsets(
        self, through: Mapping[TopicPartition, int]
    ) -> tuple[list[ck.TopicPartition], object]:
        """What ``send_offsets_to_transaction`` takes to commit ``through``: the resume
        positions and librdkafka's group metadata, read on the consume thread when a
        revocation's commit asks from inside the callback."""
        self.require_owned(through)
        consumer = self._consumer
        return await self._call(
            lambda: (self._resume_positions(through), consumer.consumer_group_metadata()),
            blocking=False,
        )

    def _resume_positions(self, through: Mapping[TopicPartition, int]) -> list[ck.TopicPartition]:
        """Where the group resumes after ``through`` (each partition's last processed
        offset): the next offset, or further where the last fetch ended at exactly that
        offset and librdkafka already stands past the transaction markers that follow
        it. Without that, a topic written in transactions (an exactly-once hop's) would
        show lag 1 forever behind its last commit marker, and the stall watchdog would
        warn about it.

        A partition whose last fetched record is not ``through``'s (a caller committing
        part of what it fetched) resumes at the next offset: the position would skip
        records never processed. Only the exactly-once commit asks, once a batch."""
        fetched_last = {(r.topic, r.partition): r.offset for r in self._last_fetched}
        asked = [
            ck.TopicPartition(topic, partition)
            for (topic, partition), offset in through.items()
            if fetched_last.get((topic, partition)) == offset
        ]
        positions = self._consumer.position(asked) if asked else []
        now = {(tp.topic, tp.partition): tp.offset for tp in positions}
        return [
            ck.TopicPartition(topic, partition, max(offset + 1, now.get((topic, partition), -1)))
            for (topic, partition), offset in through.items()
        ]


_FROM_START = ("earliest", "smallest", "beginning")
"""librdkafka's spellings of auto.offset.reset=earliest."""


def to_records(messages: list[Any], on_error: Callable[[KafkaError], None]) -> list[Record]:
    """librdkafka's messages as Records; an error message goes to ``on_error`` instead.

    Any: librdkafka's message accessors are Optional only for error messages, which
    are filtered here; checking each field per record would cost time.
    """
    records: list[Record] = []
    append = records.append
    make = Record
    for m in messages:
        message_error = m.error()
        if message_error is not None:
            on_error(message_error)
            continue
        headers = m.headers()
        append(
            make(
                m.topic(),
                m.partition(),
                m.offset(),
                m.key(),
                m.value() or b"",
                tuple(headers) if headers else (),
                m.timestamp()[1],
            )
        )
    return records


def _tps(partitions: list[ck.TopicPartition]) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.partition) for p in partitions]
