"""The Stream DSL and the compiled pipeline it becomes (DESIGN §4, §10).

A :class:`Stream` records operators; :meth:`Stream.compile` turns them into a flat
tuple of :class:`Stage` functions, each taking the whole batch and returning the
batch for the next stage. Python pays per record, so each stage is one tight loop
over the batch: no ``await`` for plain functions, no dispatch per operator per
record, no metric call per record. Whether a user function is a coroutine function
is decided once, here, never per record.

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

import asyncio
import dataclasses
import inspect
import linecache
import re
import textwrap
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from spate.errors import ConfigError
from spate.partitions import PartitionContext
from spate.record import Record, TopicPartition
from spate.serde import Serde, encode_key, fast_encoder, serde_for
from spate.state.view import State
from spate.streams.aggregations import Aggregator, check
from spate.streams.dedup import Dedup, DedupCounts, dedup_stage
from spate.streams.eventtime import (
    DEFAULT_IDLE_TIMEOUT_S,
    EventTime,
    EventTimeFn,
    EventTimeOperator,
    Late,
)
from spate.streams.stateful import AsyncStatefulCall, StatefulCall
from spate.streams.windows import Emit, Window, WindowOperator, WindowSpec
from spate.topic import Topic

if TYPE_CHECKING:
    from spate.state.table import Table
    from spate.streams.hops import Hops

T = TypeVar("T")
U = TypeVar("U")

Item = tuple[Record, bytes | None, Any]
"""One value in flight: (source record, output key, value)."""

Batch = list[Item]
Fail = Callable[[Record, Exception], None]
"""Called when user code raised for one record: raise to stop, return to skip it."""


Output = tuple[str, bytes, bytes | None, Record]
"""One record to publish: (topic, encoded value, key, the source record it came from)."""

_STORE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
DEFAULT_STORE = "state"
"""The store of ``stateful_map`` and of handlers that take ``state``, unless named."""


@dataclass(frozen=True, slots=True)
class Stage:
    """One compiled operator: ``run(batch)`` returns the next batch (awaitable if async).

    A terminal stage returns the batch's :data:`Output` records instead; the runtime
    publishes them, so the pipeline itself never touches a producer.
    """

    name: str
    run: Callable[[Batch], Any]
    is_async: bool
    stores: tuple[str, ...] = ()
    """The stores the stage keeps per partition (opened by the worker on assignment,
    found in ``pipeline.partitions[tp].store(name)``)."""
    tick: Callable[[float], Batch] | None = None
    """For stages that act on time (windows closing on an idle partition):
    ``tick(monotonic_s)`` returns items for the next stages, as ``run`` does."""
    late: Callable[[], int] | None = None
    """For event-time stages: how many late records they saw so far."""


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A compiled stream: stages applied in order to each batch."""

    stages: tuple[Stage, ...]
    partitions: Mapping[TopicPartition, PartitionContext] = field(default_factory=dict)
    """The worker's context per owned partition (:mod:`spate.partitions`), for stages
    that keep state per partition: they look up their records' partitions, per batch."""
    dedup: DedupCounts = field(default_factory=DedupCounts)
    """What the dedup stages dropped so far (the worker takes it once per batch)."""

    @property
    def is_async(self) -> bool:
        return any(stage.is_async for stage in self.stages)

    @property
    def stores(self) -> tuple[str, ...]:
        """Every store name the stages declare, in stage order."""
        return tuple(name for stage in self.stages for name in stage.stores)

    @property
    def ticks(self) -> bool:
        """Some stage acts on time: the worker calls :meth:`tick` (never otherwise, so
        a stateless pipeline pays nothing for it)."""
        return any(stage.tick is not None for stage in self.stages)

    async def tick(self, now_s: float) -> list[Output]:
        """What the stages that act on time emit at ``now_s`` (monotonic seconds), run
        through the stages after them: what to publish."""
        outputs: list[Output] = []
        for index, stage in enumerate(self.stages):
            if stage.tick is None:
                continue
            result: Any = stage.tick(now_s)
            if not result:
                continue
            for later in self.stages[index + 1 :]:
                result = await later.run(result) if later.is_async else later.run(result)
            outputs.extend(result)
        return outputs

    def late_records(self) -> int:
        """Late records the event-time stages saw so far."""
        return sum(stage.late() for stage in self.stages if stage.late is not None)

    def run_sync(self, batch: Batch) -> list[Output]:
        """Run a pipeline with no async stage; returns what to publish."""
        result: Any = batch
        for stage in self.stages:
            result = stage.run(result)
        outputs: list[Output] = result
        return outputs

    async def run(self, batch: Batch, executor: Executor | None = None) -> list[Output]:
        """Run any pipeline, awaiting only the async stages.

        With an ``executor``, plain stages run there (one hand-off per batch for an
        all-plain pipeline), so a long batch of blocking user code leaves the event
        loop free for heartbeats and other processors' I/O.
        """
        result: Any = batch
        if executor is None:
            for stage in self.stages:
                result = await stage.run(result) if stage.is_async else stage.run(result)
            return result  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        if not self.is_async:
            return await loop.run_in_executor(executor, self.run_sync, batch)
        for stage in self.stages:
            if stage.is_async:
                result = await stage.run(result)
            else:
                result = await loop.run_in_executor(executor, stage.run, result)
        return result  # type: ignore[no-any-return]


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for ``async def`` functions, partials of them and objects with ``async __call__``."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


