"""What ``Stream.stateful_map`` and handlers that take ``state`` call per record.

The user's function gets each value and a :class:`~spate.state.view.State` scoped to
the record's key (the current output key: the source key, or what ``key_by`` made)
in the store of the record's partition. The stage's loop is the one every operator
uses (:mod:`spate.streams.stream`): it calls ``fn.bind(source, key)`` and then
``fn(value)``, ``fn`` being a :class:`StatefulCall`. The store is looked up once per
run of records of the same partition (a batch holds a few such runs), never per record,
and never kept from one batch to the next (:meth:`StatefulCall.unbind`): between
batches the worker may replace a partition's stores (a rewound batch, a partition
revoked and assigned again), and a store kept from before would take the next
batch's changes where no flush ever looks, and hold the rewound batch's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from spate.errors import StateError
from spate.partitions import PartitionContext
from spate.record import Record, TopicPartition
from spate.state.store import Store
from spate.state.view import State

Wrap = Callable[[Callable[[Any], Any]], Callable[[Any], Any]]


class StatefulCall:
    """``fn(value, state)`` as a one-argument call, its state bound per record."""

    def __init__(
        self,
        fn: Callable[[Any, State[Any]], Any],
        store: str,
        partitions: Mapping[TopicPartition, PartitionContext],
        wrap: Wrap | None,
    ) -> None:
        self.store = store
        self.partitions = partitions
        self.view: State[Any] = State()
        self._tp: tuple[str, int] | None = None
        self._store: Store | None = None
        call = self._call_of(fn)
        self.call = call if wrap is None else wrap(call)

    def _call_of(self, fn: Callable[[Any, State[Any]], Any]) -> Callable[[Any], Any]:
        view = self.view
        return lambda value: fn(value, view)

    def unbind(self) -> None:
        """Forget the store looked up last: the next record looks its store up again.
        Called before every batch (see the module doc)."""
        self._tp = None
        self._store = None
        self.view.store = None

    def bind(self, source: Record, key: bytes | None) -> None:
        """Point the state at ``key`` in the store of ``source``'s partition."""
        if key is None:
            raise StateError(
                f"store {self.store!r}: a record without a key has no state; give records "
                "a key (producers, or .key_by(fn) before the stateful step)"
            )
        tp = (source.topic, source.partition)
        if tp != self._tp:
            self._tp = tp
            self._store = self.partitions[TopicPartition(*tp)].store(self.store)
        self.view.store = self._store
        self.view.key = key

    def __call__(self, value: Any) -> Any:
        return self.call(value)


class AsyncStatefulCall(StatefulCall):
    """:class:`StatefulCall` of an ``async def`` function (awaited per record)."""

    def _call_of(self, fn: Callable[[Any, State[Any]], Any]) -> Callable[[Any], Any]:
        view = self.view

        async def call(value: Any) -> Any:
            return await fn(value, view)

        return call

    async def __call__(self, value: Any) -> Any:
        return await self.call(value)
