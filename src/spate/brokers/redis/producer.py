"""The Redis producer: ``send`` buffers, ``flush`` appends with one pipelined round trip.

Each partition's share of the buffer goes to the publish script in chunks, which
assigns dense offsets and appends atomically. A record with a ``dedup_id`` is appended
only if ``SET NX`` of that id succeeds in the same script, so a re-published output
(same deterministic id) is dropped for as long as the dedup window remembers the id.
The script returns how many it dropped; they are counted in ``duplicates``, so a drop
is never silent (a pipeline repeated after a lost connection counts its own copies).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from spate.brokers.base import Producer
from spate.brokers.redis import keys
from spate.brokers.redis.client import RedisClient
from spate.brokers.redis.errors import to_spate_error
from spate.brokers.redis.scripts import PUBLISH_SCRIPT
from spate.brokers.redis.streams import encode_headers
from spate.clock import Clock
from spate.errors import ClosedError, PublishError, SpateError, TopicNotFoundError
from spate.partitioner import Partitioner
from spate.record import Headers, TopicPartition

_CHUNK = 500
"""Records per script call: large enough to amortise the call, small enough not to
hold the single-threaded server for long."""

_length = struct.Struct(">I").pack


def pack_records(chunk: list[_Pending], now: bytes) -> bytes:
    """The records of one publish-script call as one argument (format: scripts.PUBLISH)."""
    parts: list[bytes] = []
    add = parts.extend
    for _topic, _partition, key, value, headers, ts, dedup in chunk:
        dedup_bytes = dedup.encode() if dedup else b""
        key_bytes = b"" if key is None else key
        ts_bytes = now if ts is None else b"%d" % ts
        header_bytes = encode_headers(headers)
        add(
            (
                _length(len(dedup_bytes)),
                dedup_bytes,
                b"\x00" if key is None else b"\x01",
                _length(len(key_bytes)),
                key_bytes,
                _length(len(value)),
                value,
                _length(len(ts_bytes)),
                ts_bytes,
                _length(len(header_bytes)),
                header_bytes,
            )
        )
    return b"".join(parts)


# (topic, partition, key, value, headers, timestamp_ms, dedup_id)
_Pending = tuple[str, int | None, bytes | None, bytes, Headers, int | None, str | None]


class RedisProducer(Producer):
    """Buffers records and publishes them through the publish script."""

    def __init__(
        self,
        client: RedisClient,
        partitions_of: Callable[[str], Awaitable[int]],
        forget_topic: Callable[[str], None],
        *,
        dedup_window_ms: int,
        clock: Clock,
    ) -> None:
        self._client = client
        self._partitions_of = partitions_of
        self._forget_topic = forget_topic
        self._dedup_window_ms = dedup_window_ms
        self._clock = clock
        self._partitioner = Partitioner()
        self._buffer: list[_Pending] = []
        self._closed = False
        self._flush_lock = asyncio.Lock()

    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
        dedup_id: str | None = None,
    ) -> None:
        if self._closed:
            raise ClosedError("send on a closed Redis producer")
        self._buffer.append((topic, partition, key, value, headers, timestamp_ms, dedup_id))

    async def flush(self, timeout_s: float | None = None) -> None:
        if self._closed:
            raise ClosedError("flush on a closed Redis producer")
        async with self._flush_lock:
            pending, self._buffer = self._buffer, []
            if not pending:
                return
            try:
                async with asyncio.timeout(timeout_s):
                    await self._publish(pending)
            except TimeoutError as exc:
                raise PublishError(
                    f"{len(pending)} records were not acknowledged within {timeout_s} s"
                ) from exc

    async def _publish(self, pending: list[_Pending]) -> None:
        batches = await self._by_partition(pending)
        calls: list[tuple[TopicPartition, list[_Pending]]] = []
        for tp, records in batches.items():
            calls.extend((tp, records[i : i + _CHUNK]) for i in range(0, len(records), _CHUNK))
        now = b"%d" % self._clock.time_ms()
        packed = [(tp, pack_records(chunk, now)) for tp, chunk in calls]
        window = self._dedup_window_ms

        def build(pipe: Any) -> None:
            for tp, blob in packed:
                PUBLISH_SCRIPT.queue(
                    pipe, [keys.stream_of(tp)], [keys.dedup_prefix(tp), window, blob]
                )

        try:
            results = await self._client.run(build, "publishing")
        except SpateError as exc:
            raise PublishError(f"publishing {len(pending)} records failed: {exc}") from exc
        self.duplicates += sum(r[2] for r in results if not isinstance(r, BaseException))
        for (tp, chunk), result in zip(calls, results, strict=True):
            if isinstance(result, BaseException):
                error = to_spate_error(result, "publishing")
                if isinstance(error, TopicNotFoundError):
                    self._forget_topic(tp.topic)
                raise PublishError(
                    f"publishing to topic {tp.topic!r} partition {tp.partition} failed "
                    f"(first key {chunk[0][2]!r}): {error}"
                ) from result

    async def _by_partition(self, pending: list[_Pending]) -> dict[TopicPartition, list[_Pending]]:
        counts: dict[str, int] = {}
        out: dict[TopicPartition, list[_Pending]] = {}
        for record in pending:
            topic, partition, key = record[0], record[1], record[2]
            count = counts.get(topic)
            if count is None:
                try:
                    count = counts[topic] = await self._partitions_of(topic)
                except TopicNotFoundError as exc:
                    raise PublishError(
                        f"cannot publish to topic {topic!r} (key {key!r}): it does not exist; "
                        f"create it with `spate topics create {topic}`"
                    ) from exc
            if partition is None:
                partition = self._partitioner.choose(topic, key, count, dedup_id=record[6])
            elif not 0 <= partition < count:
                raise PublishError(
                    f"cannot publish to topic {topic!r} partition {partition} (key {key!r}): "
                    f"the topic has {count} partitions"
                )
            out.setdefault(TopicPartition(topic, partition), []).append(record)
        return out

    async def close(self) -> None:
        """Flush what is buffered, then refuse further use."""
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self._closed = True
