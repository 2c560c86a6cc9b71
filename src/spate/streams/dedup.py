"""Idempotent consumers: drop a record whose business key was processed before
(DESIGN §7).

``Dedup(key=..., ttl_s=...)`` on ``app.handler(...)``, or ``stream.dedup(...)``,
compiles to one stage that keeps the keys it let through in a store of the record's
partition (``Stage.stores``, opened by the worker on assignment). A key already in
the store drops the record; a new one is remembered for ``ttl_s`` seconds (forever
without it). The store is all this stage knows of: whatever backs it (memory today,
a changelog-backed store once state is durable) decides whether the seen-set
survives a restart, and its writes become durable with the batch's offsets.

A key counts as processed once its record got through the whole pipeline: a record
that fails in a later stage (dead-lettered, moved to a retry topic, skipped) has its
key forgotten again, so its replay or retry is not mistaken for a duplicate.

The seen-set is per partition, as every store is: two records with the same key are
recognised only if they land on the same partition, so key the topic by the business
key (``key=`` when producing, or ``key_by`` upstream).

Per batch, not per record, wherever it can: the store of a partition is looked up once
per run of records of that partition, and the dropped records are counted once per
batch into :attr:`DedupCounts.dropped`, which the worker copies into its stats.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spate.errors import ConfigError, ProcessingError
from spate.record import Record, TopicPartition

if TYPE_CHECKING:
    from spate.partitions import PartitionContext
    from spate.state.store import Store
    from spate.streams.stages import Batch, Fail

KEY_TYPES = (str, bytes, int, tuple)
"""What a dedup key may be: what a store's key may be (``spate.state.store.StoreKey``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Dedup:
    """Drop a record when ``key(value)`` was seen before on its partition, within
    ``ttl_s`` seconds (None: remembered for as long as the store keeps it)."""

    key: Callable[[Any], object]
    ttl_s: float | None = None

    def __post_init__(self) -> None:
        if not callable(self.key):
            raise ConfigError(
                f"Dedup(key={self.key!r}) needs a function of the value, "
                "e.g. key=lambda order: order.id"
            )
        ttl_s = self.ttl_s
        if ttl_s is not None and (
            isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or ttl_s <= 0
        ):
            raise ConfigError(
                f"Dedup(ttl_s={ttl_s!r}) needs a number of seconds > 0, or None to "
                "remember keys for as long as the store keeps them"
            )


@dataclass(slots=True)
class DedupCounts:
    """What one compiled pipeline's dedup stages dropped (the worker reads it per batch)."""

    dropped: int = 0


def _bad_key(key: object) -> ProcessingError:
    return ProcessingError(
        f"Dedup key {key!r} is a {type(key).__name__}; the key function must return a "
        "str, bytes, int or a tuple of those (e.g. the business id)"
    )


def dedup_stage(
    dedup: Dedup,
    store: str,
    fail: Fail,
    partitions: Mapping[TopicPartition, PartitionContext],
    counts: DedupCounts,
) -> tuple[Callable[[Batch], Batch], Fail]:
    """The stage, which passes each item whose key is new to its partition's ``store``,
    and the ``fail`` for the stages after it: it forgets the failed record's key first."""
    key_of, ttl_s = dedup.key, dedup.ttl_s
    remembered: dict[int, tuple[Store, Any]] = {}
    """This batch's keys by id of the record that set them (its records live as long)."""

    def dedup_stage(batch: Batch) -> Batch:
        out: Batch = []
        append = out.append
        topic: str | None = None
        partition = -1
        seen: Store | None = None
        dropped = 0
        remembered.clear()
        for item in batch:
            source = item[0]
            try:
                key: Any = key_of(item[2])
                if not isinstance(key, KEY_TYPES):
                    raise _bad_key(key)
            except Exception as exc:
                fail(source, exc)
                continue
            if source.partition != partition or source.topic is not topic:
                topic, partition = source.topic, source.partition
                seen = partitions[TopicPartition(topic, partition)].store(store)
            assert seen is not None
            if key in seen:
                dropped += 1
                continue
            seen.set(key, True, ttl_s=ttl_s)
            remembered[id(source)] = (seen, key)
            append(item)
        counts.dropped += dropped
        return out

    def forget_then_fail(record: Record, exc: Exception) -> None:
        entry = remembered.pop(id(record), None)
        if entry is not None:
            entry[0].delete(entry[1])
        fail(record, exc)

    return dedup_stage, forget_then_fail
