"""Per-partition stream operations: takeover, fenced reads, fenced commits, lag, trimming.

These are the broker-specific pieces a lease-based consumer needs; each call works on
many partitions in one pipelined round trip, never one record at a time.

A group's reads go through the Redis consumer group of the same name on each partition
stream (``XREADGROUP … >``), so Redis keeps the delivered-but-unacknowledged entries in
its pending list. Reads and commits run in scripts that first compare the caller's lease
epoch with the partition's current one: a member that lost a partition can neither move
the group cursor nor acknowledge entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from spate.brokers.base import OffsetReset, PartitionLag
from spate.brokers.redis import keys
from spate.brokers.redis.client import RedisClient, raise_first
from spate.brokers.redis.errors import to_spate_error
from spate.brokers.redis.scripts import (
    COMMIT_SCRIPT,
    RANGE_SCRIPT,
    READ_SCRIPT,
    TAKEOVER_SCRIPT,
    TRIM_SCRIPT,
)
from spate.errors import ConfigError, FencedError
from spate.record import Headers, Record, TopicPartition

_MAX_BLOCK_S = 1.0
"""Longest single XREAD BLOCK: well below redis-py's default 5 s socket timeout."""

_headers_decoder = msgspec.msgpack.Decoder(list[tuple[str, bytes]])
_headers_encoder = msgspec.msgpack.Encoder()


def encode_headers(headers: Headers) -> bytes:
    """Headers as one msgpack blob (b"" for none, so most records carry no field)."""
    return _headers_encoder.encode(list(headers)) if headers else b""


def decode_entries(topic: str, partition: int, entries: Sequence[Any]) -> list[Record]:
    """Records from XREADGROUP/XRANGE entries written by the publish script.

    Fields are written in a fixed order (``v``, ``t``, then ``k`` and ``h`` when present),
    so decoding reads them by position instead of building a dict per record.
    """
    out: list[Record] = []
    append = out.append
    for entry_id, fields in entries:
        key: bytes | None = None
        headers: Headers = ()
        for i in range(4, len(fields), 2):
            if fields[i] == b"k":
                key = fields[i + 1]
            else:
                headers = tuple(_headers_decoder.decode(fields[i + 1]))
        append(Record(topic, partition, int(entry_id[2:]), key, fields[1], headers, int(fields[3])))
    return out


def _bounds_of(info: Mapping[str, Any]) -> tuple[int, int]:
    """(first retained offset, end offset) from a stream's XINFO STREAM reply."""
    end = keys.end_offset_of(info["last-generated-id"])
    first_entry = info.get("first-entry")
    return (keys.offset_of(first_entry[0]) if first_entry else end), end


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read up to ``count`` entries of ``tp`` from offset ``start`` on, as lease holder
    at ``epoch``. The group cursor is set to ``start`` first, which makes a read safe to
    repeat and a seek free."""

    tp: TopicPartition
    epoch: int
    start: int
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RetentionPolicy:
    """A topic's retention, from its config keys (see docs/redis.md)."""

    ms: int | None = None
    records: int | None = None
    bytes: int | None = None
    allow_loss: bool = False

    @classmethod
    def from_config(cls, topic: str, config: Mapping[str, str]) -> RetentionPolicy:
        def number(name: str) -> int | None:
            raw = config.get(name)
            if raw is None or raw in ("", "-1"):
                return None
            if not raw.isdigit():
                raise ConfigError(
                    f"topic {topic!r}: config {name}={raw!r} must be a whole number "
                    "(or -1 for no limit)"
                )
            return int(raw)

        return cls(
            ms=number("retention.ms"),
            records=number("retention.records"),
            bytes=number("retention.bytes"),
            allow_loss=config.get("retention.allow.loss", "false").lower() in ("true", "1"),
        )

    @property
    def active(self) -> bool:
        return self.ms is not None or self.records is not None or self.bytes is not None


@dataclass(frozen=True, slots=True)
class TrimResult:
    first_offset: int
    removed: int
    lost: int


