"""The Kafka partition reader: a librdkafka consumer that ``assign``s one partition.

librdkafka wants a ``group.id`` on every consumer, but a consumer that only assigns
and never commits (auto-commit is off) joins no group and stores nothing, so the
broker lists no group for it. Calls run on one worker thread of the reader's own,
since ``consume`` blocks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import confluent_kafka as ck
from confluent_kafka import KafkaError, KafkaException

from spate.brokers.base import ReaderStart
from spate.brokers.kafka.config import create_client
from spate.brokers.kafka.consumer import to_records
from spate.brokers.kafka.errors import UNRECOVERABLE, to_spate_error
from spate.brokers.reader import PartitionReader
from spate.errors import ClosedError
from spate.record import Record

if TYPE_CHECKING:
    from spate.brokers.kafka.broker import KafkaBroker

logger = logging.getLogger("spate.kafka")

T = TypeVar("T")

READER_GROUP = "spate-reader"
"""The ``group.id`` librdkafka insists on; never joined, never committed to."""


class KafkaReader(PartitionReader):
    """Reads one partition of a Kafka topic; see :class:`PartitionReader`."""

    def __init__(
        self,
        broker: KafkaBroker,
        config: dict[str, Any],
        topic: str,
        partition: int,
        start: ReaderStart,
    ):
        super().__init__(broker, topic, partition, start)
        self._kafka = broker
        self._config = config
        self._consumer: ck.Consumer | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "spate-kafka-reader")
        self._next = -1
        """The offset librdkafka fetches next (-1: not assigned yet)."""

    async def _bounds(self) -> tuple[int, int]:
        return await self._kafka.bounds(self.topic_partition)

    async def settled_end(self, timeout_s: float) -> int:
        if self._closed:
            raise ClosedError(f"bounds of a closed reader of {self._describe()}")
        await self.start()
        return await self._kafka.settled_end(self.topic_partition, timeout_s)

    async def _call(self, function: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function)
        except KafkaException as exc:
            raise to_spate_error(exc, f"read {self._describe()} on {self._kafka.url}") from exc

    async def _read(self, position: int, max_records: int, timeout_s: float) -> list[Record]:
        consumer = self._consumer
        if consumer is None:
            consumer = self._consumer = create_client(ck.Consumer, self._config)
        if position != self._next:
            topic, partition = self.topic_partition
            await self._call(
                lambda: consumer.assign([ck.TopicPartition(topic, partition, position)])
            )
            self._next = position
        tp = ck.TopicPartition(*self.topic_partition)

        def consume() -> list[Record]:
            records = to_records(consumer.consume(max_records, timeout_s), self._message_error)
            # Past the last record librdkafka may stand beyond transaction markers.
            (now,) = consumer.position([tp])
            if now.offset >= 0:
                self._next = now.offset
            elif records:
                self._next = records[-1].offset + 1
            return records

        return await self._call(consume)

    def _next_position(self, records: list[Record], position: int) -> int:
        return self._next

    def _message_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal() or error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, *UNRECOVERABLE):
            raise to_spate_error(error, f"read {self._describe()}")
        logger.warning("event=kafka_reader_error partition=%s error=%s", self._describe(), error)

    async def _release(self) -> None:
        consumer, self._consumer = self._consumer, None
        try:
            if consumer is not None:
                await self._call(consumer.close)
        finally:
            self._executor.shutdown(wait=False)
