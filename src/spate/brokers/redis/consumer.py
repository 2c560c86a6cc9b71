"""The Redis consumer: the shared lease-based membership plus fenced stream reads.

Membership, rebalance callbacks and positions come from :class:`LeasedConsumer`; this
class supplies the storage hooks. The consumer remembers where each partition's next
read starts (``_cursor``) and where the runtime believes it is (``_expected``): when
they differ the runtime sought. Every fenced read sets the Redis group cursor to
``_cursor`` first, so a read whose reply was lost to a broken connection is repeated
rather than stranded.

One ``XREADGROUP`` per owned partition asks for up to ``max_records`` each, in one
pipeline; what exceeds ``max_records`` stays buffered for the next fetch (it is already
in the group's pending list, so a crash cannot lose it: the next owner claims it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from spate.brokers.base import OffsetReset, RebalanceListener
from spate.brokers.leased import LeasedConsumer
from spate.brokers.redis.leases import RedisLeaseStore
from spate.brokers.redis.streams import PartitionStreams, ReadRequest
from spate.errors import BrokerError, CommitError, TopicNotFoundError
from spate.record import Record, TopicPartition

if TYPE_CHECKING:
    from spate.brokers.redis.broker import RedisBroker


class RedisConsumer(LeasedConsumer):
    """A group member on Redis Streams; see :class:`LeasedConsumer`."""

    def __init__(
        self,
        broker: RedisBroker,
        topics: Sequence[str],
        group: str,
        listener: RebalanceListener | None,
        *,
        offset_reset: OffsetReset,
    ) -> None:
        options = broker.options
        super().__init__(
            topics,
            group,
            listener,
            store=RedisLeaseStore(broker.client),
            owner=broker,
            offset_reset=offset_reset,
            ttl_s=options.lease_ttl_s,
            heartbeat_s=options.heartbeat_s,
            clock=options.clock,
        )
        self._broker = broker
        self._streams = PartitionStreams(broker.client)
        self._cursor: dict[TopicPartition, int] = {}
        self._expected: dict[TopicPartition, int] = {}
        self._buffered: dict[TopicPartition, deque[Record]] = {}
        self._rotation = 0

    async def _partitions(self) -> Sequence[TopicPartition]:
        found: list[TopicPartition] = []
        for topic in self.topics:
            try:  # not the cached count: a topic deleted elsewhere must disappear here
                count = (await self._broker.describe_topic(topic)).partitions
            except TopicNotFoundError:
                continue
            found.extend(TopicPartition(topic, p) for p in range(count))
        return found

    async def _initial_positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        leases = {tp: epoch for tp in tps if (epoch := self.member.epoch(tp)) is not None}
        positions = await self._streams.takeover(
            self.group, self.member.member_id, leases, self.offset_reset
        )
        for tp, position in positions.items():
            self._cursor[tp] = self._expected[tp] = position
            self._buffered.pop(tp, None)
        return positions

    def _reconcile(self, positions: Mapping[TopicPartition, int]) -> None:
        """Forget partitions no longer owned; note seeks (position moved under us)."""
        for tp in [tp for tp in self._expected if tp not in positions]:
            del self._expected[tp]
            self._cursor.pop(tp, None)
            self._buffered.pop(tp, None)
        for tp, position in positions.items():
            if self._expected.get(tp) != position:
                self._expected[tp] = self._cursor[tp] = position
                self._buffered.pop(tp, None)

    def _take(self, order: Sequence[TopicPartition], max_records: int) -> list[Record]:
        out: list[Record] = []
        for tp in order:
            buffered = self._buffered.get(tp)
            if not buffered:
                continue
            took = 0
            while buffered and len(out) < max_records:
                out.append(buffered.popleft())
                took += 1
            if took:
                self._expected[tp] = out[-1].offset + 1
            if not buffered:
                del self._buffered[tp]
            if len(out) >= max_records:
                break
        return out

    async def _read(
        self, positions: Mapping[TopicPartition, int], max_records: int, timeout_s: float
    ) -> list[Record]:
        self._reconcile(positions)
        order = sorted(positions)
        start = self._rotation % len(order)
        self._rotation += 1
        order = order[start:] + order[:start]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            records = self._take(order, max_records)
            if records:
                return records
            await self._fill(order, max_records)
            records = self._take(order, max_records)
            remaining = deadline - loop.time()
            if records or remaining <= 0:
                return records
            await self._streams.wait(
                {tp: self._cursor[tp] for tp in order if tp in self._cursor}, remaining
            )

    async def _fill(self, order: Sequence[TopicPartition], count: int) -> None:
        """One pipelined, fenced XREADGROUP per owned partition into the buffers."""
        requests = []
        for tp in order:
            epoch = self.member.epoch(tp)
            if epoch is not None:
                requests.append(ReadRequest(tp, epoch, self._cursor[tp], count))
        if not requests:
            return
        records, _fenced = await self._streams.read(self.group, self.member.member_id, requests)
        for record in records:
            tp = record.topic_partition
            buffered = self._buffered.get(tp)
            if buffered is None:
                buffered = self._buffered[tp] = deque()
            buffered.append(record)
            self._cursor[tp] = record.offset + 1

    async def _write_commit(
        self, through: Mapping[TopicPartition, int], epochs: Mapping[TopicPartition, int]
    ) -> None:
        try:
            await self._streams.commit(
                self.group, {tp: (offset, epochs[tp]) for tp, offset in through.items()}
            )
        except BrokerError as exc:
            raise CommitError(f"group {self.group!r}: {exc}") from exc
