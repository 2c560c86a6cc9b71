"""Retention by age and size, as Kafka names it: ``retention.ms``, ``retention.bytes``.

Policy (per partition, whole batches, oldest first, keeping the log contiguous):

* a topic without those keys (or with ``-1``) keeps every record: the embedded broker
  never deletes anything on its own, consumed or not;
* ``retention.ms``: a batch whose newest record is older than that is deleted;
* ``retention.bytes``: oldest batches are deleted while the partition holds more,
  except the newest batch, so a flush larger than the limit is still delivered.

Space freed this way is returned to the file system (incremental vacuum) bit by bit.

Retention wins over consumers: records a group has not committed yet are deleted when
retention says so. Each such record is counted in that group's ``records_lost`` for
the partition (see :meth:`LocalBroker.records_lost`) and logged as a warning; the
group then resumes at the first record still stored. Groups that never committed on
a partition are not counted: they have no position there to lose.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

from spate.brokers.local.storage import write_transaction
from spate.errors import ConfigError
from spate.record import TopicPartition

log = logging.getLogger("spate.brokers.local")

RETENTION_KEYS = ("retention.ms", "retention.bytes")
VACUUM_PAGES_PER_PASS = 4096
"""Free pages handed back to the file system per pass (64 MiB), so one pass never
holds the write lock for long; the rest goes at the next pass."""


@dataclass(frozen=True, slots=True)
class Loss:
    """Records deleted by retention before ``group`` committed them."""

    group: str
    tp: TopicPartition
    records: int


def validate_config(topic: str, config: dict[str, str]) -> None:
    """Reject retention values that are not integers, naming the key."""
    for key in RETENTION_KEYS:
        if key in config:
            try:
                int(config[key])
            except ValueError:
                raise ConfigError(
                    f"topic {topic!r}: {key}={config[key]!r} must be an integer "
                    "(-1 keeps everything)"
                ) from None


def _limit(config: dict[str, str], key: str) -> int | None:
    value = int(config.get(key, "-1"))
    return None if value < 0 else value


def enforce(conn: sqlite3.Connection, topics: dict[str, dict[str, str]], now_ms: int) -> list[Loss]:
    """Delete what retention allows in ``topics`` (name → config); return the losses."""
    losses: list[Loss] = []
    deleted = False
    with write_transaction(conn):
        for topic, config in topics.items():
            max_age_ms = _limit(config, "retention.ms")
            max_bytes = _limit(config, "retention.bytes")
            if max_age_ms is None and max_bytes is None:
                continue
            rows = conn.execute(
                "SELECT partition, start_offset FROM partitions WHERE topic = ?", (topic,)
            ).fetchall()
            for partition, start in rows:
                new_start = _new_start(conn, topic, partition, now_ms, max_age_ms, max_bytes)
                if new_start is not None and new_start > start:
                    deleted = True
                    losses.extend(_delete(conn, TopicPartition(topic, partition), start, new_start))
    if deleted:
        # Each step of this pragma frees one page, and execute() takes only the first
        # step of a statement without result columns; executescript() runs them all.
        conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES_PER_PASS});")
    for loss in losses:
        log.warning(
            "event=retention_lost_records topic=%s partition=%d group=%s records=%d",
            loss.tp.topic,
            loss.tp.partition,
            loss.group,
            loss.records,
        )
    return losses


def delete_before(conn: sqlite3.Connection, topic: str, before_ms: int) -> int:
    """Delete ``topic``'s batches older than ``before_ms`` (the batches whose newest
    record is older, oldest first, up to the first that is not), as ``retention.ms``
    would at that moment; return the records deleted. Whole batches: a batch that
    straddles ``before_ms`` stays, so no record at or after it is ever deleted."""
    removed = 0
    with write_transaction(conn):
        rows = conn.execute(
            "SELECT partition, start_offset FROM partitions WHERE topic = ?", (topic,)
        ).fetchall()
        for partition, start in rows:
            new_start = _new_start(conn, topic, partition, before_ms, 0, None)
            if new_start is not None and new_start > start:
                removed += new_start - start
                _delete(conn, TopicPartition(topic, partition), start, new_start)
    if removed:
        conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES_PER_PASS});")
    return removed


def _new_start(
    conn: sqlite3.Connection,
    topic: str,
    partition: int,
    now_ms: int,
    max_age_ms: int | None,
    max_bytes: int | None,
) -> int | None:
    """The first offset to keep, or None if nothing goes."""
    batches = conn.execute(
        "SELECT last_offset, max_timestamp_ms, size FROM batches "
        "WHERE topic = ? AND partition = ? ORDER BY last_offset",
        (topic, partition),
    ).fetchall()
    total = sum(size for _, _, size in batches)
    keep_from: int | None = None
    for index, (last_offset, max_ts, size) in enumerate(batches):
        too_old = max_age_ms is not None and max_ts < now_ms - max_age_ms
        too_big = max_bytes is not None and total > max_bytes and index < len(batches) - 1
        if not (too_old or too_big):
            break
        total -= size
        keep_from = last_offset + 1
    return keep_from


def _delete(conn: sqlite3.Connection, tp: TopicPartition, start: int, new_start: int) -> list[Loss]:
    conn.execute(
        "DELETE FROM batches WHERE topic = ? AND partition = ? AND last_offset < ?",
        (tp.topic, tp.partition, new_start),
    )
    conn.execute(
        "UPDATE partitions SET start_offset = ? WHERE topic = ? AND partition = ?",
        (new_start, tp.topic, tp.partition),
    )
    behind = conn.execute(
        "SELECT grp, next_offset FROM offsets WHERE topic = ? AND partition = ? "
        "AND next_offset < ?",
        (tp.topic, tp.partition, new_start),
    ).fetchall()
    losses = []
    for group, position in behind:
        lost = new_start - max(position, start)
        conn.execute(
            "UPDATE offsets SET records_lost = records_lost + ? "
            "WHERE grp = ? AND topic = ? AND partition = ?",
            (lost, group, tp.topic, tp.partition),
        )
        losses.append(Loss(group, tp, lost))
    return losses


def records_lost(conn: sqlite3.Connection, group: str) -> dict[TopicPartition, int]:
    rows = conn.execute(
        "SELECT topic, partition, records_lost FROM offsets WHERE grp = ? AND records_lost > 0",
        (group,),
    )
    return {TopicPartition(topic, partition): lost for topic, partition, lost in rows}
