"""The Stream DSL (DESIGN §4).

A :class:`Stream` records operators; :meth:`Stream.compile` turns them into the
:class:`~spate.streams.stages.Pipeline` of compiled stages the worker runs per batch
(:mod:`spate.streams.stages`, DESIGN §10). Whether a user function is a coroutine
function is decided once, at compile time, never per record.

A batch item is ``(source, key, value)``: the record it came from (for error
locations and, later, dead letters and deterministic ids), the key its outputs get
(the source key unless :meth:`Stream.key_by` changed it) and the current value.

Example::

    (app.stream(orders, group="analytics")
        .filter(lambda o: o["amount"] >= 10)
        .map(lambda o: {**o, "big": o["amount"] > 100})
        .key_by(lambda o: o["user"])
        .to(big_orders))

map, filter, flat_map and key_by functions should be free of side effects; use
:meth:`Stream.peek` or :meth:`Stream.foreach` for side effects. Operators extend the
stream in place and return it, so a chain reads top to bottom; a stream ends in at
most one terminal (``to``, ``route`` or ``foreach``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from spate.errors import ConfigError
from spate.partitions import PartitionContext
from spate.record import TopicPartition
from spate.serde import Serde, serde_for
from spate.state.view import State
from spate.streams.aggregations import Aggregator, check
from spate.streams.dedup import Dedup, DedupCounts, dedup_stage
from spate.streams.eventtime import (
    DEFAULT_IDLE_TIMEOUT_S,
    EventTime,
    EventTimeFn,
    Late,
)
from spate.streams.stages import (
    Fail,
    Pipeline,
    Stage,
    StageBuilder,
    Wrap,
    discard,
    event_time_stage,
    is_async_callable,
    operator_stage,
    route_stage,
    to_stage,
    unbinding,
)
from spate.streams.stateful import AsyncStatefulCall, StatefulCall
from spate.streams.windows import Emit, Window, WindowOperator, WindowSpec
from spate.topic import Topic

if TYPE_CHECKING:
    from spate.state.table import Table
    from spate.streams.hops import Hops

T = TypeVar("T")
U = TypeVar("U")

_STORE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
DEFAULT_STORE = "state"
"""The store of ``stateful_map`` and of handlers that take ``state``, unless named."""


@dataclass(frozen=True, slots=True)
class _Op:
    kind: str
    fn: Callable[..., Any] | None = None
    topic: Topic[Any] | None = None
    routes: tuple[tuple[Callable[[Any], Any], Topic[Any]], ...] = ()
    store: str = ""
    """The store of a stateful operator."""
    dedup: Dedup | None = None
    build: StageBuilder | None = None
    window: WindowSpec | None = None
    event_time: EventTime | None = None
    """Of an operator over event time (a window, a windowed join): it ticks."""


class Stream(Generic[T]):
    """A processor's pipeline: source topics, a group, operators, at most one terminal.

    Build one with :meth:`spate.App.stream`; the App compiles and runs it. ``T`` is the
    type of the values at this point of the chain, for type checkers only: a stream
    of ``app.topic(..., value_type=Order)`` is a ``Stream[Order]``, ``.map(fn)`` with
    ``fn`` returning ``U`` (or an ``async def`` returning ``U``) is a ``Stream[U]``,
    and ``.to(topic)`` wants a ``Topic[U]``. Operators add to this stream and return
    it, typed anew; use the returned stream, as a chain does.
    """

    def __init__(self, topics: Sequence[Topic[T]], group: str, name: str) -> None:
        if not topics:
            raise ConfigError(f"stream {name!r} needs at least one source topic")
        self.topics: tuple[Topic[Any], ...] = tuple(topics)
        self.group = group
        self.name = name
        self._ops: list[_Op] = []
        self._terminal: str | None = None
        self.value_serde: Serde[Any] = self.topics[0].serde
        """What encodes this stream's values on an internal topic by default: its first
        source topic's serde (a processor after a hop: the serde of the values before
        it, or JSON after a join, whose merged values have a type of their own)."""
        self.hops: Hops | None = None
        """What registers the processors a ``group_by`` or join splits this stream
        into (the App that made it); None for a stream made by hand."""
        self._next: Stream[Any] | None = None
        """The processor this stream continues in after a ``group_by``: operators
        added here from then on go there, so the user keeps writing one stream."""

    def __repr__(self) -> str:
        chain = ".".join(op.kind for op in self._ops)
        sources = ",".join(t.name for t in self.topics)
        return f"<Stream {self.name!r} {sources} group={self.group!r} {chain}>"

    def _last(self) -> Stream[Any]:
        """The processor that operators added now go to (after a ``group_by``, the next)."""
        return self if self._next is None else self._next._last()

    def _check_open(self, kind: str) -> None:
        if self._terminal is not None:
            raise ConfigError(
                f"stream {self.name!r} already ends in .{self._terminal}(); "
                f"start a new app.stream(...) for the .{kind}() branch"
            )

    def _add(self, op: _Op, terminal: str | None = None) -> Stream[Any]:
        if self._next is not None:
            return self._next._add(op, terminal)
        self._check_open(op.kind)
        if op.fn is not None and not callable(op.fn):
            raise ConfigError(f"stream {self.name!r}: .{op.kind}() needs a function")
        self._ops.append(op)
        if terminal is not None:
            self._terminal = terminal
        return self

    # --- operators --------------------------------------------------------------
    # Each takes a plain function or an ``async def`` one (awaited per record; a plain
    # function that returns an awaitable is not awaited). The async overload comes
    # first so that a type checker infers what an async function's result awaits to.

    @overload
    def map(self, fn: Callable[[T], Awaitable[U]]) -> Stream[U]: ...
    @overload
    def map(self, fn: Callable[[T], U]) -> Stream[U]: ...
    def map(self, fn: Callable[[T], Any]) -> Stream[Any]:
        """Replace each value with ``fn(value)``."""
        return self._add(_Op("map", fn))

    def filter(self, fn: Callable[[T], object]) -> Stream[T]:
        """Keep the values for which ``fn(value)`` is true."""
        return self._add(_Op("filter", fn))

    @overload
    def flat_map(self, fn: Callable[[T], Awaitable[Iterable[U]]]) -> Stream[U]: ...
    @overload
    def flat_map(self, fn: Callable[[T], Iterable[U]]) -> Stream[U]: ...
    def flat_map(self, fn: Callable[[T], Any]) -> Stream[Any]:
        """Replace each value with every element of ``fn(value)`` (zero or more)."""
        return self._add(_Op("flat_map", fn))

    def key_by(self, fn: Callable[[T], object]) -> Stream[T]:
        """Give outputs the key ``fn(value)`` (str, bytes, int or JSON-able), which
        also picks their partition. Without it, outputs keep their source record's key."""
        return self._add(_Op("key_by", fn))

    def peek(self, fn: Callable[[T], object]) -> Stream[T]:
        """Call ``fn(value)`` for its side effect and pass the value on unchanged."""
        return self._add(_Op("peek", fn))

    def dedup(self, key: Callable[[T], object], ttl_s: float | None = None) -> Stream[T]:
        """Drop a value whose ``key(value)`` (str, bytes, int or a tuple of those) was
        let through before on its partition, within ``ttl_s`` seconds (None: for as
        long as the partition's store keeps it). The seen keys live in a store of the
        partition, so key the topic by that business key (see :mod:`spate.streams.dedup`)."""
        if is_async_callable(key):
            raise ConfigError(
                f"stream {self.name!r}: .dedup(key=...) must be a plain function (it runs "
                "for every record in the batch loop); compute the key without awaiting"
            )
        return self._add(_Op("dedup", key, dedup=Dedup(key=key, ttl_s=ttl_s)))

    def foreach(self, fn: Callable[[T], object]) -> Stream[T]:
        """Terminal: call ``fn(value)`` for its side effect; publish nothing."""
        return self._add(_Op("foreach", fn), terminal="foreach")

    def to(self, topic: Topic[T]) -> Stream[T]:
        """Terminal: publish every value to ``topic``, encoded with its serde."""
        _check_topic(self.name, "to", topic)
        return self._add(_Op("to", topic=topic), terminal="to")

    def route(
        self,
        *routes: tuple[Callable[[T], object], Topic[T]],
        default: Topic[T] | None = None,
    ) -> Stream[T]:
        """Terminal: publish each value to the topic of the first predicate it matches,
        else to ``default`` (dropped when there is no default)."""
        if not routes and default is None:
            raise ConfigError(f"stream {self.name!r}: .route() needs (predicate, topic) pairs")
        for pair in routes:
            if not (isinstance(pair, tuple) and len(pair) == 2 and callable(pair[0])):
                raise ConfigError(
                    f"stream {self.name!r}: .route() takes (predicate, topic) pairs, got {pair!r}"
                )
            _check_topic(self.name, "route", pair[1])
        if default is not None:
            _check_topic(self.name, "route", default)
        return self._add(_Op("route", topic=default, routes=tuple(routes)), terminal="route")

    def group_by(
        self,
        fn: Callable[[T], object],
        *,
        partitions: int | None = None,
        serde: Serde[T] | None = None,
    ) -> Stream[T]:
        """Re-key by ``fn(value)`` and re-partition, so each key's records meet in one
        partition (for ``.window().aggregate()`` and other per-key state).

        The stream is split in two processors: this one keys by ``fn(value)`` and
        publishes to the internal topic ``<app>-<processor>-repartition`` (created on
        start, with ``partitions`` partitions, default the most of the source topics);
        ``<processor>.grouped`` (group ``<group>.grouped``) reads it and runs the
        operators that follow. Values cross it encoded with ``serde``, by default the
        first source topic's: pass one that round-trips the values at this point if
        an operator before changed their type. Their event time crosses with them:
        after the hop each record has its source record's timestamp again. Under
        exactly-once the hop is exactly-once too: the second processor reads only
        what the first committed.
        """
        if self._next is not None:
            return self._next.group_by(fn, partitions=partitions, serde=serde)
        from spate.streams.hops import TimedSerde, hop_sink, restore_time, timed

        self._check_open("group_by")
        if not callable(fn) or is_async_callable(fn):
            raise ConfigError(
                f"stream {self.name!r}: .group_by() needs a plain function (not async) "
                "that returns the new key"
            )
        hops = self._hops("group_by")
        inner = serde or self.value_serde
        topic = hops.internal_topic(
            self, "repartition", self._partitions_for("group_by", partitions), TimedSerde(inner)
        )
        self._add(
            _Op("group_by", fn, topic=topic, build=hop_sink(topic, fn, timed)), terminal="group_by"
        )
        self._next = hops.continue_in(self, "grouped", topic)
        self._next.value_serde = inner
        self._next._add(_Op("event_time", build=restore_time))
        return self._next

    def join(
        self,
        table: Table[Any],
        *,
        how: str = "inner",
        on: Callable[[T], object] | None = None,
        merge: Callable[[T, Any], U] | None = None,
    ) -> Stream[Any]:
        """Enrich each value with ``table``'s current row for its key: ``on(value)``,
        or the record's key without ``on``. The value becomes ``merge(value, row)``
        (default ``(value, row)``). ``how="inner"`` drops values whose key has no row;
        ``how="left"`` keeps them, with ``row`` None. See docs/joins.md."""
        from spate.streams.joins import table_join

        return self._add(_Op("join", build=table_join(self.name, table, how, on, merge)))

    def join_stream(
        self,
        other: Stream[Any] | Topic[Any],
        *,
        within: float | timedelta,
        how: str = "inner",
        on_left: Callable[[T], object] | None = None,
        on_right: Callable[[Any], object] | None = None,
        merge: Callable[[T, Any], U] | None = None,
        grace: float | timedelta = 0.0,
        event_time: EventTimeFn | None = None,
        idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
        late: Late = "drop",
        partitions: int | None = None,
    ) -> Stream[Any]:
        """Windowed join with ``other`` (a stream of this App, or a topic): pair each
        value with every ``other`` value of the same join key whose event times are at
        most ``within`` apart, as ``merge(left, right)`` (default ``(left, right)``).

        Join keys: ``on_left(value)`` / ``on_right(value)``, or the records' keys.
        Event time, as for windows (:mod:`spate.streams.eventtime`): the record
        timestamp, or ``event_time(value)`` in ms, applied to the values of both sides
        as they reach the join. A value's window closes when the partition's watermark
        (largest event time seen minus ``grace`` seconds; after ``idle_timeout_s``
        without records, moving with the clock; None: never) passes its event time plus
        ``within``; ``how="left"`` then emits ``merge(left, None)`` for a left value
        that met no right one. A record whose window had closed when it came is late:
        counted, and dropped or, with ``late="dead_letter"``, dead-lettered. Both sides
        hop through the internal topic ``<app>-<processor>-join`` (``partitions``,
        default the most of both sides'), each encoded with its first source topic's
        serde; ``<processor>.joined`` pairs them. See docs/joins.md.
        """
        if self._next is not None:
            return self._next.join_stream(
                other,
                within=within,
                how=how,
                on_left=on_left,
                on_right=on_right,
                merge=merge,
                grace=grace,
                event_time=event_time,
                idle_timeout_s=idle_timeout_s,
                late=late,
                partitions=partitions,
            )
        from spate.streams import joins
        from spate.streams.hops import hop_sink

        self._check_open("join_stream")
        timing = EventTime(
            grace_s=joins.seconds(self.name, "grace", grace),
            extract=event_time,
            idle_timeout_s=idle_timeout_s,
            late=late,
        )
        spec = joins.WindowJoin.of(self.name, within, how, merge, (on_left, on_right), timing)
        hops = self._hops("join_stream")
        if isinstance(other, Topic):
            right = hops.continue_in(self, "right", other)
        elif isinstance(other, Stream) and other.hops is hops:
            right = other._last()
            right._check_open("join_stream")
        else:
            raise ConfigError(
                f"stream {self.name!r}: .join_stream() needs a Topic or a stream of the "
                f"same App (app.stream(...)), got {other!r}"
            )
        count = self._partitions_for("join_stream", partitions, right.topics)
        serde = joins.JoinSerde(self.value_serde, right.value_serde)
        topic = hops.internal_topic(self, "join", count, serde)
        self._add(
            _Op("join_stream", topic=topic, build=hop_sink(topic, on_left, spec.frame(joins.LEFT))),
            terminal="join_stream",
        )
        right._add(
            _Op(
                "join_stream", topic=topic, build=hop_sink(topic, on_right, spec.frame(joins.RIGHT))
            ),
            terminal="join_stream",
        )
        joined = hops.continue_in(self, "joined", topic)
        joined.value_serde = serde_for()
        joined._add(_Op("join_within", build=joins.window_join(spec, serde), event_time=timing))
        self._next = joined
        return joined

    def _hops(self, operator: str) -> Hops:
        if self.hops is None:
            raise ConfigError(
                f"stream {self.name!r}: .{operator}() adds a processor to the App; "
                "make the stream with app.stream(...)"
            )
        return self.hops

    def _partitions_for(
        self, operator: str, partitions: object, others: Sequence[Topic[Any]] = ()
    ) -> int:
        if partitions is None:
            return max(t.partitions for t in (*self.topics, *others))
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ConfigError(
                f"stream {self.name!r}: .{operator}(partitions={partitions!r}) must be an "
                "integer >= 1 (or None: as many as the source topics)"
            )
        return partitions

    def _retrying(self, topics: Sequence[Topic[Any]], group: str, name: str) -> Stream[Any]:
        """A stream of ``topics`` running this stream's operators, also those chained
        after this call (the operator list is shared): a retry topic's processor."""
        twin: Stream[Any] = Stream(topics, group, name)
        twin._ops = self._ops
        return twin

    def window(
        self,
        window: Window,
        *,
        grace: float = 0.0,
        event_time: EventTimeFn | None = None,
        idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
        emit: Emit = "final",
        late: Late = "drop",
    ) -> Windowed[T]:
        """Group values by key and event-time ``window``; ``.aggregate(...)`` says what
        each window computes (see :mod:`spate.streams.windows`).

        ``grace`` (seconds) is how long a window waits for out-of-order records;
        ``event_time(value)`` gives a value's event time in ms (default: the record
        timestamp); after ``idle_timeout_s`` without records a partition's windows
        close with the clock (None: never); ``emit="update"`` publishes each changed
        window per batch instead of each closed one; ``late="dead_letter"`` sends late
        records to the processor's dead-letter topic instead of dropping them.
        """
        timing = EventTime(
            grace_s=grace, extract=event_time, idle_timeout_s=idle_timeout_s, late=late
        )
        return Windowed(self, window, timing, emit)

    def _emit(self, fn: Callable[[T], object]) -> Stream[Any]:
        """A handler's function: None -> nothing, list -> each element, else the value."""
        return self._add(_Op("emit", fn))

    @overload
    def stateful_map(
        self, fn: Callable[[T, State[Any]], Awaitable[U]], *, store: str = ...
    ) -> Stream[U]: ...
    @overload
    def stateful_map(self, fn: Callable[[T, State[Any]], U], *, store: str = ...) -> Stream[U]: ...
    def stateful_map(
        self, fn: Callable[[T, State[Any]], Any], *, store: str = DEFAULT_STORE
    ) -> Stream[Any]:
        """Replace each value with ``fn(value, state)``, where ``state`` is the
        :class:`~spate.state.view.State` kept for the record's key (per partition, in
        store ``store``, restored after a restart or a rebalance: docs/state.md).
        Records need a key (``key_by`` gives them one)."""
        return self._add(_Op("stateful_map", fn, store=_checked_store(self.name, store)))

    def _stateful_emit(self, fn: Callable[[T, State[Any]], object]) -> Stream[Any]:
        """A handler taking ``state``: its result as ``_emit``'s."""
        return self._add(_Op("stateful_emit", fn, store=DEFAULT_STORE))

    # --- compiling ----------------------------------------------------------------

    @property
    def ticks(self) -> bool:
        """Some operator acts on time (a window, a windowed join): the worker ticks its
        pipeline."""
        return any(op.event_time is not None for op in self._ops)

    @property
    def late_dead_letters(self) -> bool:
        """Some window or windowed join sends late records to the dead-letter topic."""
        return any(
            op.event_time is not None and op.event_time.late == "dead_letter" for op in self._ops
        )

    @property
    def output_topics(self) -> tuple[Topic[Any], ...]:
        """Every topic this stream publishes to (the App creates them on start)."""
        found: list[Topic[Any]] = []
        for op in self._ops:
            found.extend(t for _, t in op.routes)
            if op.topic is not None:
                found.append(op.topic)
        return tuple(found)

    def compile(
        self,
        fail: Fail,
        partitions: Mapping[TopicPartition, PartitionContext] | None = None,
        wrap: Wrap | None = None,
    ) -> Pipeline:
        """The pipeline for one worker; a user function that raises for a record calls
        ``fail(record, exc)``. It returns what to publish and publishes nothing itself.
        ``partitions`` is the worker's live context per owned partition; ``wrap``, if
        given, replaces each operator's function once (retries and timeouts)."""
        stages: list[Stage] = []
        contexts: Mapping[TopicPartition, PartitionContext] = (
            {} if partitions is None else partitions
        )
        counts = DedupCounts()
        dedups = 0
        for op in self._ops:
            if op.window is not None:
                # its store: window-<stage index>
                operator = WindowOperator(op.window, f"window-{len(stages)}", contexts, fail)
                stages.append(event_time_stage(f"window {op.window.window}", operator))
            elif op.build is not None:
                stages.append(op.build(fail, contexts))
            elif op.dedup is not None:
                dedups += 1  # a store name per dedup stage, stable across deployments
                store = "dedup" if dedups == 1 else f"dedup-{dedups}"
                run, fail = dedup_stage(op.dedup, store, fail, contexts, counts)
                stages.append(Stage("dedup", run, False, (store,)))
            elif op.kind == "to":
                assert op.topic is not None
                sink = to_stage(op.topic, fail)
                stages.append(Stage(f"to {op.topic.name}", sink, False, user_code=False))
            elif op.kind == "route":
                stages.append(Stage("route", route_stage(op.routes, op.topic, fail), False))
            elif op.store:
                assert op.fn is not None
                make = AsyncStatefulCall if is_async_callable(op.fn) else StatefulCall
                call = make(op.fn, op.store, contexts, wrap)
                stage = operator_stage(op.kind, call, fail)
                stages.append(
                    dataclasses.replace(stage, run=unbinding(call, stage), stores=(op.store,))
                )
            else:
                assert op.fn is not None
                stages.append(operator_stage(op.kind, op.fn if wrap is None else wrap(op.fn), fail))
        if not self._ops or self._ops[-1].kind not in _TERMINALS:
            stages.append(Stage("end", discard, False, user_code=False))
        return Pipeline(tuple(stages), contexts, counts)


