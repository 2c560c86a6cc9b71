"""Stream-table and windowed stream-stream joins (issue 13, docs/joins.md).

**Stream-table** (:meth:`Stream.join <spate.streams.stream.Stream.join>`): each value
meets its key's current row of a :class:`~spate.state.table.Table`. The table is
global (every worker holds all of it), so the stream needs no re-partitioning; the
stage is one loop over the batch with one dict lookup per record and no ``await``.

**Windowed stream-stream** (:meth:`Stream.join_stream
<spate.streams.stream.Stream.join_stream>`): both sides must meet in one partition,
so each side's processor ends in a hop (:mod:`spate.streams.hops`) that keys its
values by the join key and publishes them to one internal topic, each value framed
as (side, event time, value) by :class:`JoinSerde` (the event time travels in the
value: a hop gives the record a new timestamp; an ``event_time`` extractor is applied
there, to each side's values). The processor reading that topic runs a
:class:`JoinOperator`, an operator over event time like a window
(:mod:`spate.streams.eventtime`: per-partition watermark, grace, idle timeout, late
records counted and dropped or dead-lettered): per partition it buffers both sides by
key and emits a pair (with the later of its two event times) as soon as its second
half arrives within the window; a left join also emits a left value that met nobody
once the partition's watermark closes its window. Every buffered value, and the
watermark, is in the stage's store (``join``) too, so the buffers are rebuilt from it.
"""

from __future__ import annotations

import heapq
import itertools
import operator
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from spate.errors import ConfigError, SerdeError
from spate.partitions import PartitionContext
from spate.record import Record, TopicPartition
from spate.serde import Serde, encode_key
from spate.state.store import Store
from spate.state.table import Table
from spate.streams.eventtime import EventTime, EventTimeOperator, Item, Watermark, watermark
from spate.streams.hops import retimed
from spate.streams.stages import (
    Batch,
    Fail,
    Stage,
    StageBuilder,
    event_time_stage,
    is_async_callable,
)

HOW = ("inner", "left")
LEFT, RIGHT = 0, 1
STORE = "join"
_FRAME = struct.Struct(">Bq")
"""A join topic value's header: side (0 left, 1 right), event time in ms."""
Frame = tuple[int, int, Any]
"""A join topic value: (side, event time ms, value)."""


def _pair(left: Any, right: Any) -> tuple[Any, Any]:
    """The default ``merge``: both values, as a tuple (a JSON array of two)."""
    return (left, right)


def _checked_function(stream: str, operator: str, field_name: str, fn: object) -> None:
    if fn is None:
        return
    if not callable(fn):
        raise ConfigError(f"stream {stream!r}: .{operator}({field_name}=...) must be a function")
    if is_async_callable(fn):
        raise ConfigError(
            f"stream {stream!r}: .{operator}({field_name}=...) must be a plain function, not "
            "async: a join runs per batch, with no await per record"
        )


def _checked_how(stream: str, operator: str, how: object) -> str:
    if how not in HOW:
        raise ConfigError(f"stream {stream!r}: .{operator}(how={how!r}) must be 'inner' or 'left'")
    return str(how)


# --- stream-table --------------------------------------------------------------------


def table_join(
    stream: str,
    table: object,
    how: object,
    on: Callable[[Any], object] | None,
    merge: Callable[[Any, Any], Any] | None,
) -> StageBuilder:
    """The stage of ``stream.join(table, ...)``, checked now (at declaration)."""
    if not isinstance(table, Table):
        raise ConfigError(
            f"stream {stream!r}: .join() needs a table from app.table(...), got {table!r}"
        )
    inner = _checked_how(stream, "join", how) == "inner"
    _checked_function(stream, "join", "on", on)
    _checked_function(stream, "join", "merge", merge)
    rows = table.rows
    combine = merge or _pair

    def build(fail: Fail, partitions: Mapping[TopicPartition, PartitionContext]) -> Stage:
        def run(batch: Batch) -> Batch:
            out: Batch = []
            append = out.append
            get = rows.get
            for source, key, value in batch:
                try:
                    row = get((key if on is None else encode_key(on(value))) or b"")
                    if row is None and inner:
                        continue
                    append((source, key, combine(value, row)))
                except Exception as exc:
                    fail(source, exc)
            return out

        return Stage(f"join {table.name}", run, False)

    return build


# --- stream-stream: the hop ------------------------------------------------------------


