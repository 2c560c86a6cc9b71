"""The Kafka producer: buffered sends, acknowledged flushes, Kafka transactions.

``send`` hands each record to librdkafka's queue and returns; librdkafka batches and
retries (idempotently) in its own threads. Delivery reports are requested for failures
only, so success costs no Python callback; ``flush`` waits for the queue to drain and
raises :class:`PublishError` naming the topic and key of a record that failed.

Keyed records are placed by librdkafka's ``consistent_random`` partitioner, which is
CRC32 of the key modulo the partition count: the same function
:mod:`spate.partitioner` applies on every other broker, so a key lands on the same
partition number everywhere, at no Python cost per record (and a ``partitioner``
given in ``kafka_config``, e.g. ``murmur2_random`` to match Java producers, is
honoured). Records without a key (or with an empty one) get their partition here:
round-robin, as on every broker, rather than librdkafka's sticky choice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import confluent_kafka as ck
from confluent_kafka import KafkaError, KafkaException

from spate.brokers.base import Consumer, Outgoing, Producer, TransactionalProducer
from spate.brokers.kafka.config import create_client
from spate.brokers.kafka.errors import error_of, is_fencing, to_spate_error
from spate.brokers.lifecycle import OwningBroker
from spate.errors import (
    CapabilityError,
    ClosedError,
    CommitError,
    ConfigError,
    FencedError,
    PublishError,
    TopicNotFoundError,
)
from spate.partitioner import Partitioner
from spate.record import Headers, TopicPartition

if TYPE_CHECKING:
    from spate.brokers.kafka.consumer import KafkaConsumer

logger = logging.getLogger("spate.kafka")

_PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)

_UNASSIGNED = -1
"""librdkafka's RD_KAFKA_PARTITION_UA: let the configured partitioner choose."""

_POLL_EVERY = 1024
"""Serve librdkafka's callbacks once per this many sends, never per record."""