# --- operators: each defined once, by what it does with one call's result ------------


@dataclass(frozen=True, slots=True)
class Operator:
    """One operator, defined once: what its stage does for one record.

    ``per_record`` is a Python statement run for every record inside that record's
    error handling (so a truth test, a key that cannot be encoded or a generator that
    raises halfway fails that record only), with ``{call}`` where the user's function
    is called (other braces doubled, as for ``str.format``): :func:`_stage` puts
    ``fn(value)`` there, or ``await fn(value)``, and builds the stage's loop around it.
    In scope: ``item`` (the batch item), ``out`` and its ``append`` (the next batch),
    ``encode_key``, and ``source``, ``key`` and ``value`` (the item unpacked); with
    ``unpack`` off, only ``item``, and the call is ``fn(item[2])``.

    ``unpack`` is for statements that build new items from ``source`` and ``key``;
    the others leave it off, because a reference to every source record and key is a
    cache miss per record on a batch that does not fit the cache (for ``filter`` on
    W1 a third more time).
    """

    per_record: str
    unpack: bool = True


_EMIT = (
    "result = {call}\n"
    "if type(result) is list:\n"
    "    out.extend([(source, key, element) for element in result])\n"
    "elif result is not None:\n"
    "    append((source, key, result))"
)

OPERATORS: dict[str, Operator] = {
    "map": Operator("append((source, key, {call}))"),
    "filter": Operator("if {call}:\n    append(item)", unpack=False),
    "flat_map": Operator("out.extend([(source, key, element) for element in {call}])"),
    "key_by": Operator("append((source, encode_key({call}), value))"),
    "peek": Operator("{call}\nappend(item)", unpack=False),
    "foreach": Operator("{call}", unpack=False),
    # a handler's result: None publishes nothing, a list each element, anything else itself
    "emit": Operator(_EMIT),
    # fn is a StatefulCall (spate.streams.stateful): its state is bound to the record first
    "stateful_map": Operator("fn.bind(source, key)\nappend((source, key, {call}))"),
    "stateful_emit": Operator("fn.bind(source, key)\n" + _EMIT),
}

# The one batch loop. Python cannot share a loop body between ``def`` and ``async def``
# without a call per record (which W1 would pay for every record and stage), so the
# loop is written once, here, and compiled once per operator, sync or async: each
# stage runs the code a hand-written loop for that operator would.
_LOOP = """\
def make(fn, fail):
    {async_}def {kind}_stage(batch):
        out = []
        append = out.append
        for {each} in batch:
            try:
{per_record}
            except Exception as exc:
                fail({source}, exc)
        return out
    return {kind}_stage
"""

StageFactory = Callable[[Callable[[Any], Any], Fail], Callable[[Batch], Any]]


@cache
def _stage_factory(kind: str, is_async: bool) -> StageFactory:
    """Compile operator ``kind``'s loop (sync or async) once per process."""
    operator = OPERATORS[kind]
    call = ("await " if is_async else "") + ("fn(value)" if operator.unpack else "fn(item[2])")
    source = _LOOP.format(
        kind=kind,
        async_="async " if is_async else "",
        each="(source, key, value)" if operator.unpack else "item",
        source="source" if operator.unpack else "item[0]",
        per_record=textwrap.indent(operator.per_record.format(call=call), " " * 16),
    )
    filename = f"<spate {'async ' if is_async else ''}{kind} stage>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"encode_key": encode_key}
    exec(compile(source, filename, "exec"), namespace)
    factory: StageFactory = namespace["make"]
    return factory