class JoinSerde:
    """A join topic's values: (side, event time ms, value), each side's value encoded
    with its own serde behind a 9-byte header."""

    name = "join"

    def __init__(self, left: Serde[Any], right: Serde[Any]) -> None:
        self.sides = (left, right)

    def encode(self, value: Frame) -> bytes:
        side, time_ms, inner = value
        return _FRAME.pack(side, time_ms) + self.sides[side].encode(inner)

    def decode(self, data: bytes) -> Frame:
        if len(data) < _FRAME.size or data[0] > RIGHT:
            raise SerdeError(
                f"a join topic value needs a {_FRAME.size}-byte (side, time) header; "
                f"got {len(data)} bytes: was it written by something other than spate?"
            )
        side, time_ms = _FRAME.unpack_from(data)
        return side, time_ms, self.sides[side].decode(data[_FRAME.size :])


# --- stream-stream: the window ---------------------------------------------------------


def seconds(stream: str, field_name: str, duration: object) -> float:
    """A ``join_stream`` duration (seconds >= 0, or a timedelta) in seconds."""
    if isinstance(duration, timedelta):
        duration = duration.total_seconds()
    if isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0:
        raise ConfigError(
            f"stream {stream!r}: .join_stream({field_name}={duration!r}) must be seconds >= 0 "
            "or a timedelta"
        )
    return float(duration)


@dataclass(frozen=True, slots=True)
class WindowJoin:
    """A checked ``join_stream``: the window in ms, the kind, the merge and the event
    time (grace, extractor, idle timeout, what to do with late records)."""

    stream: str
    within_ms: int
    left: bool
    merge: Callable[[Any, Any], Any]
    event_time: EventTime

    @classmethod
    def of(
        cls,
        stream: str,
        within: object,
        how: object,
        merge: Callable[[Any, Any], Any] | None,
        keys: tuple[object, object] = (None, None),
        event_time: EventTime = EventTime(),  # noqa: B008 - frozen, so shared safely
    ) -> WindowJoin:
        left = _checked_how(stream, "join_stream", how) == "left"
        _checked_function(stream, "join_stream", "merge", merge)
        _checked_function(stream, "join_stream", "on_left", keys[0])
        _checked_function(stream, "join_stream", "on_right", keys[1])
        within_ms = round(seconds(stream, "within", within) * 1000)
        return cls(stream, within_ms, left, merge or _pair, event_time)

    def frame(self, side: int) -> Callable[[Record, Any], Frame]:
        """A side's frame on the join topic (for :func:`~spate.streams.hops.hop_sink`):
        the value's event time is its record's timestamp, or what ``event_time`` reads."""
        extract = self.event_time.extract
        if extract is None:
            return lambda source, value: (side, source.timestamp_ms, value)
        return lambda source, value: (side, int(extract(value)), value)


Entry = list[Any]
"""A buffered value: [event time ms, offset, value, matched]."""

_offset = operator.itemgetter(1)
_NEVER = -(2**63)
"""A watermark below every event time: before the first record nothing is closed."""


@dataclass(slots=True)
class _Partition:
    """One partition's join state: its store and watermark, and the buffered values of
    both sides (rebuilt from the store)."""

    store: Store
    watermark: Watermark
    by_key: dict[bytes, tuple[list[Entry], list[Entry]]] = field(default_factory=dict)
    expiry: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    """Heap of (event time, offset, side, key): what to forget, oldest first."""

    def add(self, key: bytes, side: int, entry: Entry) -> None:
        sides = self.by_key.get(key)
        if sides is None:
            sides = self.by_key[key] = ([], [])
        sides[side].append(entry)
        heapq.heappush(self.expiry, (entry[0], entry[1], side, key))