class KafkaProducer(Producer):
    """A confluent-kafka producer; transactional when given a ``transactional.id``."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        url: str,
        timeout_s: float,
        owner: OwningBroker | None = None,
    ) -> None:
        self._owner = owner
        self._config = {**config, "on_delivery": self._on_delivery}
        self._url = url
        self._timeout_s = timeout_s
        self._producer: ck.Producer = create_client(ck.Producer, self._config)
        self._partitioner = Partitioner()
        self._partition_counts: dict[str, int] = {}
        self._failures: list[tuple[str, bytes | None, KafkaError]] = []
        self._sent = 0
        self._started = False
        self._closed = False

    def _on_delivery(self, error: KafkaError | None, message: ck.Message) -> None:
        # Purged records belong to an aborted transaction: dropping them is the point.
        if error is not None and error.code() not in _PURGED:
            self._failures.append((message.topic() or "?", message.key(), error))

    async def start(self) -> None:
        self._started = True

    def _partitions(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is not None:
            return count
        try:
            metadata = self._producer.list_topics(topic, self._timeout_s)
        except KafkaException as exc:
            raise to_spate_error(exc, f"publish to topic {topic!r}", PublishError) from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise TopicNotFoundError(
                f"cannot publish to topic {topic!r} on {self._url}: it does not exist; "
                f"create it first (spate topics create {topic})"
            )
        count = self._partition_counts[topic] = len(found.partitions)
        return count

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
        if self._closed:
            raise ClosedError("send on a closed Kafka producer")
        count = self._partitions(topic)
        if partition is None and not key:
            partition = self._partitioner.choose(topic, key, count)
        self._produce(topic, value, key, partition, headers, timestamp_ms)
        self._sent += 1
        if self._sent % _POLL_EVERY == 0:
            self._producer.poll(0)

    def send_many(self, outputs: Iterable[Outgoing]) -> None:
        """``send`` for a batch: the closed check, the poll and the topic check of a
        run of records to one topic are paid once, and librdkafka is called
        positionally."""
        if self._closed:
            raise ClosedError("send on a closed Kafka producer")
        produce = self._producer.produce
        choose = self._partitioner.choose
        checked_topic: str | None = None
        count = 0
        sent = 0
        try:
            for topic, value, key, _ in outputs:
                if topic != checked_topic:
                    count, checked_topic = self._partitions(topic), topic
                partition = None if key else choose(topic, key, count)
                try:
                    if partition is None:
                        produce(topic, value, key)
                    else:
                        produce(topic, value, key, partition)
                except BufferError:
                    self._produce(topic, value, key, partition, (), None)
                sent += 1
        except KafkaException as exc:
            raise to_spate_error(
                exc, f"publish to topic {topic!r} key={key!r}", PublishError
            ) from exc
        finally:
            before, self._sent = self._sent, self._sent + sent
            if self._sent // _POLL_EVERY != before // _POLL_EVERY:
                self._producer.poll(0)

    def send_to_partition(
        self,
        topic: str,
        partition: int,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers = (),
    ) -> None:
        """``send`` for a store's changelog flush: the closed check, the topic check,
        the headers' conversion and the poll are paid once per flush, not per record."""
        if self._closed:
            raise ClosedError("send on a closed Kafka producer")
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys for {len(values)} values")
        self._partitions(topic)
        produce = self._producer.produce
        listed: list[tuple[str, str | bytes | None]] | None = list(headers) if headers else None
        sent = 0
        try:
            for key, value in zip(keys, values, strict=True):
                try:
                    produce(topic, value, key, partition, headers=listed)
                except BufferError:
                    self._produce(topic, value, key, partition, headers, None)
                sent += 1
        except KafkaException as exc:
            raise to_spate_error(
                exc, f"publish to topic {topic!r} partition {partition}", PublishError
            ) from exc
        finally:
            before, self._sent = self._sent, self._sent + sent
            if self._sent // _POLL_EVERY != before // _POLL_EVERY:
                self._producer.poll(0)

    def _produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        partition: int | None,
        headers: Headers,
        timestamp_ms: int | None,
    ) -> None:
        """One produce call, retried while librdkafka's queue is full; ``partition``
        None lets librdkafka's partitioner place the key."""
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    partition=_UNASSIGNED if partition is None else partition,
                    timestamp=timestamp_ms or 0,
                    headers=list(headers) if headers else None,
                )
                return
            except BufferError:
                # librdkafka's queue is full: serve deliveries until the record fits.
                self._producer.poll(0.05)
            except KafkaException as exc:
                context = f"publish to topic {topic!r} key={key!r}"
                raise to_spate_error(exc, context, PublishError) from exc

    def _raise_failures(self) -> None:
        if not self._failures:
            return
        failures, self._failures = self._failures, []
        topic, key, error = failures[0]
        cls = FencedError if is_fencing(error) else PublishError
        raise cls(
            f"{len(failures)} record(s) not acknowledged by {self._url}; first: topic={topic!r} "
            f"key={key!r}: {error.str()} ({error.name()})"
        )

    async def flush(self, timeout_s: float | None = None) -> None:
        if self._closed:
            raise ClosedError("flush on a closed Kafka producer")
        # Once librdkafka's delivery reports are served, an empty queue means every
        # record was acknowledged: no thread hand-off needed. That is the usual case
        # when at-least-once settles a batch after the next one was processed.
        self._producer.poll(0)
        if len(self._producer) == 0:
            self._raise_failures()
            return
        timeout = self._timeout_s if timeout_s is None else timeout_s
        remaining = await asyncio.to_thread(self._producer.flush, timeout)
        self._raise_failures()
        if remaining:
            raise PublishError(
                f"{remaining} record(s) not acknowledged by {self._url} within {timeout}s"
            )

    async def close(self) -> None:
        """Flush what was sent, then release the client; idempotent."""
        if self._closed:
            return
        try:
            await asyncio.to_thread(self._producer.flush, self._timeout_s)
        finally:
            self._closed = True
            if self._owner is not None:
                self._owner.forget(self)
        self._raise_failures()


