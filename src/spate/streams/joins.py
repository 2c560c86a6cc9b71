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
value: a hop gives the record a new timestamp). The processor reading that topic
runs :func:`window_join`: per partition it buffers both sides by key and emits a pair
(with the later of its two event times) as soon as its second half arrives within
the window; a left join also emits a left value that met nobody
once the partition's watermark closes its window. Every buffered value is in the
stage's store (``join``) too, so the buffers can be rebuilt from it.
"""

from __future__ import annotations

import heapq
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
from spate.streams.hops import retimed
from spate.streams.stream import Batch, Fail, Stage, StageBuilder, is_async_callable

HOW = ("inner", "left")
LEFT, RIGHT = 0, 1
STORE = "join"
_FRAME = struct.Struct(">Bq")
"""A join topic value's header: side (0 left, 1 right), event time in ms."""


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

    def encode(self, value: tuple[int, int, Any]) -> bytes:
        side, time_ms, inner = value
        return _FRAME.pack(side, time_ms) + self.sides[side].encode(inner)

    def decode(self, data: bytes) -> tuple[int, int, Any]:
        if len(data) < _FRAME.size or data[0] > RIGHT:
            raise SerdeError(
                f"a join topic value needs a {_FRAME.size}-byte (side, time) header; "
                f"got {len(data)} bytes: was it written by something other than spate?"
            )
        side, time_ms = _FRAME.unpack_from(data)
        return side, time_ms, self.sides[side].decode(data[_FRAME.size :])


def left_side(source: Record, value: Any) -> tuple[int, int, Any]:
    """A left value's frame on the join topic (for :func:`~spate.streams.hops.hop_sink`)."""
    return (LEFT, source.timestamp_ms, value)


def right_side(source: Record, value: Any) -> tuple[int, int, Any]:
    """A right value's frame on the join topic."""
    return (RIGHT, source.timestamp_ms, value)


# --- stream-stream: the window ---------------------------------------------------------


def _ms(stream: str, field_name: str, duration: object) -> int:
    if isinstance(duration, timedelta):
        duration = duration.total_seconds()
    if isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0:
        raise ConfigError(
            f"stream {stream!r}: .join_stream({field_name}={duration!r}) must be seconds >= 0 "
            "or a timedelta"
        )
    return round(duration * 1000)


@dataclass(frozen=True, slots=True)
class WindowJoin:
    """A checked ``join_stream``: the window and grace in ms, the kind and the merge."""

    stream: str
    within_ms: int
    grace_ms: int
    left: bool
    merge: Callable[[Any, Any], Any]

    @classmethod
    def of(
        cls,
        stream: str,
        within: object,
        grace: object,
        how: object,
        merge: Callable[[Any, Any], Any] | None,
        keys: tuple[object, object] = (None, None),
    ) -> WindowJoin:
        left = _checked_how(stream, "join_stream", how) == "left"
        _checked_function(stream, "join_stream", "merge", merge)
        _checked_function(stream, "join_stream", "on_left", keys[0])
        _checked_function(stream, "join_stream", "on_right", keys[1])
        return cls(
            stream,
            _ms(stream, "within", within),
            _ms(stream, "grace", grace),
            left,
            merge or _pair,
        )


Entry = list[Any]
"""A buffered value: [event time ms, offset, value, matched]."""


@dataclass(slots=True)
class _Buffers:
    """One partition's buffered values of both sides, rebuilt from its store."""

    by_key: dict[bytes, tuple[list[Entry], list[Entry]]] = field(default_factory=dict)
    expiry: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    """Heap of (event time, offset, side, key): what to forget, oldest first."""
    max_time_ms: int | None = None
    """The largest event time seen: the watermark is this minus grace."""

    @classmethod
    def restored(cls, store: Store, serde: JoinSerde) -> _Buffers:
        """The buffers as the store keeps them: each value's encoded bytes (any value
        type a serde round-trips, where a store keeps plain data only)."""
        buffers = cls()
        for stored_key, (data, matched) in store.items():
            assert isinstance(stored_key, tuple)
            key, side, time_ms, offset = stored_key
            value = serde.sides[side].decode(data)
            buffers.add(key, side, [time_ms, offset, value, matched])
        return buffers

    def add(self, key: bytes, side: int, entry: Entry) -> None:
        sides = self.by_key.get(key)
        if sides is None:
            sides = self.by_key[key] = ([], [])
        sides[side].append(entry)
        heapq.heappush(self.expiry, (entry[0], entry[1], side, key))
        if self.max_time_ms is None or entry[0] > self.max_time_ms:
            self.max_time_ms = entry[0]