class JoinOperator(EventTimeOperator[_Partition]):
    """The stage pairing a join topic's two sides per partition (see the module doc).

    A value at event time ``t`` may meet the other side's values in ``[t - within,
    t + within]``: its window closes when the watermark passes ``t + within``. Then it
    is forgotten (a left join's left value that met nobody is emitted with None), it
    meets nothing more, and a value that comes after is late.
    """

    def __init__(
        self,
        spec: WindowJoin,
        serde: JoinSerde,
        partitions: Mapping[TopicPartition, PartitionContext],
        fail: Fail,
    ) -> None:
        super().__init__(
            spec.event_time, STORE, partitions, fail, f"a closed join window ({spec.within_ms} ms)"
        )
        self.spec = spec
        self.serde = serde

    def _partition(self, context: PartitionContext) -> _Partition:
        """The buffers as the store keeps them: each value's encoded bytes (any value
        type a serde round-trips, where a store keeps plain data only)."""
        found: _Partition | None = context.state.get(STORE)
        if found is not None:
            return found
        store = context.store(STORE)
        part = _Partition(store, watermark(context, store, self.timing))
        sides = self.serde.sides
        for stored_key, stored in store.items():
            if not isinstance(stored_key, tuple):
                continue  # the watermark
            key, side, time_ms, offset = stored_key
            data, matched = stored
            part.add(key, side, [time_ms, offset, sides[side].decode(data), matched])
        for entries in itertools.chain.from_iterable(part.by_key.values()):
            entries.sort(key=_offset)  # arrival order, as before: a replay pairs alike
        context.state[STORE] = part
        return part

    def _run_partition(self, tp: TopicPartition, items: list[Item], out: list[Item]) -> None:
        within, grace, merge, fail = (
            self.spec.within_ms,
            self.timing.grace_ms,
            self.spec.merge,
            self.fail,
        )
        context = self.partitions[tp]
        part = self._partition(context)
        store, by_key = part.store, part.by_key
        append = out.append
        late: list[Record] = []
        top = part.watermark.top
        closed = _NEVER if top is None else top - grace
        for source, key, (side, time_ms, value) in items:
            if key is None:
                continue  # no join key: it can meet nothing
            if time_ms + within < closed:
                late.append(source)  # its window closed: its partners are forgotten
                continue
            entry: Entry = [time_ms, source.offset, value, False]
            sides = by_key.get(key)
            if sides is not None:
                for other in sides[1 - side]:
                    other_ms = other[0]
                    if abs(other_ms - time_ms) > within or other_ms + within < closed:
                        continue  # too far apart, or closed (forgotten at the batch's end)
                    left, right = (value, other[2]) if side == LEFT else (other[2], value)
                    try:
                        pair = merge(left, right)
                    except Exception as exc:
                        fail(source, exc)
                    else:
                        append((retimed(source, max(time_ms, other_ms)), key, pair))
                    entry[3] = True
                    if not other[3]:
                        other[3] = True
                        other_key = (key, 1 - side, other_ms, other[1])
                        store.set(other_key, [store.get(other_key)[0], True])
            part.add(key, side, entry)
            store.set((key, side, time_ms, source.offset), [source.value[_FRAME.size :], entry[3]])
            if top is None or time_ms > top:
                top = time_ms
                closed = top - grace
        part.watermark.seen(top, context.clock.monotonic())
        part.watermark.save(store)
        self._close(tp, part, out)
        if late:
            self._late(late)

    def _close(self, tp: TopicPartition, part: _Partition, out: list[Item]) -> None:
        """Forget the values whose window the watermark closed; a left join emits the left
        ones that met nobody, as ``merge(left, None)``, attributed to their own record
        (rebuilt from the store: the same on a replay, so effectively-once ids match)."""
        closed = part.watermark.value
        if closed is None:
            return
        within, left_join, merge = self.spec.within_ms, self.spec.left, self.spec.merge
        store, expiry = part.store, part.expiry
        while expiry and expiry[0][0] + within < closed:
            time_ms, offset, side, key = heapq.heappop(expiry)
            sides = part.by_key[key]
            entries = sides[side]
            for index, entry in enumerate(entries):
                if entry[0] == time_ms and entry[1] == offset:
                    del entries[index]
                    break
            else:
                continue
            if not sides[LEFT] and not sides[RIGHT]:
                del part.by_key[key]
            stored_key = (key, side, time_ms, offset)
            if left_join and side == LEFT and not entry[3]:
                data = _FRAME.pack(LEFT, time_ms) + store.get(stored_key)[0]
                source = Record(tp.topic, tp.partition, offset, key, data, (), time_ms)
                try:
                    out.append((source, key, merge(entry[2], None)))
                except Exception as exc:
                    self.fail(source, exc)
            store.delete(stored_key)


def window_join(spec: WindowJoin, serde: JoinSerde) -> StageBuilder:
    """The stage pairing a join topic's two sides (:class:`JoinOperator`); ``serde`` is
    the join topic's. Its state is in the partition's store ``join``."""

    def build(fail: Fail, partitions: Mapping[TopicPartition, PartitionContext]) -> Stage:
        return event_time_stage("join_stream", JoinOperator(spec, serde, partitions, fail))

    return build
