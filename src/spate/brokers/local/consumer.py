"""The embedded broker's consumer: lease-based membership plus reads from the log."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from spate.brokers.base import OffsetReset, RebalanceListener
from spate.brokers.leased import LeasedConsumer
from spate.brokers.local import log
from spate.brokers.local.leases import SqliteLeaseStore
from spate.brokers.local.storage import Database, write_transaction
from spate.errors import CommitError
from spate.record import Record, TopicPartition

if TYPE_CHECKING:
    from spate.brokers.local.broker import LocalBroker


async def read_waiting(
    db: Database,
    positions: Sequence[tuple[TopicPartition, int]],
    max_records: int,
    timeout_s: float,
    partly_read: log.PartlyRead,
) -> list[Record]:
    """:func:`log.read`, waiting up to ``timeout_s`` for a write when nothing is there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        token = db.version()
        records = await db.run(lambda conn: log.read(conn, positions, max_records, partly_read))
        remaining = deadline - loop.time()
        if records or remaining <= 0:
            return records
        await db.wait_for_change(token, remaining)


class LocalConsumer(LeasedConsumer):
    """A group member of the embedded broker; see :class:`LeasedConsumer`."""

    def __init__(
        self,
        broker: LocalBroker,
        db: Database,
        topics: Sequence[str],
        group: str,
        listener: RebalanceListener | None,
        *,
        offset_reset: OffsetReset,
    ) -> None:
        super().__init__(
            topics,
            group,
            listener,
            store=SqliteLeaseStore(db, broker.clock),
            owner=broker,
            offset_reset=offset_reset,
            ttl_s=broker.lease_ttl_s,
            heartbeat_s=broker.heartbeat_s,
            clock=broker.clock,
        )
        self.db = db
        self._rotation = 0
        self._partly_read: log.PartlyRead = {}

    async def _partitions(self) -> Sequence[TopicPartition]:
        topics = self.topics

        def run(conn: sqlite3.Connection) -> list[TopicPartition]:
            found: list[TopicPartition] = []
            for topic in topics:
                row = conn.execute(
                    "SELECT partitions FROM topics WHERE name = ?", (topic,)
                ).fetchone()
                if row is not None:
                    found.extend(TopicPartition(topic, p) for p in range(row[0]))
            return found

        return await self.db.run(run)

    async def _initial_positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        group, reset = self.group, self.offset_reset
        for tp in tps:
            self._partly_read.pop(tp, None)
        return await self.db.run(lambda conn: log.initial_positions(conn, group, tps, reset))

    async def _read(
        self, positions: Mapping[TopicPartition, int], max_records: int, timeout_s: float
    ) -> list[Record]:
        ordered = sorted(positions.items())
        start = self._rotation % len(ordered)
        self._rotation += 1
        ordered = ordered[start:] + ordered[:start]
        return await read_waiting(self.db, ordered, max_records, timeout_s, self._partly_read)

    async def _write_commit(
        self, through: Mapping[TopicPartition, int], epochs: Mapping[TopicPartition, int]
    ) -> None:
        group, member = self.group, self.member.member_id

        def run(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                log.commit_offsets(conn, group, member, through, epochs)

        await self.db.run(run, CommitError)
