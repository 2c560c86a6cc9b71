"""The log itself: topics, record batches, group offsets — plain SQL on one connection.

Every function here runs on the database thread (see :mod:`.storage`) and does the
work of a whole batch in one call. Records are stored as *batches*, one row per
partition per flush (at most :data:`MAX_BATCH_RECORDS` records), because SQLite's
cost is per row, not per byte. A batch is a msgpack array of records encoded as maps
with the field names of :class:`~spate.record.Record`, so msgspec decodes a whole
batch straight into ``Record`` objects without a Python call per record.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

import msgspec

from spate.brokers.base import OffsetReset, PartitionLag, TopicInfo
from spate.errors import (
    FencedError,
    PublishError,
    TopicExistsError,
    TopicNotFoundError,
)
from spate.partitioner import Partitioner
from spate.record import Headers, Record, TopicPartition

_TOPIC = itemgetter(0)
_PARTITION = itemgetter(1)
_KEY = itemgetter(2)
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_TIMESTAMP = itemgetter(5)

MAX_BATCH_RECORDS = 1000
"""Largest batch row, so a fetch never decodes far more than it returns."""

Send = tuple[str, int | None, bytes | None, bytes, Headers, int | None]
"""A buffered record: topic, partition (None: partitioner), key, value, headers, timestamp
(None: the time of the flush, read once per batch rather than once per record)."""


class _WireRecord(msgspec.Struct):
    """How a record is encoded: a map with :class:`Record`'s field names, which msgspec
    writes from this Struct about twice as fast as from a dict. Every field is written,
    even empty headers: msgspec decodes a complete map faster than it fills a default."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers | msgspec.Raw = ()
    """The headers, or their encoding already made (:func:`encode_batch`)."""
    timestamp_ms: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Record])


def encode_batch(
    topic: str, partition: int, base_offset: int, sends: Sequence[Send], now_ms: int
) -> bytes:
    """Encode records that will get offsets ``base_offset``, ``base_offset + 1``, …

    Records sent together often share one headers object (a changelog flush names its
    source range on every record): the first record's headers are encoded once and
    copied as raw msgpack into every record that has the same object, the same bytes
    msgspec would write for each."""
    shared = sends[0][4] if sends else ()
    encoded: Headers | msgspec.Raw = msgspec.Raw(_encoder.encode(shared)) if shared else shared
    return _encoder.encode(
        [
            _WireRecord(
                topic,
                partition,
                offset,
                send[2],
                send[3],
                encoded if send[4] is shared else send[4],
                now_ms if send[5] is None else send[5],
            )
            for offset, send in enumerate(sends, base_offset)
        ]
    )


def decode_batch(payload: bytes) -> list[Record]:
    return _decoder.decode(payload)


# -- topics ------------------------------------------------------------------------------


def _info(row: tuple[Any, ...]) -> TopicInfo:
    return TopicInfo(name=row[0], partitions=row[1], config=json.loads(row[2]))


def create_topic(
    conn: sqlite3.Connection,
    name: str,
    partitions: int,
    config: Mapping[str, str],
    now_ms: int,
    exist_ok: bool,
) -> TopicInfo:
    row = conn.execute(
        "SELECT name, partitions, config FROM topics WHERE name = ?", (name,)
    ).fetchone()
    if row is not None:
        if exist_ok:
            return _info(row)
        raise TopicExistsError(f"topic {name!r} exists already")
    conn.execute(
        "INSERT INTO topics (name, partitions, config, created_ms) VALUES (?, ?, ?, ?)",
        (name, partitions, json.dumps(dict(config), sort_keys=True), now_ms),
    )
    conn.executemany(
        "INSERT INTO partitions (topic, partition, start_offset, next_offset) VALUES (?, ?, 0, 0)",
        [(name, p) for p in range(partitions)],
    )
    return TopicInfo(name=name, partitions=partitions, config=dict(config))


def describe_topic(conn: sqlite3.Connection, name: str) -> TopicInfo:
    row = conn.execute(
        "SELECT name, partitions, config FROM topics WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        raise TopicNotFoundError(f"topic {name!r} does not exist; create it first")
    return _info(row)


def list_topics(conn: sqlite3.Connection) -> list[TopicInfo]:
    rows = conn.execute("SELECT name, partitions, config FROM topics ORDER BY name")
    return [_info(row) for row in rows]


def delete_topic(conn: sqlite3.Connection, name: str) -> None:
    describe_topic(conn, name)
    for table in ("topics", "partitions", "batches", "offsets", "leases"):
        column = "name" if table == "topics" else "topic"
        conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))


