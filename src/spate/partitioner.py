"""Key → partition, the same function on every broker.

CRC32 of the key bytes modulo the partition count, like librdkafka's ``consistent``
partitioner, so a key lands on the same partition number whichever broker runs it.
Records without a key are spread round-robin per topic — unless they carry a
``dedup_id``: brokers drop a re-published copy only within one partition, and the
copy comes from another producer (a replay after a crash, a failover) whose
round-robin stands elsewhere, so such a record goes by the CRC32 of its id instead.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterator, Sequence
from typing import cast


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition that ``key`` belongs to among ``partitions``."""
    return zlib.crc32(key) % partitions


class Partitioner:
    """Chooses partitions for a producer: by key hash, else by ``dedup_id`` hash, else
    round-robin."""

    __slots__ = ("_round_robin",)

    def __init__(self) -> None:
        self._round_robin: dict[str, Iterator[int]] = {}

    def choose(
        self, topic: str, key: bytes | None, partitions: int, *, dedup_id: str | None = None
    ) -> int:
        if key is not None:
            return zlib.crc32(key) % partitions
        if dedup_id is not None:
            return zlib.crc32(dedup_id.encode()) % partitions
        counter = self._round_robin.get(topic)
        if counter is None:
            counter = self._round_robin[topic] = itertools.count()
        return next(counter) % partitions

    def choose_many(self, topic: str, keys: Sequence[bytes | None], partitions: int) -> list[int]:
        """``choose`` for each of ``keys`` in turn; when none is None (a batch's keyed
        outputs), the hashes run as one pass in C rather than a call each."""
        if None in keys:
            return [self.choose(topic, key, partitions) for key in keys]
        hashes = map(zlib.crc32, cast("Sequence[bytes]", keys))
        return [crc % partitions for crc in hashes]
