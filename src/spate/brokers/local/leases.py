"""Group membership and partition leases in the broker's SQLite tables.

Each method is one write transaction, so processes sharing the directory see a
consistent view. Lease rows are never deleted when released: the row keeps its
epoch, and the next owner takes ``epoch + 1``, so epochs only grow.
Deadlines are wall-clock milliseconds from the broker's clock, because the members
are different processes on the same machine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from spate.brokers.local.storage import Database, write_transaction
from spate.clock import Clock
from spate.errors import CoordinationError
from spate.record import TopicPartition


class SqliteLeaseStore:
    """:class:`spate.coordination.LeaseStore` on the embedded broker's database."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def heartbeat(self, group: str, member: str, ttl_s: float) -> list[str]:
        now = self._clock.time_ms()
        expires = now + int(ttl_s * 1000)

        def run(conn: sqlite3.Connection) -> list[str]:
            with write_transaction(conn):
                conn.execute(
                    "INSERT INTO members (grp, member, expires_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT (grp, member) DO UPDATE SET expires_ms = excluded.expires_ms",
                    (group, member, expires),
                )
                conn.execute("DELETE FROM members WHERE grp = ? AND expires_ms < ?", (group, now))
                rows = conn.execute(
                    "SELECT member FROM members WHERE grp = ? ORDER BY member", (group,)
                )
                return [row[0] for row in rows]

        return await self._db.run(run, CoordinationError)

    async def acquire(
        self, group: str, tp: TopicPartition, member: str, ttl_s: float
    ) -> int | None:
        now = self._clock.time_ms()
        expires = now + int(ttl_s * 1000)

        def run(conn: sqlite3.Connection) -> int | None:
            with write_transaction(conn):
                row = conn.execute(
                    "SELECT member, epoch, expires_ms FROM leases "
                    "WHERE grp = ? AND topic = ? AND partition = ?",
                    (group, tp.topic, tp.partition),
                ).fetchone()
                if row is None:
                    epoch = 1
                elif row[0] is None or row[0] == member or row[2] < now:
                    epoch = row[1] + 1
                else:
                    return None
                conn.execute(
                    "INSERT INTO leases (grp, topic, partition, member, epoch, expires_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (grp, topic, partition) DO UPDATE "
                    "SET member = excluded.member, epoch = excluded.epoch, "
                    "expires_ms = excluded.expires_ms",
                    (group, tp.topic, tp.partition, member, epoch, expires),
                )
                return epoch

        return await self._db.run(run, CoordinationError)

    async def renew(
        self, group: str, leases: Mapping[TopicPartition, int], member: str, ttl_s: float
    ) -> set[TopicPartition]:
        expires = self._clock.time_ms() + int(ttl_s * 1000)

        def run(conn: sqlite3.Connection) -> set[TopicPartition]:
            held: set[TopicPartition] = set()
            with write_transaction(conn):
                for tp, epoch in leases.items():
                    cursor = conn.execute(
                        "UPDATE leases SET expires_ms = ? WHERE grp = ? AND topic = ? "
                        "AND partition = ? AND member = ? AND epoch = ?",
                        (expires, group, tp.topic, tp.partition, member, epoch),
                    )
                    if cursor.rowcount:
                        held.add(tp)
            return held

        return await self._db.run(run, CoordinationError)

    async def release(self, group: str, leases: Mapping[TopicPartition, int], member: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                conn.executemany(
                    "UPDATE leases SET member = NULL, expires_ms = 0 WHERE grp = ? AND topic = ? "
                    "AND partition = ? AND member = ? AND epoch = ?",
                    [(group, tp.topic, tp.partition, member, e) for tp, e in leases.items()],
                )

        await self._db.run(run, CoordinationError)
        self._db.notify()

    async def leave(self, group: str, member: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                conn.execute("DELETE FROM members WHERE grp = ? AND member = ?", (group, member))

        await self._db.run(run, CoordinationError)
        self._db.notify()
