"""The embedded broker's partition reader: the SQLite log read directly."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spate.brokers.base import ReaderStart
from spate.brokers.local import log
from spate.brokers.local.consumer import read_waiting
from spate.brokers.reader import PartitionReader
from spate.record import Record

if TYPE_CHECKING:
    from spate.brokers.local.broker import LocalBroker


class LocalReader(PartitionReader):
    """Reads one partition of the embedded broker's log; see :class:`PartitionReader`."""

    def __init__(self, broker: LocalBroker, topic: str, partition: int, start: ReaderStart):
        super().__init__(broker, topic, partition, start)
        self._db = broker.db
        self._partly_read: log.PartlyRead = {}

    async def _bounds(self) -> tuple[int, int]:
        tp = self.topic_partition
        bounds = await self._db.run(lambda conn: log.log_bounds(conn, [tp]))
        return bounds[tp]

    async def _read(self, position: int, max_records: int, timeout_s: float) -> list[Record]:
        positions = [(self.topic_partition, position)]
        return await read_waiting(self._db, positions, max_records, timeout_s, self._partly_read)
