"""Compiled stages: what a :class:`~spate.streams.stream.Stream` becomes (DESIGN §10).

A :class:`Pipeline` is a flat tuple of :class:`Stage` functions, each taking the whole
batch and returning the batch for the next stage (a terminal stage returns the
:data:`Output` records to publish). Python pays per record, so each stage is one tight
loop over the batch: no ``await`` for plain functions, no dispatch per operator per
record, no metric call per record. The per-record loops of the built-in operators are
written once (:data:`OPERATORS`) and compiled once per process, sync or async.
"""

from __future__ import annotations

import asyncio
import inspect
import linecache
import textwrap
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from spate.partitions import PartitionContext
from spate.record import Record, TopicPartition
from spate.serde import encode_key, fast_encoder
from spate.streams.dedup import DedupCounts
from spate.streams.eventtime import EventTimeOperator
from spate.streams.stateful import StatefulCall
from spate.topic import Topic

Item = tuple[Record, bytes | None, Any]
"""One value in flight: (source record, output key, value)."""

Batch = list[Item]
Fail = Callable[[Record, Exception], None]
"""Called when user code raised for one record: raise to stop, return to skip it."""


Output = tuple[str, bytes, bytes | None, Record]
"""One record to publish: (topic, encoded value, key, the source record it came from)."""


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
    user_code: bool = True
    """The stage calls functions the user wrote, which may block (a slow service, a
    sleep): with an executor it runs there, off the event loop. False for stages that
    run spate's own code only (sinks, windows with built-in aggregations): bounded work
    per record, cheaper on the loop than handed to a thread and back."""


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
    def user_code(self) -> bool:
        """Some stage calls the user's functions (see :attr:`Stage.user_code`)."""
        return any(stage.user_code for stage in self.stages)

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
        loop free for heartbeats and other processors' I/O. A pipeline with no user
        code runs on the loop: handing it to a thread would cost more than it runs.
        """
        result: Any = batch
        if executor is None or not self.user_code:
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


def operator_stage(kind: str, fn: Callable[[Any], Any], fail: Fail) -> Stage:
    """Operator ``kind`` calling ``fn``: an async stage if ``fn`` is async, decided once."""
    is_async = is_async_callable(fn)
    return Stage(kind, _stage_factory(kind, is_async)(fn, fail), is_async)


def unbinding(call: StatefulCall, stage: Stage) -> Callable[[Batch], Any]:
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


def to_stage(topic: Topic[Any], fail: Fail) -> Callable[[Batch], list[Output]]:
    name, encode, checked = topic_sink(topic)

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


def topic_sink(topic: Topic[Any]) -> tuple[str, Callable[[Any], bytes], Callable[[Any], bytes]]:
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


def route_stage(
    routes: Sequence[tuple[Callable[[Any], Any], Topic[Any]]],
    default: Topic[Any] | None,
    fail: Fail,
) -> Callable[[Batch], list[Output]]:
    table = [(pred, topic_sink(t)) for pred, t in routes]
    fallback = None if default is None else topic_sink(default)

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
        user_code=operator.user_code,
    )


def discard(batch: Batch) -> list[Output]:
    """A stream without a terminal publishes nothing."""
    return []
