"""``State``: what a ``stateful_map`` function or a handler's ``state`` parameter gets.

One object per stage, re-pointed at each record's store and key by the stage's loop
(no allocation per record): the function reads and writes the value kept for the
key of the record it is called with, in the store of that record's partition.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from spate.state.store import Store, StoreKey

S = TypeVar("S")


class State(Generic[S]):
    """The value a stateful function keeps for the current record's key.

    ``get`` returns it (or ``default`` when there is none, or it expired), ``set``
    replaces it (``ttl_s``: it expires that many seconds later, so state kept per key
    for deduplication does not grow for ever), ``delete`` forgets it. Values are plain
    data (None, bool, int, float, str, bytes, lists and dicts of those); they become
    durable with the batch's commit.
    """

    __slots__ = ("key", "store")

    def __init__(self) -> None:
        self.store: Store | None = None
        self.key: StoreKey = b""

    def _current(self) -> Store:
        assert self.store is not None, "a State is used only inside its function's call"
        return self.store

    def get(self, default: S | None = None) -> S | None:
        value: Any = self._current().get(self.key, default)
        return value  # type: ignore[no-any-return]

    def set(self, value: S, *, ttl_s: float | None = None) -> None:
        self._current().set(self.key, value, ttl_s=ttl_s)

    def delete(self) -> None:
        self._current().delete(self.key)

    def __repr__(self) -> str:
        return f"<State key={self.key!r}>"
