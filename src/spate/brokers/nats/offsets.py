"""A group's committed offsets on JetStream: the ack floors of its durable consumers.

Each owner of a partition reads it through a durable pull consumer of its own,
``<group>_<epoch>_<n>`` on the partition's stream, tagged with the group and the lease
epoch in the consumer's metadata. With ``AckPolicy.ALL`` the consumer's ack floor is
exactly "everything through here is done", so the group's committed position in a
partition is the ack floor of its newest consumer there (stream sequence ``s`` is
offset ``s - 1``, so the floor *is* the next offset to read). A new owner creates its
consumer at that position and deletes the older ones, which also cuts a paused
previous owner (a zombie) off from the partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from spate.brokers.base import PartitionLag
from spate.brokers.nats.admin import STREAM_PREFIX, TopicAdmin, stream_name
from spate.brokers.nats.errors import STREAM_NOT_FOUND, api_code, spate_errors
from spate.errors import BrokerError
from spate.record import TopicPartition

GROUP_META = "spate.group"
EPOCH_META = "spate.epoch"
SERIAL_META = "spate.serial"
START_META = "spate.start"
"""The offset the consumer was created at."""
INHERITED_META = "spate.inherited"
""""1" when that start was a committed position (a takeover or a seek after commits),
"0" when it came from ``offset_reset``: then an ack floor still at the start means
the group has committed nothing in this partition."""


def committed_position(info: ConsumerInfo) -> int | None:
    """The next offset to read per this consumer, or None if nothing was committed."""
    floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
    meta = (info.config.metadata or {}) if info.config else {}
    if meta.get(INHERITED_META) == "0" and str(floor) == meta.get(START_META):
        return None
    return floor


async def _all_consumers(js: JetStreamContext, stream: str) -> list[ConsumerInfo]:
    """Every consumer of ``stream``, page by page (the server lists 256 at a time)."""
    found: list[ConsumerInfo] = []
    while True:
        with spate_errors(f"list the consumers of stream {stream}"):
            page = await js.consumers_info(stream, offset=len(found))
        found.extend(page)
        if not page:
            return found


async def _all_stream_names(js: JetStreamContext) -> list[str]:
    names: list[str] = []
    seen = 0
    while True:
        with spate_errors("list streams"):
            page = await js.streams_info(offset=seen)
        seen += len(page)
        names.extend(name for s in page if (name := s.config.name))
        if not page:
            return names


def _rank(info: ConsumerInfo) -> tuple[int, int]:
    meta = (info.config.metadata or {}) if info.config else {}
    return int(meta.get(EPOCH_META, 0)), int(meta.get(SERIAL_META, 0))


async def group_consumers(js: JetStreamContext, stream: str, group: str) -> list[ConsumerInfo]:
    """The group's consumers on ``stream``, newest (highest epoch) last."""
    try:
        infos = await _all_consumers(js, stream)
    except BrokerError as exc:
        if api_code(exc.__cause__ or exc) == STREAM_NOT_FOUND:
            return []
        raise
    mine = [
        info
        for info in infos
        if info.config is not None and (info.config.metadata or {}).get(GROUP_META) == group
    ]
    return sorted(mine, key=_rank)


async def committed(js: JetStreamContext, tp: TopicPartition, group: str) -> int | None:
    """The next offset ``group`` will read in ``tp``, or None if it never read it."""
    consumers = await group_consumers(js, stream_name(tp.topic, tp.partition), group)
    return committed_position(consumers[-1]) if consumers else None


async def partition_lag(
    js: JetStreamContext, admin: TopicAdmin, tp: TopicPartition, group: str
) -> PartitionLag:
    position, (first, end) = await asyncio.gather(committed(js, tp, group), admin.end_offset(tp))
    base = first if position is None else max(position, first)
    return PartitionLag(
        topic=tp.topic,
        partition=tp.partition,
        committed=position,
        end_offset=end,
        lag=max(end - base, 0),
    )


async def lag(
    js: JetStreamContext, admin: TopicAdmin, group: str, topics: Sequence[str] | None
) -> list[PartitionLag]:
    """Per-partition lag; with ``topics=None`` every topic the group committed on."""
    names = sorted(set(topics)) if topics is not None else [t.name for t in await admin.list()]
    tps = [TopicPartition(n, p) for n in names for p in range(await admin.partitions(n))]
    rows = await asyncio.gather(*(partition_lag(js, admin, tp, group) for tp in tps))
    if topics is None:
        used = {row.topic for row in rows if row.committed is not None}
        return [row for row in rows if row.topic in used]
    return list(rows)


async def groups(js: JetStreamContext) -> set[str]:
    """Every group that has a consumer on any spate stream."""
    found: set[str] = set()
    with spate_errors("list groups"):
        streams = await js.streams_info()
    spate_streams = [
        s.config.name for s in streams if s.config.name and s.config.name.startswith(STREAM_PREFIX)
    ]
    per_stream = await asyncio.gather(*(_consumer_groups(js, name) for name in spate_streams))
    for names in per_stream:
        found.update(names)
    return found


async def _consumer_groups(js: JetStreamContext, stream: str) -> set[str]:
    try:
        infos = await _all_consumers(js, stream)
    except BrokerError as exc:
        if api_code(exc.__cause__ or exc) == STREAM_NOT_FOUND:
            return set()
        raise
    return {
        meta[GROUP_META]
        for info in infos
        if info.config is not None and GROUP_META in (meta := info.config.metadata or {})
    }
