"""The Redis partition reader: XRANGE on the partition's stream from the offset's ID.

spate's IDs are ``1-<offset>`` (see :mod:`.keys`), so reading from an offset is a
range query; an XREAD BLOCK without a group waits at the end. Nothing is created on
the server: no group, no cursor, no pending entries.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from spate.brokers.base import ReaderStart
from spate.brokers.reader import PartitionReader
from spate.brokers.redis.streams import PartitionStreams
from spate.record import Record

if TYPE_CHECKING:
    from spate.brokers.redis.broker import RedisBroker


class RedisReader(PartitionReader):
    """Reads one partition of a Redis topic; see :class:`PartitionReader`."""

    def __init__(
        self,
        broker: RedisBroker,
        streams: PartitionStreams,
        topic: str,
        partition: int,
        start: ReaderStart,
    ):
        super().__init__(broker, topic, partition, start)
        self._streams = streams

    async def _bounds(self) -> tuple[int, int]:
        return await self._streams.bounds(self.topic_partition)

    async def _read(self, position: int, max_records: int, timeout_s: float) -> list[Record]:
        tp = self.topic_partition
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            records = await self._streams.range(tp, position, max_records)
            remaining = deadline - loop.time()
            if records or remaining <= 0:
                return records
            await self._streams.wait({tp: position}, remaining)