class Windowed(Generic[T]):
    """A stream with a window chosen, waiting for :meth:`aggregate`."""

    def __init__(self, stream: Stream[T], window: Window, timing: EventTime, emit: Emit) -> None:
        self._stream = stream
        self._window = window
        self._timing = timing
        self._emit = emit

    def aggregate(self, **aggregations: Aggregator) -> Stream[dict[str, Any]]:
        """Compute ``name=agg.xxx(...)`` per key and window; each window's output is a
        dict ``{"key", "start", "end", name: result, ...}`` keyed like its records."""
        checked = check(aggregations)
        spec = WindowSpec(
            window=self._window,
            event_time=self._timing,
            emit=self._emit,
            names=tuple(checked),
            aggregators=tuple(checked.values()),
        )
        return self._stream._add(_Op("window", window=spec, event_time=spec.event_time))


_TERMINALS = frozenset({"to", "route", "foreach", "group_by", "join_stream"})
"""Operators that end a stream (always its last; a hop's sink publishes to its
internal topic)."""


def _checked_store(stream: str, store: object) -> str:
    if not isinstance(store, str) or not _STORE_NAME.fullmatch(store):
        raise ConfigError(
            f"stream {stream!r}: store={store!r} must be 1-100 characters from "
            "a-z A-Z 0-9 . _ - (it names the changelog topic)"
        )
    return store


def _check_topic(stream: str, operator: str, topic: object) -> None:
    if not isinstance(topic, Topic):
        raise ConfigError(
            f"stream {stream!r}: .{operator}() needs a Topic from app.topic(...), got {topic!r}"
        )
