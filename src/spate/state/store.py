"""The store a stateful operator keeps per partition (DESIGN §8).

A :class:`Store` belongs to one (processor, store name, partition). Operators read
and write it while they run a batch; what they wrote becomes durable with the batch's
offsets (a pre-commit hook of :mod:`spate.runtime.checkpoint`), so after a crash the
store holds exactly what the committed records made of it.

Keys and values are plain data (None, bool, int, float, str, bytes, and lists,
tuples and dicts of those): what a changelog record can carry on every broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

StoreKey = str | bytes | int | tuple[Any, ...]
"""A store's key: a str, bytes, int, or a tuple of those (e.g. (key, window start))."""


@runtime_checkable
class Store(Protocol):
    """One partition's view of a named store."""

    name: str

    def get(self, key: StoreKey, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it has none (or it expired)."""
        ...

    def set(self, key: StoreKey, value: Any, *, ttl_s: float | None = None) -> None:
        """Give ``key`` the value ``value``; with ``ttl_s`` it expires that long after."""
        ...

    def delete(self, key: StoreKey) -> None:
        """Forget ``key`` (nothing happens if it has no value)."""
        ...

    def __contains__(self, key: object) -> bool: ...

    def items(self) -> Iterator[tuple[StoreKey, Any]]:
        """Every live (key, value), in no particular order."""
        ...


class MemoryStore:
    """A store kept in a dict: nothing survives the process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._data: dict[StoreKey, Any] = {}

    def get(self, key: StoreKey, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: StoreKey, value: Any, *, ttl_s: float | None = None) -> None:
        self._data[key] = value

    def delete(self, key: StoreKey) -> None:
        self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def items(self) -> Iterator[tuple[StoreKey, Any]]:
        return iter(list(self._data.items()))
