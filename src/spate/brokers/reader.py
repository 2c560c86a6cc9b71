"""What every adapter's :class:`~spate.brokers.base.Reader` shares.

An adapter supplies three hooks — the partition's bounds, a read of up to N records
from an offset (waiting for the first), and its own release — and this class keeps
everything else the same on every broker: the topic and partition checks, how
``start`` resolves, the position, and use after close.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from spate.brokers.base import Reader, ReaderStart
from spate.errors import ClosedError, ConfigError
from spate.record import Record, TopicPartition

if TYPE_CHECKING:
    from spate.brokers.lifecycle import OwningBroker


def check_start(start: ReaderStart) -> ReaderStart:
    """``start`` itself, or ConfigError naming what is accepted."""
    if start in ("earliest", "latest") or (
        isinstance(start, int) and not isinstance(start, bool) and start >= 0
    ):
        return start
    raise ConfigError(
        f"reader start={start!r} is not valid; use an offset >= 0, earliest or latest"
    )


class PartitionReader(Reader):
    """A reader on ``broker``; adapters implement ``_bounds``, ``_read`` and ``_release``."""

    def __init__(self, broker: OwningBroker, topic: str, partition: int, start: ReaderStart):
        self.topic_partition = TopicPartition(topic, partition)
        self._broker = broker
        self._start = check_start(start)
        self._position: int | None = None
        self._closed = False

    @abc.abstractmethod
    async def _bounds(self) -> tuple[int, int]:
        """(first retained offset, offset the next appended record gets)."""

    @abc.abstractmethod
    async def _read(self, position: int, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records from ``position`` on, in offset order, waiting
        at most ``timeout_s`` for the first. ``position`` only moves by the records
        returned, except after a ``seek``."""

    async def _release(self) -> None:
        """Free what the adapter holds (a client, a server-side consumer)."""

    @property
    def position(self) -> int:
        if self._position is None:
            raise ConfigError(
                f"reader of {self._describe()} is not started; use `async with broker.reader(...)`"
            )
        return self._position

    def _describe(self) -> str:
        return f"{self.topic_partition.topic}[{self.topic_partition.partition}]"

    async def start(self) -> None:
        if self._closed:
            raise ClosedError(f"reader of {self._describe()} is closed")
        if self._position is not None:
            return
        topic, partition = self.topic_partition
        info = await self._broker.describe_topic(topic)
        if not 0 <= partition < info.partitions:
            raise ConfigError(
                f"topic {topic!r} has partitions 0..{info.partitions - 1}; "
                f"partition {partition} does not exist"
            )
        self._position = await self._resolve(self._start)

    async def _resolve(self, start: ReaderStart) -> int:
        first, end = await self._bounds()
        if start == "earliest":
            return first
        if start == "latest":
            return end
        return min(max(start, first), end)

    async def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._closed:
            raise ClosedError(f"fetch on a closed reader of {self._describe()}")
        if max_records < 1:
            raise ConfigError(f"fetch max_records={max_records!r} must be 1 or more")
        await self.start()
        position = self.position
        records = await self._read(position, max_records, timeout_s)
        self._position = self._next_position(records, position)
        return records

    def _next_position(self, records: list[Record], position: int) -> int:
        """Where the next fetch starts: after the last record returned. An adapter
        whose log has offsets without records (Kafka's transaction markers) says
        where its client really stands, so the position can reach the end."""
        return records[-1].offset + 1 if records else position

    async def bounds(self) -> tuple[int, int]:
        if self._closed:
            raise ClosedError(f"bounds of a closed reader of {self._describe()}")
        await self.start()
        return await self._bounds()

    async def seek(self, start: ReaderStart) -> None:
        if self._closed:
            raise ClosedError(f"seek on a closed reader of {self._describe()}")
        check_start(start)
        await self.start()
        self._position = await self._resolve(start)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._release()
        finally:
            self._broker.forget(self)
