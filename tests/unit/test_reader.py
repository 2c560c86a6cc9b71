"""Reader.read_to_end gives up with a TimeoutError that says where the reader stands,
rather than waiting forever on a partition whose end it cannot reach."""

from __future__ import annotations

import pytest

from spate.brokers.base import Reader, ReaderStart
from spate.record import Record, TopicPartition


class StuckReader(Reader):
    """A partition with five offsets whose records never arrive."""

    topic_partition = TopicPartition("events", 3)

    async def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        return []

    async def seek(self, start: ReaderStart) -> None:
        return None

    async def bounds(self) -> tuple[int, int]:
        return 0, 5

    @property
    def position(self) -> int:
        return 0

    async def close(self) -> None:
        return None


async def test_read_to_end_times_out_naming_the_partition_and_offsets() -> None:
    with pytest.raises(TimeoutError, match=r"events\[3\] at 0, not at the end 5"):
        await StuckReader().read_to_end(0.05)
