"""The embedded broker's producer: buffers sends, appends them as batches per flush.

A transactional producer keeps everything sent since ``begin_transaction`` in memory
and writes it together with the consumer's offset commit, after checking the
consumer's lease epochs, in ONE SQLite transaction: either all of it becomes visible
or none of it, and a fenced member can neither publish nor commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING

from spate.brokers.base import Consumer, Outgoing, Producer, TransactionalProducer
from spate.brokers.local import log
from spate.brokers.local.consumer import LocalConsumer
from spate.brokers.local.storage import write_transaction
from spate.errors import CapabilityError, ClosedError, CommitError, PublishError
from spate.partitioner import Partitioner
from spate.record import Headers, TopicPartition

if TYPE_CHECKING:
    from spate.brokers.local.broker import LocalBroker


class LocalProducer(Producer):
    """Producer of the embedded broker. ``flush`` returns once the batch is committed
    to SQLite (with ``synchronous=FULL``: on disk)."""

    def __init__(self, broker: LocalBroker) -> None:
        self._broker = broker
        self._db = broker.db
        self._buffer: list[log.Send] = []
        self._partitioner = Partitioner()
        self._lock = asyncio.Lock()
        self._closed = False
        self._accepting = True
        """``send`` buffers (one check per send, whatever the reason it may not)."""
        self._now_ms = broker.clock.time_ms

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
        if not self._accepting:
            raise self._refusal()
        self._buffer.append((topic, partition, key, value, headers, timestamp_ms))

    def send_many(self, outputs: Iterable[Outgoing]) -> None:
        """``send`` for a batch's outputs: one check, and the buffer extended in C."""
        if not self._accepting:
            raise self._refusal()
        self._buffer.extend(
            [(topic, None, key, value, (), None) for topic, value, key, _ in outputs]
        )

    def send_to_partition(
        self,
        topic: str,
        partition: int,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers = (),
    ) -> None:
        """``send`` for a changelog flush: one check, and no Python call per record.
        (The partition is checked against the topic when the batch is appended.)"""
        if not self._accepting:
            raise self._refusal()
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys for {len(values)} values")
        self._buffer.extend(
            zip(repeat(topic), repeat(partition), keys, values, repeat(headers), repeat(None))
        )

    def _refusal(self) -> Exception:
        """Why ``send`` is refused now."""
        return ClosedError("producer is closed")

    async def flush(self, timeout_s: float | None = None) -> None:
        """Append everything buffered, as one SQLite transaction.

        If the append fails, the buffered records are dropped and PublishError (or
        TopicNotFoundError) is raised: nothing of them was stored, and at-least-once
        processing replays them from the last commit. ``timeout_s`` is not needed:
        SQLite's busy timeout bounds the wait for another process's write lock."""
        if self._closed:
            raise ClosedError("producer is closed")
        async with self._lock:
            sends, self._buffer = self._buffer, []
            if not sends:
                return
            db = self._db
            partitioner = self._partitioner

            now = self._now_ms()

            def run(conn: sqlite3.Connection) -> None:
                with write_transaction(conn):
                    log.append(conn, sends, partitioner, now)

            await db.run(run, PublishError)
            db.notify()

    async def close(self) -> None:
        """Flush what is buffered, then close."""
        if self._closed:
            return
        try:
            await self._before_close()
            await self.flush()
        finally:
            self._closed = True
            self._accepting = False
            self._broker.forget(self)

    async def _before_close(self) -> None:
        return None


class LocalTransactionalProducer(LocalProducer, TransactionalProducer):
    """The embedded broker's transactional producer: sends wait in memory for the
    transaction's commit, which appends them together with the offsets."""

    def __init__(self, broker: LocalBroker, transactional_id: str) -> None:
        super().__init__(broker)
        self.transactional_id = transactional_id
        self._in_transaction = False
        self._accepting = False

    def _refusal(self) -> Exception:
        if self._closed:
            return super()._refusal()
        return PublishError(
            f"transactional producer {self.transactional_id!r}: call "
            "begin_transaction() before send()"
        )

    async def flush(self, timeout_s: float | None = None) -> None:
        """Inside a transaction records stay buffered until :meth:`commit_transaction`."""
        if self._closed:
            raise ClosedError("producer is closed")
        if not self._in_transaction:
            await super().flush(timeout_s)

    async def begin_transaction(self) -> None:
        if self._in_transaction:
            raise PublishError(f"transaction of {self.transactional_id!r} is already open")
        self._in_transaction = self._accepting = True

    async def commit_transaction(
        self, consumer: Consumer, offsets: Mapping[TopicPartition, int]
    ) -> None:
        if not self._in_transaction:
            raise PublishError("commit_transaction without begin_transaction")
        db = self._db
        if not isinstance(consumer, LocalConsumer) or consumer.db is not db:
            raise CapabilityError(
                "commit_transaction needs a consumer of the same local broker database"
            )
        sends, self._buffer = self._buffer, []
        self._in_transaction = self._accepting = False
        epochs = consumer.epochs(list(offsets))
        group, member, partitioner = consumer.group, consumer.member.member_id, self._partitioner
        now = self._now_ms()

        def run(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                if sends:
                    log.append(conn, sends, partitioner, now)
                log.commit_offsets(conn, group, member, offsets, epochs)

        async with self._lock:
            await db.run(run, CommitError)
        db.notify()

    async def abort_transaction(self) -> None:
        if not self._in_transaction:
            raise PublishError("abort_transaction without begin_transaction")
        self._buffer = []
        self._in_transaction = self._accepting = False

    async def _before_close(self) -> None:
        """An open transaction is aborted: closing never publishes it."""
        if self._in_transaction:
            await self.abort_transaction()
