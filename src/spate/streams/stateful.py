"""The stage of ``Stream.stateful_map`` and of handlers that take ``state``.

The user's function gets each value and a :class:`~spate.state.view.State` scoped to
the record's key (the current output key: the source key, or what ``key_by`` made)
in the store of the record's partition. The store is looked up once per run of
records of the same partition (a batch holds a few such runs), never per record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from spate.errors import StateError
from spate.partitions import PartitionContext
from spate.record import TopicPartition
from spate.state.store import Store
from spate.state.view import State
from spate.streams.stream import Batch, Fail, Stage, is_async_callable


def _keyless(store: str) -> StateError:
    return StateError(
        f"store {store!r}: a record without a key has no state; give records a key "
        "(producers, or .key_by(fn) before the stateful step)"
    )


def stateful_stage(
    fn: Callable[[Any, State[Any]], Any],
    store: str,
    emit: bool,
    partitions: Mapping[TopicPartition, PartitionContext],
    fail: Fail,
    wrap: Callable[[Callable[[Any], Any]], Callable[[Any], Any]] | None = None,
) -> Stage:
    """A stage calling ``fn(value, state)``; ``emit``: a handler's result (None:
    nothing, a list: each element), else ``map``'s (the result replaces the value).
    ``wrap`` (retries, timeout) wraps the call, state bound."""
    view: State[Any] = State()
    call = _bound(fn, view)
    if wrap is not None:
        call = wrap(call)

    def prepare() -> tuple[list[Any], Callable[[Any], None], Callable[[Any], Store]]:
        out: list[Any] = []
        current: list[Any] = [None, None]

        def store_of(source: Any) -> Store:
            tp = (source.topic, source.partition)
            if tp != current[0]:
                current[0] = tp
                current[1] = partitions[TopicPartition(*tp)].store(store)
            found: Store = current[1]
            return found

        return out, out.append, store_of

    def place(append: Callable[[Any], None], source: Any, key: Any, result: Any) -> None:
        if not emit:
            append((source, key, result))
        elif type(result) is list:
            for element in result:
                append((source, key, element))
        elif result is not None:
            append((source, key, result))

    if is_async_callable(fn):

        async def run_async(batch: Batch) -> Batch:
            out, append, store_of = prepare()
            for source, key, value in batch:
                try:
                    if key is None:
                        raise _keyless(store)
                    view.store, view.key = store_of(source), key
                    place(append, source, key, await call(value))
                except Exception as exc:
                    fail(source, exc)
            return out

        return Stage("stateful_map", run_async, True, (store,))

    def run(batch: Batch) -> Batch:
        out, append, store_of = prepare()
        for source, key, value in batch:
            try:
                if key is None:
                    raise _keyless(store)
                view.store, view.key = store_of(source), key
                place(append, source, key, call(value))
            except Exception as exc:
                fail(source, exc)
        return out

    return Stage("stateful_map", run, False, (store,))


def _bound(fn: Callable[[Any, State[Any]], Any], view: State[Any]) -> Callable[[Any], Any]:
    """``fn`` with its state argument given: one argument, as retries wrap it."""
    if is_async_callable(fn):

        async def call_async(value: Any) -> Any:
            return await fn(value, view)

        return call_async
    return lambda value: fn(value, view)