class PartitionStreams:
    """Stream primitives for one Redis connection."""

    def __init__(self, client: RedisClient) -> None:
        self._client = client

    async def takeover(
        self,
        group: str,
        consumer: str,
        leases: Mapping[TopicPartition, int],
        offset_reset: OffsetReset,
    ) -> dict[TopicPartition, int]:
        """Prepare newly acquired partitions; return the offset each read starts from.

        Per partition, atomically with the epoch check: create the Redis group if new,
        claim every pending entry of any previous owner for ``consumer`` (XAUTOCLAIM),
        and set the group cursor to the committed position, so the claimed entries are
        delivered again, in order, before newer ones.
        """
        order = list(leases.items())
        what = f"taking over partitions for group {group!r}"
        results = await self._client.run(
            lambda pipe: [
                TAKEOVER_SCRIPT.queue(
                    pipe,
                    [keys.stream_of(tp), keys.epochs(tp), keys.committed(tp)],
                    [group, epoch, consumer, offset_reset],
                )
                for tp, epoch in order
            ],
            what,
        )
        raise_first(results, what)
        return {tp: int(pos) for (tp, _), pos in zip(order, results, strict=True)}

    async def read(
        self, group: str, consumer: str, requests: Sequence[ReadRequest]
    ) -> tuple[list[Record], set[TopicPartition]]:
        """New entries of each partition (fenced); also the partitions found fenced."""
        what = f"reading for group {group!r}"
        results = await self._client.run(
            lambda pipe: [
                READ_SCRIPT.queue(
                    pipe,
                    [keys.stream_of(r.tp), keys.epochs(r.tp)],
                    [group, r.epoch, consumer, r.count, keys.id_before(r.start)],
                )
                for r in requests
            ],
            what,
        )
        records: list[Record] = []
        fenced: set[TopicPartition] = set()
        for request, result in zip(requests, results, strict=True):
            if isinstance(result, BaseException):
                error = to_spate_error(result, what)
                if isinstance(error, FencedError):
                    fenced.add(request.tp)
                    continue
                raise error from result
            if result:
                tp = request.tp
                records.extend(decode_entries(tp.topic, tp.partition, result[0][1]))
        return records, fenced

    async def wait(self, positions: Mapping[TopicPartition, int], timeout_s: float) -> bool:
        """Block until any partition has an entry at or after its position, or timeout.

        A plain XREAD (no group) only watches: it moves no cursor, so it needs no fence.
        """
        if not positions:
            await asyncio.sleep(timeout_s)
            return False
        streams: dict[Any, Any] = {
            keys.stream_of(tp): keys.id_before(pos) for tp, pos in positions.items()
        }
        block_ms = max(1, int(min(timeout_s, _MAX_BLOCK_S) * 1000))
        what = "waiting for records"
        found = await self._client.run(
            lambda pipe: pipe.xread(streams, count=1, block=block_ms), what
        )
        raise_first(found, what)
        return bool(found[0])

    async def commit(self, group: str, through: Mapping[TopicPartition, tuple[int, int]]) -> None:
        """Acknowledge every entry up to ``through[tp][0]`` at epoch ``through[tp][1]``.

        One script for all partitions: if any epoch is stale nothing is committed and
        FencedError names the partitions another member owns now.
        """
        order = list(through.items())
        topics = sorted({tp.topic for tp in through})
        what = f"committing offsets of group {group!r}"
        script_keys: list[str] = []
        args: list[Any] = [group]
        for tp, (offset, epoch) in order:
            script_keys += (keys.stream_of(tp), keys.epochs(tp), keys.committed(tp))
            args += (epoch, offset)

        def build(pipe: Any) -> None:
            COMMIT_SCRIPT.queue(pipe, script_keys, args)
            pipe.sadd(keys.group_topics(group), *topics)
            pipe.sadd(keys.GROUPS, group)

        raise_first(await self._client.run(build, what), what)

    async def lag(self, group: str, tps: Sequence[TopicPartition]) -> list[PartitionLag]:
        """Lag per partition from spate's dense offsets: the same on Redis 6.2 and 7.x.

        Without a commit the group would start at the oldest retained record, so the lag
        counts every retained record.
        """
        what = f"computing lag of group {group!r}"

        def build(pipe: Any) -> None:
            for tp in tps:
                pipe.hget(keys.committed(tp), group)
                pipe.xinfo_stream(keys.stream_of(tp))

        results = await self._client.run(build, what)
        raise_first(results, what)
        out: list[PartitionLag] = []
        for index, tp in enumerate(tps):
            raw_committed, info = results[2 * index], results[2 * index + 1]
            first, end = _bounds_of(info)
            committed = None if raw_committed is None else int(raw_committed)
            start = first if committed is None else max(committed, first)
            out.append(
                PartitionLag(
                    topic=tp.topic,
                    partition=tp.partition,
                    committed=committed,
                    end_offset=end,
                    lag=max(0, end - start),
                )
            )
        return out

    async def bounds(self, tp: TopicPartition) -> tuple[int, int]:
        """(first retained offset, offset the next append gets) of one partition."""
        what = f"reading the bounds of {tp.topic}[{tp.partition}]"
        results = await self._client.run(lambda pipe: pipe.xinfo_stream(keys.stream_of(tp)), what)
        raise_first(results, what)
        return _bounds_of(results[0])

    async def range(self, tp: TopicPartition, start: int, count: int) -> list[Record]:
        """Up to ``count`` records of ``tp`` from offset ``start`` on (XRANGE: no group)."""
        what = f"reading {tp.topic}[{tp.partition}]"
        results = await self._client.run(
            lambda pipe: RANGE_SCRIPT.queue(pipe, [keys.stream_of(tp)], [f"1-{start}", count]),
            what,
        )
        raise_first(results, what)
        return decode_entries(tp.topic, tp.partition, results[0])

    async def trim(
        self, tps: Sequence[TopicPartition], policy: RetentionPolicy, now_ms: int
    ) -> list[TrimResult]:
        """Apply ``policy`` to each partition; see the TRIM script for the rules."""

        def arg(value: int | None) -> str:
            return "" if value is None else str(value)

        what = "enforcing retention"
        results = await self._client.run(
            lambda pipe: [
                TRIM_SCRIPT.queue(
                    pipe,
                    [keys.stream_of(tp), keys.committed(tp), keys.stats(tp)],
                    [
                        arg(policy.ms),
                        now_ms,
                        arg(policy.records),
                        arg(policy.bytes),
                        "1" if policy.allow_loss else "0",
                    ],
                )
                for tp in tps
            ],
            what,
        )
        raise_first(results, what)
        return [TrimResult(int(a), int(b), int(c)) for a, b, c in results]
