"""A store's changelog topic: what is written to it at each commit, and how a store is
rebuilt from it (DESIGN §8).

Every flush of a store for one source partition sends each changed key to partition
*p* of ``<app>-<processor>-<store>-changelog`` (*p* = the source partition: the topic
has the source's partition count), value = the entry (:mod:`spate.state.codec`) or a
tombstone, and headers naming what the flush covers: the source topic and the range
of source offsets ``[first, last]`` whose processing made these changes (``last`` is
the batch's last offset, ``first`` the offset after the previous flush, or where the
owner started).

Under exactly-once with transactions the flush is inside the batch's transaction, so
an aborted batch leaves nothing readable. Elsewhere (at-least-once, effectively-once)
a flush can reach the changelog and its batch's commit never happen: the next owner
then re-processes from the committed offset and writes a flush whose ``first`` is at
or below that orphan's ``last``. A restore therefore applies a flush only if

    last < committed                      (its offsets were committed) and
    last < first of every later flush     (nobody re-processed its offsets),

``committed`` being the group's next offset of the source partition: what a commit
that failed after the changelog was written changed never reaches a restored store.
Deciding needs the flushes that come later, so a restore reads the changelog twice:
once for the flushes' ranges, once to apply what survives.

A restore reads up to the changelog's *settled* end (:meth:`Reader.settled_end`),
asked for after ``committed``: on Kafka a transaction left open by a killed worker
holds the read_committed end at its first record until it is aborted, and the flushes
that the next owners committed after it (their offsets counted in ``committed``)
would otherwise be missed for good.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spate.brokers.base import Broker, Producer, Reader
from spate.errors import RecoveryError, SpateError
from spate.record import Record, TopicPartition

log = logging.getLogger("spate.state")

SOURCE_TOPIC = "spate-source-topic"
SOURCE_FIRST = "spate-source-first"
SOURCE_LAST = "spate-source-offset"
RESTORE_BATCH = 5000
RESTORE_FETCH_TIMEOUT_S = 0.2
RESTORE_STALL_S = 60.0
"""A restore that reads nothing new for this long fails (RecoveryError) rather than
processing from a partial state."""


def changelog_topic(app: str, processor: str, store: str) -> str:
    return f"{app}-{processor}-{store}-changelog"


def send_flush(
    producer: Producer,
    topic: str,
    source: TopicPartition,
    first: int,
    last: int,
    keys: Sequence[bytes],
    entries: Sequence[bytes],
) -> None:
    """Buffer one flush's changes (``keys[i]`` with its entry or tombstone
    ``entries[i]``) on the changelog partition of ``source``, in one producer call;
    they become durable with the batch (the producer's flush or the transaction's
    commit)."""
    headers = (
        (SOURCE_TOPIC, source.topic.encode()),
        (SOURCE_FIRST, str(first).encode()),
        (SOURCE_LAST, str(last).encode()),
    )
    producer.send_to_partition(topic, source.partition, keys, entries, headers)


@dataclass(slots=True)
class _Run:
    """Consecutive changelog records of one flush."""

    topic: str
    first: int
    last: int
    count: int


def _flush_of(record: Record) -> tuple[str, int, int]:
    headers = dict(record.headers)
    try:
        return (
            headers[SOURCE_TOPIC].decode(),
            int(headers[SOURCE_FIRST]),
            int(headers[SOURCE_LAST]),
        )
    except (KeyError, ValueError) as exc:
        raise RecoveryError(
            f"changelog record {record.topic}[{record.partition}]@{record.offset} has no "
            f"valid source headers ({exc}); was something other than spate writing to it?"
        ) from exc


def surviving(runs: list[_Run], source_topic: str, committed: int) -> list[bool]:
    """Which flushes a restore of ``source_topic`` applies (see the module doc)."""
    keep = [False] * len(runs)
    limit = committed
    for i in range(len(runs) - 1, -1, -1):
        run = runs[i]
        if run.topic != source_topic:
            continue
        keep[i] = run.last < limit
        limit = min(limit, run.first)
    return keep


@dataclass(frozen=True, slots=True)
class Restored:
    records: int
    """Changelog records applied."""
    end: int
    """The changelog position after the last record read: where the next restore
    from this state begins."""
    last_source: int
    """The last source offset the applied flushes cover (-1: none)."""


async def restore(
    broker: Broker,
    changelog: str,
    source: TopicPartition,
    start: int,
    committed: int,
    apply: Callable[[bytes, bytes], None],
    progress: Callable[[int, int], None] | None = None,
) -> Restored:
    """Replay partition ``source.partition`` of ``changelog`` from ``start`` into
    ``apply(key, entry)`` (entry empty: a tombstone), keeping only what survives
    ``committed``; RecoveryError if the changelog cannot be read to its end.
    ``progress(done, total)`` is told after each fetched batch (both passes count)."""
    try:
        async with broker.reader(changelog, source.partition, start) as reader:
            # Not bounds(): on Kafka its end stops at a transaction still open (a killed
            # writer's), hiding the flushes committed after it (see Reader.settled_end).
            end = await reader.settled_end(RESTORE_STALL_S)
            origin = reader.position
            runs: list[_Run] = []
            total = 2 * max(end - origin, 0)
            async for batch in _batches(reader, end, changelog):
                if progress is not None:
                    progress(reader.position - origin, total)
                for record in batch:
                    topic, first, last = _flush_of(record)
                    run = runs[-1] if runs else None
                    if run is not None and (run.topic, run.first, run.last) == (topic, first, last):
                        run.count += 1
                    else:
                        runs.append(_Run(topic, first, last, 1))
            keep = surviving(runs, source.topic, committed)
            applied, last_source = 0, -1
            if any(keep):
                await reader.seek(origin)
                index, left = 0, runs[0].count if runs else 0
                async for batch in _batches(reader, end, changelog):
                    if progress is not None:
                        progress(total // 2 + reader.position - origin, total)
                    for record in batch:
                        while left == 0:
                            index += 1
                            left = runs[index].count
                        left -= 1
                        if keep[index]:
                            apply(record.key or b"", record.value)
                            applied += 1
                            last_source = runs[index].last
            return Restored(applied, max(end, origin), last_source)
    except SpateError as exc:
        if isinstance(exc, RecoveryError):
            raise
        raise RecoveryError(
            f"cannot restore from changelog {changelog}[{source.partition}]: {exc}",
            transient=exc.transient,
        ) from exc


async def _batches(reader: Reader, end: int, changelog: str):  # type: ignore[no-untyped-def]
    """The reader's records in batches until its position reaches ``end``."""
    stalled_since = time.monotonic()
    while reader.position < end:
        batch = await reader.fetch(RESTORE_BATCH, RESTORE_FETCH_TIMEOUT_S)
        if batch:
            stalled_since = time.monotonic()
            yield batch
        elif time.monotonic() - stalled_since > RESTORE_STALL_S:
            raise RecoveryError(
                f"changelog {changelog}[{reader.topic_partition.partition}] stopped at "
                f"{reader.position} before its end {end}",
                transient=True,
            )