def partition_counts(conn: sqlite3.Connection, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each named topic; TopicNotFoundError names a missing one."""
    counts: dict[str, int] = {}
    for name in names:
        row = conn.execute("SELECT partitions FROM topics WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise TopicNotFoundError(
                f"topic {name!r} does not exist; create it first "
                f"(spate topics create {name} --partitions N)"
            )
        counts[name] = row[0]
    return counts


# -- appending and reading ---------------------------------------------------------------


def append(
    conn: sqlite3.Connection, sends: Sequence[Send], partitioner: Partitioner, now_ms: int
) -> None:
    """Append ``sends`` in order; call inside a write transaction."""
    counts = partition_counts(conn, {send[0] for send in sends})
    by_partition: dict[tuple[str, int], list[Send]] = {}
    # Sends come in runs to one partition (a changelog flush is one run; a batch's
    # outputs, partition None, another): a run with its partition is checked and moved
    # as a whole, and a run without is placed by the partitioner in one pass.
    for partition, run in groupby(sends, _PARTITION):
        if partition is None:
            for topic, same in groupby(run, _TOPIC):
                _place(by_partition, topic, list(same), counts[topic], partitioner)
            continue
        for topic, same in groupby(run, _TOPIC):
            if not 0 <= partition < counts[topic]:
                raise PublishError(
                    f"topic {topic!r} has partitions 0..{counts[topic] - 1}; "
                    f"partition {partition} does not exist"
                )
            bucket = by_partition.get((topic, partition))
            if bucket is None:
                bucket = by_partition[(topic, partition)] = []
            bucket.extend(same)
    rows: list[tuple[str, int, int, int, int, int, bytes]] = []
    ends: list[tuple[int, str, int]] = []
    for (topic, partition), items in by_partition.items():
        (next_offset,) = conn.execute(
            "SELECT next_offset FROM partitions WHERE topic = ? AND partition = ?",
            (topic, partition),
        ).fetchone()
        for start in range(0, len(items), MAX_BATCH_RECORDS):
            chunk = items[start : start + MAX_BATCH_RECORDS]
            payload = encode_batch(topic, partition, next_offset, chunk, now_ms)
            last = next_offset + len(chunk) - 1
            stamps = list(map(_TIMESTAMP, chunk))
            unstamped = stamps.count(None)  # these get the flush's time
            if unstamped == len(stamps):
                max_ts = now_ms
            elif unstamped:
                max_ts = max(now_ms, *(stamp for stamp in stamps if stamp is not None))
            else:
                max_ts = max(stamps)
            rows.append((topic, partition, next_offset, last, max_ts, len(payload), payload))
            next_offset = last + 1
        ends.append((next_offset, topic, partition))
    conn.executemany(
        "INSERT INTO batches (topic, partition, base_offset, last_offset, max_timestamp_ms, "
        "size, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.executemany(
        "UPDATE partitions SET next_offset = ? WHERE topic = ? AND partition = ?", ends
    )


def _place(
    by_partition: dict[tuple[str, int], list[Send]],
    topic: str,
    sends: list[Send],
    count: int,
    partitioner: Partitioner,
) -> None:
    """Put ``sends`` (to ``topic``, with no partition) in their partitions' buckets, in
    order: the partitioner's choices for all keys at once, then a stable sort by
    partition, passes in C rather than a lookup per record."""
    chosen = partitioner.choose_many(topic, list(map(_KEY, sends)), count)
    placed = sorted(zip(chosen, sends, strict=True), key=_FIRST)
    for number, group in groupby(placed, _FIRST):
        bucket = by_partition.get((topic, number))
        if bucket is None:
            bucket = by_partition[(topic, number)] = []
        bucket.extend(map(_SECOND, group))


PartlyRead = dict[TopicPartition, tuple[int, list[Record]]]
"""Per partition, the decoded batch a fetch stopped in the middle of (base offset,
records), so the next fetch continues from it instead of reading and decoding it again."""


def read(
    conn: sqlite3.Connection,
    positions: Sequence[tuple[TopicPartition, int]],
    max_records: int,
    partly_read: PartlyRead,
) -> list[Record]:
    """Up to ``max_records`` records from the partitions' positions, in that order."""
    out: list[Record] = []
    for tp, position in positions:
        need = max_records - len(out)
        if need <= 0:
            break
        held = partly_read.pop(tp, None)
        if held is not None and held[0] <= position < held[0] + len(held[1]):
            base_offset, records = held
            taken = records[position - base_offset : position - base_offset + need]
            out.extend(taken)
            need -= len(taken)
            position += len(taken)
            if need <= 0:
                if position < base_offset + len(records):
                    partly_read[tp] = held
                break
        cursor = conn.execute(
            "SELECT base_offset, payload FROM batches WHERE topic = ? AND partition = ? "
            "AND last_offset >= ? ORDER BY last_offset",
            (tp[0], tp[1], position),
        )
        for base_offset, payload in cursor:
            records = decode_batch(payload)
            skip = position - base_offset if position > base_offset else 0
            taken = records[skip : skip + need]
            out.extend(taken)
            need -= len(taken)
            if need <= 0:
                if skip + len(taken) < len(records):
                    partly_read[tp] = (base_offset, records)
                break
        cursor.close()
    return out


def log_bounds(
    conn: sqlite3.Connection, tps: Iterable[TopicPartition]
) -> dict[TopicPartition, tuple[int, int]]:
    """(start offset, next offset) of each partition."""
    bounds: dict[TopicPartition, tuple[int, int]] = {}
    for tp in tps:
        row = conn.execute(
            "SELECT start_offset, next_offset FROM partitions WHERE topic = ? AND partition = ?",
            tp,
        ).fetchone()
        if row is not None:
            bounds[tp] = (row[0], row[1])
    return bounds


# -- group offsets -----------------------------------------------------------------------


def committed(
    conn: sqlite3.Connection, group: str, tps: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The next offset to read of each partition the group committed on."""
    found: dict[TopicPartition, int] = {}
    for tp in tps:
        row = conn.execute(
            "SELECT next_offset FROM offsets WHERE grp = ? AND topic = ? AND partition = ?",
            (group, tp[0], tp[1]),
        ).fetchone()
        if row is not None:
            found[tp] = row[0]
    return found


def initial_positions(
    conn: sqlite3.Connection, group: str, tps: Sequence[TopicPartition], reset: OffsetReset
) -> dict[TopicPartition, int]:
    """Where a new owner starts: the committed offset, else the reset end of the log."""
    positions = committed(conn, group, tps)
    missing = [tp for tp in tps if tp not in positions]
    for tp, (start, end) in log_bounds(conn, missing).items():
        positions[tp] = start if reset == "earliest" else end
    return positions


def commit_offsets(
    conn: sqlite3.Connection,
    group: str,
    member: str,
    through: Mapping[TopicPartition, int],
    epochs: Mapping[TopicPartition, int],
) -> None:
    """Store ``through + 1`` per partition after checking this member's lease epochs.

    Call inside a write transaction: the check and the write are then one atomic step,
    so a member whose lease was taken over can never overwrite its successor's commits.
    """
    for tp, offset in through.items():
        row = conn.execute(
            "SELECT member, epoch FROM leases WHERE grp = ? AND topic = ? AND partition = ?",
            (group, tp[0], tp[1]),
        ).fetchone()
        epoch = epochs.get(tp)
        if row is None or row[0] != member or row[1] != epoch:
            owner = "nobody" if row is None or row[0] is None else repr(row[0])
            raise FencedError(
                f"group {group!r}: {tp.topic}[{tp.partition}] is owned by {owner} now "
                f"(epoch {None if row is None else row[1]}, this member had {epoch}); "
                "the commit was refused"
            )
        conn.execute(
            "INSERT INTO offsets (grp, topic, partition, next_offset) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            (group, tp[0], tp[1], offset + 1),
        )


def group_lag(
    conn: sqlite3.Connection, group: str, topics: Sequence[str] | None
) -> list[PartitionLag]:
    if topics is None:
        topics = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT topic FROM offsets WHERE grp = ? ORDER BY topic", (group,)
            )
        ]
    result: list[PartitionLag] = []
    for topic, count in partition_counts(conn, topics).items():
        tps = [TopicPartition(topic, p) for p in range(count)]
        done = committed(conn, group, tps)
        for tp, (start, end) in sorted(log_bounds(conn, tps).items()):
            position = done.get(tp)
            base = start if position is None else max(position, start)
            result.append(
                PartitionLag(
                    topic=topic,
                    partition=tp.partition,
                    committed=position,
                    end_offset=end,
                    lag=max(end - base, 0),
                )
            )
    return result


def groups(conn: sqlite3.Connection, now_ms: int) -> list[str]:
    """Groups that committed something or have a live member (dead members expire)."""
    rows = conn.execute(
        "SELECT grp FROM offsets UNION SELECT grp FROM members WHERE expires_ms > ? ORDER BY 1",
        (now_ms,),
    )
    return [row[0] for row in rows]