class KafkaTransactionalProducer(KafkaProducer, TransactionalProducer):
    """A Kafka producer with a ``transactional.id``: its outputs and the consumer's
    offsets commit as one Kafka transaction (KIP-447: fenced by the group generation)."""

    _initialised_once = False
    """``init_transactions`` succeeded before: a later failure is not a capability
    problem but a broker one."""

    _fenced = False
    """A commit was fenced: this client can do nothing more (librdkafka refuses every
    call, and what it holds belongs to an aborted transaction)."""

    async def start(self) -> None:
        """Initialise transactions (transactional producers): the first time, this is
        the probe that the broker supports them; every time, it fences any older
        producer with the same id and finishes its open transaction."""
        if self._started:
            return
        try:
            await asyncio.to_thread(self._producer.init_transactions, self._timeout_s)
        except KafkaException as exc:
            if self._initialised_once:
                raise to_spate_error(exc, "re-initialise transactions", CommitError) from exc
            raise CapabilityError(
                f"exactly-once needs Kafka transactions, but {self._url} could not "
                f"initialise them ({exc}); use a broker with transactions enabled (on a "
                f"single node set transaction.state.log.replication.factor=1 and "
                f"transaction.state.log.min.isr=1) or processing_guarantee='at-least-once'"
            ) from exc
        self._initialised_once = True
        self._started = True

    def _require_open(self) -> None:
        if self._closed:
            raise ClosedError("transaction on a closed Kafka producer")

    async def begin_transaction(self) -> None:
        self._require_open()
        if self._fenced:
            await self._recreate()
        if not self._started:
            await self.start()
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise to_spate_error(exc, "begin transaction", CommitError) from exc

    async def commit_transaction(
        self, consumer: Consumer, offsets: Mapping[TopicPartition, int]
    ) -> None:
        self._require_open()
        from spate.brokers.kafka.consumer import KafkaConsumer

        if not isinstance(consumer, KafkaConsumer):
            raise ConfigError("a Kafka transaction can only commit offsets of a Kafka consumer")
        try:
            if offsets:
                await self._send_offsets(consumer, offsets)
            await asyncio.to_thread(self._producer.commit_transaction, self._timeout_s)
        except KafkaException as exc:
            await self._recover(exc, "commit transaction")
        self._raise_failures()

    async def _send_offsets(
        self, consumer: KafkaConsumer, offsets: Mapping[TopicPartition, int]
    ) -> None:
        positions, group_metadata = await consumer.transaction_offsets(offsets)
        await asyncio.to_thread(
            self._producer.send_offsets_to_transaction, positions, group_metadata, self._timeout_s
        )

    async def abort_transaction(self) -> None:
        self._require_open()
        self._failures.clear()
        try:
            await asyncio.to_thread(self._producer.abort_transaction, self._timeout_s)
        except KafkaException as exc:
            error = error_of(exc)
            if error is not None and error.code() == KafkaError._TIMED_OUT:
                await self._recreate()
                return
            raise to_spate_error(exc, "abort transaction", CommitError) from exc

    async def _recover(self, exc: KafkaException, context: str) -> None:
        """Turn a failed commit into a clean state and a spate error, then raise it.

        Abortable errors abort (the caller replays from the last commit). Fencing means
        another producer or group member owns the work: FencedError. The fenced client
        is replaced only at the next ``begin_transaction``, when this member owns
        partitions again: the fence may be the coordinator's own, after the
        transaction outlived ``transaction.timeout.ms`` (a paused worker), and the
        group generation in every commit still fences a member that lost its
        partitions (KIP-447). Anything else (a timeout, a lost connection, another
        fatal error) leaves the transaction's outcome unknown and the protocol
        unusable, so the producer is recreated; its ``init_transactions`` finishes or
        aborts the old transaction.
        """
        error = error_of(exc)
        if error is not None and error.txn_requires_abort():
            self._failures.clear()
            try:
                await asyncio.to_thread(self._producer.abort_transaction, self._timeout_s)
            except KafkaException:
                await self._recreate()
            cls = FencedError if is_fencing(error) else CommitError
            raise cls(
                f"{context} aborted on {self._url}: {error.str()} ({error.name()}); "
                "replay from the last committed offsets"
            ) from exc
        if error is not None and is_fencing(error):
            self._fenced = True
            raise to_spate_error(exc, context, FencedError) from exc
        await self._recreate()
        raise CommitError(
            f"{context} failed on {self._url} ({exc}); the producer was recreated, "
            "replay from the last committed offsets"
        ) from exc

    async def _recreate(self) -> None:
        """Replace the client; the next ``begin_transaction`` initialises the new one
        (which waits for the broker if it is still unreachable)."""
        old = self._producer
        old.purge()
        if not self._fenced:  # a fenced client raises even while serving the purge
            await asyncio.to_thread(old.flush, 0)
        self._producer = create_client(ck.Producer, self._config)
        self._failures.clear()
        self._started = False
        self._fenced = False

    async def close(self) -> None:
        """A fenced client has nothing it may deliver: it is released, not flushed."""
        if self._fenced and not self._closed:
            self._producer.purge()
            self._closed = True
            if self._owner is not None:
                self._owner.forget(self)
            return
        await super().close()