def _stage(kind: str, fn: Callable[[Any], Any], fail: Fail) -> Stage:
    """Operator ``kind`` calling ``fn``: an async stage if ``fn`` is async, decided once."""
    is_async = is_async_callable(fn)
    return Stage(kind, _stage_factory(kind, is_async)(fn, fail), is_async)


def _unbinding(call: StatefulCall, stage: Stage) -> Callable[[Batch], Any]:
    """``stage.run`` that first makes ``call`` look its stores up again: a store is
    never kept from one batch to the next (see :mod:`spate.streams.stateful`)."""
    run = stage.run
    unbind = call.unbind
    if stage.is_async:

        async def run_async(batch: Batch) -> Any:
            unbind()
            return await run(batch)

        return run_async

    def run_sync(batch: Batch) -> Any:
        unbind()
        return run(batch)

    return run_sync


def _to(topic: Topic[Any], fail: Fail) -> Callable[[Batch], list[Output]]:
    name, encode, checked = _sink(topic)

    def run(batch: Batch) -> list[Output]:
        outputs: list[Output] = []
        append = outputs.append
        for source, key, value in batch:
            try:
                append((name, encode(value), key, source))
            except Exception:
                append_checked(append, name, checked, value, key, source, fail)
        return outputs

    return run


def _sink(topic: Topic[Any]) -> tuple[str, Callable[[Any], bytes], Callable[[Any], bytes]]:
    """A target topic's name, fast encoder and checked encoder."""
    return topic.name, fast_encoder(topic.serde), topic.serde.encode


def append_checked(
    append: Callable[[Output], None],
    name: str,
    encode: Callable[[Any], bytes],
    value: Any,
    key: bytes | None,
    source: Record,
    fail: Fail,
) -> None:
    """After a serde's fast encoder raised: its own ``encode``, whose SerdeError says
    what was wrong, goes to the error policy (which skips the record or stops)."""
    try:
        data = encode(value)
    except Exception as exc:
        fail(source, exc)
        return
    append((name, data, key, source))


def _route(
    routes: Sequence[tuple[Callable[[Any], Any], Topic[Any]]],
    default: Topic[Any] | None,
    fail: Fail,
) -> Callable[[Batch], list[Output]]:
    table = [(pred, _sink(t)) for pred, t in routes]
    fallback = None if default is None else _sink(default)

    def run(batch: Batch) -> list[Output]:
        outputs: list[Output] = []
        append = outputs.append
        for source, key, value in batch:
            try:
                target = fallback
                for pred, sink in table:
                    if pred(value):
                        target = sink
                        break
            except Exception as exc:
                fail(source, exc)
                continue
            if target is None:
                continue
            name, encode, checked = target
            try:
                append((name, encode(value), key, source))
            except Exception:
                append_checked(append, name, checked, value, key, source, fail)
        return outputs

    return run


Wrap = Callable[[Callable[[Any], Any]], Callable[[Any], Any]]
"""What the runtime puts around each operator's function once (retries, timeouts)."""

StageBuilder = Callable[[Fail, Mapping[TopicPartition, PartitionContext]], Stage]
"""Builds the stage of an operator defined in its own module (hops, joins), per worker."""


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
                stages.append(Stage(f"to {op.topic.name}", _to(op.topic, fail), False))
            elif op.kind == "route":
                stages.append(Stage("route", _route(op.routes, op.topic, fail), False))
            elif op.store:
                assert op.fn is not None
                make = AsyncStatefulCall if is_async_callable(op.fn) else StatefulCall
                call = make(op.fn, op.store, contexts, wrap)
                stage = _stage(op.kind, call, fail)
                stages.append(
                    dataclasses.replace(stage, run=_unbinding(call, stage), stores=(op.store,))
                )
            else:
                assert op.fn is not None
                stages.append(_stage(op.kind, op.fn if wrap is None else wrap(op.fn), fail))
        if not self._ops or self._ops[-1].kind not in _TERMINALS:
            stages.append(Stage("end", _discard, False))
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


def event_time_stage(name: str, operator: EventTimeOperator[Any]) -> Stage:
    """The stage of an operator over event time: its state in its store, its ``tick``
    and its count of late records."""
    return Stage(
        name,
        operator.run,
        False,
        stores=(operator.store_name,),
        tick=operator.tick,
        late=lambda: operator.late,
    )


_TERMINALS = frozenset({"to", "route", "foreach", "group_by", "join_stream"})
"""Operators that end a stream (always its last; a hop's sink publishes to its
internal topic)."""


def _discard(batch: Batch) -> list[Output]:
    """A stream without a terminal publishes nothing."""
    return []


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
