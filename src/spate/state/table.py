"""A table: the latest value per key of a topic, kept by every worker (issue 13).

``app.table(topic)`` makes one. A table is *global*: every worker process reads every
partition of the topic, from the first retained record, with a
:class:`~spate.brokers.base.Reader` (no group, no commits), then follows it. That is
the one co-partitioning choice that is correct on every broker without asking
anything of the stream that joins it: whatever partition a stream record comes from,
the row for its key is here. It costs what a Kafka Streams ``GlobalKTable`` costs:
each worker holds the whole table in memory and reads the whole topic on start.

The table runs as a side service of the run (:class:`~spate.runtime.lifecycle.Service`):
its ``start`` reads every partition up to the end the broker reports then, so the
processors — which start after the services — never see a half-restored table; then
one task per partition follows what is appended. A record whose value decodes to None
(or is empty: a Kafka tombstone) deletes its key; a record without a key is skipped.

A join reads ``rows`` while the follower writes it; both run between awaits of the
same event loop or, for a plain join in the user thread, one dict operation at a
time, so a join sees each key's value as of some moment of the batch, never a torn one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from spate.brokers.base import Broker, Reader
from spate.errors import SpateError
from spate.record import Record
from spate.serde import encode_key
from spate.topic import Topic

if TYPE_CHECKING:
    from spate.runtime.lifecycle import ServiceContext

T = TypeVar("T")

log = logging.getLogger("spate.state")

FETCH_RECORDS = 1000
FOLLOW_WAIT_S = 0.5
RESTORE_TIMEOUT_S = 300.0
RETRY_AFTER_S = 1.0
"""How long a follower waits before it reads again after a broker error."""


class Table(Generic[T]):
    """The latest value per key of ``topic``, restored on start and followed while
    the App runs. Read it with ``table.get(key)`` or join a stream with it
    (:meth:`spate.streams.stream.Stream.join`)."""

    def __init__(self, topic: Topic[T], app_name: str) -> None:
        self.topic = topic
        self.app_name = app_name
        self.rows: dict[bytes, T] = {}
        """Latest value per encoded key: the same dict for the table's whole life."""
        self._readers: list[Reader] = []
        self._positions: list[int] = []
        """The next offset to apply per partition (kept here: a reader made again
        after an error has none until it starts)."""
        self._tasks: list[asyncio.Task[None]] = []
        self.skipped = 0
        """Records not applied: no key, or a value that does not decode."""
        self.restored = False
        """True from the end of the restore on start until the table stops."""

    @property
    def name(self) -> str:
        return self.topic.name

    def __repr__(self) -> str:
        return f"<Table {self.name!r} rows={len(self.rows)}>"

    def get(self, key: Any, default: Any = None) -> Any:
        """The latest value for ``key`` (any key type a record key can be), else ``default``."""
        return self.rows.get(encode_key(key) or b"", default)

    def __contains__(self, key: object) -> bool:
        return (encode_key(key) or b"") in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def items(self) -> Iterator[tuple[bytes, T]]:
        """Every (encoded key, value) now."""
        return iter(list(self.rows.items()))

    # --- the service --------------------------------------------------------------------

    async def start(self, context: ServiceContext) -> None:
        """Read the whole topic up to its end now, then follow it in the background."""
        broker = context.broker
        self.rows.clear()
        info = await broker.describe_topic(self.name)
        self._readers = [broker.reader(self.name, p, "earliest") for p in range(info.partitions)]
        restored = 0
        for reader in self._readers:
            await reader.start()
            records = await reader.read_to_end(RESTORE_TIMEOUT_S)
            self.apply(records)
            restored += len(records)
        self._positions = [reader.position for reader in self._readers]
        self.restored = True
        log.info(
            "event=table_restored app=%s table=%s partitions=%d records=%d rows=%d skipped=%d",
            self.app_name,
            self.name,
            info.partitions,
            restored,
            len(self.rows),
            self.skipped,
        )
        self._tasks = [
            asyncio.create_task(self._follow(broker, i), name=f"spate:table:{self.name}[{i}]")
            for i in range(len(self._readers))
        ]

    async def stop(self) -> None:
        self.restored = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for reader in self._readers:
            await reader.close()
        self._readers = []

    async def behind(self) -> int:
        """Records appended to the topic that the table has not applied yet (once
        :attr:`restored`)."""
        total = 0
        for reader, position in zip(self._readers, self._positions, strict=True):
            total += max(0, (await reader.bounds())[1] - position)
        return total

    async def _follow(self, broker: Broker, index: int) -> None:
        """Apply what partition ``index`` gets; after a broker error, read on from the
        same position with a new reader once the broker answers again."""
        while True:
            reader = self._readers[index]
            try:
                self.apply(await reader.fetch(FETCH_RECORDS, FOLLOW_WAIT_S))
                self._positions[index] = reader.position
            except SpateError as exc:
                log.warning(
                    "event=table_follow_failed app=%s table=%s partition=%d error=%s: %s",
                    self.app_name,
                    self.name,
                    index,
                    type(exc).__name__,
                    exc,
                )
                await asyncio.sleep(RETRY_AFTER_S)
                with contextlib.suppress(SpateError):
                    await reader.close()
                self._readers[index] = broker.reader(self.name, index, self._positions[index])

    def apply(self, records: list[Record]) -> None:
        """Upsert (or delete, for a None or empty value) each record's key, in order."""
        rows, decode = self.rows, self.topic.serde.decode
        for record in records:
            key = record.key
            if key is None:
                self.skipped += 1
                continue
            try:
                value = decode(record.value) if record.value else None
            except Exception:
                self.skipped += 1
                continue
            if value is None:
                rows.pop(key, None)
            else:
                rows[key] = value
