"""How one stream becomes several processors (issue 13: ``group_by`` and joins).

A processor reads partitions that other workers may not own, so a stream whose key
changes (``group_by``) or that meets another stream by key (``join_stream``) has to
hop through an internal topic keyed by the new key: the records of one key then land
in one partition, read by one worker. Each hop ends the processor before it (its last
stage publishes to the internal topic) and starts another that reads the topic, in the
same App, with the same error handling: the user still writes one stream, and stats,
metrics and logs name each processor.

The Stream asks its :class:`Hops` (the App that made it) for both, so the stream
module never imports the App. The stage before a hop is a :func:`hop_sink`; the
event time of each record crosses in its value (:class:`TimedSerde` for
``group_by``), so windows and joins after the hop see the source's event time, not
the time of the hop.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from spate.errors import SerdeError
from spate.partitions import PartitionContext
from spate.record import Record, TopicPartition
from spate.serde import Serde, encode_key
from spate.streams.stages import Batch, Fail, Output, Stage, StageBuilder, append_checked
from spate.topic import Topic

if TYPE_CHECKING:
    from spate.streams.stream import Stream


class Hops(Protocol):
    """Registers internal topics and the processors that read them (the App)."""

    def internal_topic(
        self, stream: Stream[Any], kind: str, partitions: int, serde: Serde[Any]
    ) -> Topic[Any]:
        """The topic ``<app>-<stream>-<kind>``, created on start like any declared one."""
        ...

    def continue_in(self, upstream: Stream[Any], suffix: str, topic: Topic[Any]) -> Stream[Any]:
        """A new processor ``<upstream>.<suffix>`` (group ``<group>.<suffix>``) reading
        ``topic``, with ``upstream``'s error handling (retries, dead letters)."""
        ...


_TIME = struct.Struct(">q")


class TimedSerde:
    """A ``group_by`` topic's values: the source record's timestamp (ms, 8 bytes)
    before the value encoded with ``inner``. Publishing gives a record a new
    timestamp; the frame keeps the event time across the hop, and the processor after
    it puts it back on the records (:func:`restore_time`), as Kafka Streams does."""

    def __init__(self, inner: Serde[Any]) -> None:
        self.inner = inner
        self.name = f"timed-{inner.name}"

    def encode(self, value: tuple[int, Any]) -> bytes:
        return _TIME.pack(value[0]) + self.inner.encode(value[1])

    def decode(self, data: bytes) -> tuple[int, Any]:
        if len(data) < _TIME.size:
            raise SerdeError(
                f"a group_by topic value starts with its {_TIME.size}-byte event time; got "
                f"{len(data)} bytes: was it written by something other than spate?"
            )
        return _TIME.unpack_from(data)[0], self.inner.decode(data[_TIME.size :])


def hop_sink(
    topic: Topic[Any],
    key: Callable[[Any], object] | None,
    frame: Callable[[Record, Any], Any],
) -> StageBuilder:
    """The last stage before a hop: key each value by ``key(value)`` (or keep its key)
    and publish ``frame(source, value)`` to ``topic``."""
    name, encode = topic.name, topic.serde.encode

    def build(fail: Fail, partitions: Mapping[TopicPartition, PartitionContext]) -> Stage:
        def run(batch: Batch) -> list[Output]:
            outputs: list[Output] = []
            append = outputs.append
            for source, item_key, value in batch:
                try:
                    out_key = item_key if key is None else encode_key(key(value))
                    framed = frame(source, value)
                except Exception as exc:
                    fail(source, exc)
                    continue
                append_checked(append, name, encode, framed, out_key, source, fail)
            return outputs

        return Stage(f"to {name}", run, False)

    return build


def timed(source: Record, value: Any) -> tuple[int, Any]:
    """A ``group_by`` frame: the source's timestamp and the value."""
    return (source.timestamp_ms, value)


def retimed(record: Record, timestamp_ms: int) -> Record:
    """A copy of ``record`` with the event time it had before a hop."""
    return Record(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        record.headers,
        timestamp_ms,
    )


def restore_time(fail: Fail, partitions: Mapping[TopicPartition, PartitionContext]) -> Stage:
    """The first stage after a ``group_by`` hop: unframe each value and give its item
    the source timestamp the frame carried (for windows and joins downstream)."""

    def run(batch: Batch) -> Batch:
        return [(retimed(source, framed[0]), key, framed[1]) for source, key, framed in batch]

    return Stage("event_time", run, False)