def window_join(spec: WindowJoin, serde: JoinSerde) -> StageBuilder:
    """The stage pairing a join topic's two sides per partition (see the module doc);
    ``serde`` is the join topic's."""
    within, grace, merge = spec.within_ms, spec.grace_ms, spec.merge
    header = _FRAME.size

    def build(fail: Fail, partitions: Mapping[TopicPartition, PartitionContext]) -> Stage:
        def buffers_of(context: PartitionContext) -> _Buffers:
            buffers = context.state.get(STORE)
            if buffers is None:
                buffers = context.state[STORE] = _Buffers.restored(context.store(STORE), serde)
            assert isinstance(buffers, _Buffers)
            return buffers

        def run(batch: Batch) -> Batch:
            out: Batch = []
            append = out.append
            touched: dict[TopicPartition, tuple[_Buffers, Store, Record]] = {}
            current: TopicPartition | None = None
            buffers = store = None
            for source, key, (side, time_ms, value) in batch:
                tp = TopicPartition(source.topic, source.partition)
                if tp != current:
                    context = partitions[tp]
                    buffers, store = buffers_of(context), context.store(STORE)
                    current = tp
                assert buffers is not None
                assert store is not None
                touched[tp] = (buffers, store, source)
                if key is None:
                    continue  # no join key: it can meet nothing
                newest = buffers.max_time_ms
                if newest is not None and time_ms + within < newest - grace:
                    continue  # late: its window closed, its partners are forgotten
                entry: Entry = [time_ms, source.offset, value, False]
                sides = buffers.by_key.get(key)
                if sides is not None:
                    for other in sides[1 - side]:
                        if abs(other[0] - time_ms) > within:
                            continue
                        left, right = (value, other[2]) if side == LEFT else (other[2], value)
                        try:
                            pair = merge(left, right)
                        except Exception as exc:
                            fail(source, exc)
                        else:
                            append((retimed(source, max(time_ms, other[0])), key, pair))
                        entry[3] = True
                        if not other[3]:
                            other[3] = True
                            other_key = (key, 1 - side, other[0], other[1])
                            store.set(other_key, [store.get(other_key)[0], True])
                buffers.add(key, side, entry)
                store.set((key, side, time_ms, source.offset), [source.value[header:], entry[3]])
            for buffers, store, last in touched.values():
                _expire(buffers, store, within, grace, spec.left, merge, last, append, fail)
            return out

        return Stage("join_stream", run, False, stores=(STORE,))

    return build


def _expire(
    buffers: _Buffers,
    store: Store,
    within: int,
    grace: int,
    left_join: bool,
    merge: Callable[[Any, Any], Any],
    last: Record,
    append: Callable[[Any], None],
    fail: Fail,
) -> None:
    """Forget the values whose window the watermark closed; a left join emits the left
    ones that met nobody, as ``merge(left, None)`` (attributed to ``last``, the
    partition's last record of the batch)."""
    if buffers.max_time_ms is None:
        return
    watermark = buffers.max_time_ms - grace
    expiry = buffers.expiry
    while expiry and expiry[0][0] + within < watermark:
        time_ms, offset, side, key = heapq.heappop(expiry)
        sides = buffers.by_key[key]
        entries = sides[side]
        for index, entry in enumerate(entries):
            if entry[0] == time_ms and entry[1] == offset:
                del entries[index]
                break
        else:
            continue
        if not sides[LEFT] and not sides[RIGHT]:
            del buffers.by_key[key]
        store.delete((key, side, time_ms, offset))
        if left_join and side == LEFT and not entry[3]:
            try:
                append((retimed(last, time_ms), key, merge(entry[2], None)))
            except Exception as exc:
                fail(last, exc)
