"""The store a stateful operator keeps per partition (DESIGN §8).

A :class:`Store` belongs to one (processor, store name, partition). Operators read
and write it while they run a batch; what they wrote becomes durable with the batch's
offsets (a pre-commit hook of :mod:`spate.runtime.checkpoint`), so after a crash the
store holds exactly what the committed records made of it.

Keys and values are plain data (None, bool, int, float, str, bytes, and lists,
tuples and dicts of those): what a changelog record can carry on every broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

from spate.clock import Clock
from spate.errors import StateError

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

    # Bulk forms, so an operator pays the call (and the expiry check) once per batch
    # instead of once per key (DESIGN §10). Each means exactly what its single-key form
    # does for every key in turn.

    def get_many(self, keys: Iterable[StoreKey]) -> list[Any]:
        """The value of each key in ``keys``, in their order (None for a key with none)."""
        ...

    def set_many(self, values: Mapping[StoreKey, Any]) -> None:
        """Give each key of ``values`` its value, none of them with a time to live."""
        ...

    def delete_many(self, keys: Iterable[StoreKey]) -> None:
        """Forget every key in ``keys`` (those with no value are skipped)."""
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

    def get_many(self, keys: Iterable[StoreKey]) -> list[Any]:
        return list(map(self._data.get, keys))

    def set_many(self, values: Mapping[StoreKey, Any]) -> None:
        self._data.update(values)

    def delete_many(self, keys: Iterable[StoreKey]) -> None:
        pop = self._data.pop
        for key in keys:
            pop(key, None)


class Pending(NamedTuple):
    """A store's changes since the last flush, in columns (:meth:`CachedStore.pending`)."""

    keys: list[StoreKey]
    """The keys set (or set again)."""
    values: list[Any]
    """Their values, in the same order."""
    expires_at_ms: list[int | None] | None
    """Their expiry times in the same order; None when no key has a time to live."""
    deleted: list[StoreKey]
    """The keys deleted (or swept out once expired)."""


SWEEP_INTERVAL_MS = 1000
"""Expired keys are swept out (and their deletion sent to the changelog) at most this
often, at a flush: a sweep scans every key with a time to live."""


class CachedStore:
    """A partition's store as the runtime keeps it: every live key in a dict, and the
    keys changed since the last commit, which :meth:`flush` hands to the changelog.

    Reads and writes are dict operations (DESIGN §10): nothing touches a disk or a
    broker until the batch ends. A key with a time to live reads as absent once its
    time passed, and is deleted for good (a changelog tombstone) by the next sweep.
    """

    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self._clock = clock
        self._values: dict[StoreKey, Any] = {}
        self._expiry: dict[StoreKey, int] = {}
        """Wall-clock millisecond at which each key with a time to live expires."""
        self._next_sweep_ms = 0
        self._dirty: set[StoreKey] = set()
        """Keys set since the last flush (each has a value)."""
        self._deleted: set[StoreKey] = set()
        """Keys deleted since the last flush (none has a value; none is in ``_dirty``):
        kept apart so a flush need not look up which of its keys still exist."""
        self._fresh: set[StoreKey] = set()
        """Keys of ``_dirty`` that were absent at the last flush: the changelog never
        held them, so deleting one before the next flush needs no tombstone. A window
        opened and closed between two checkpoints never reaches the changelog."""

    def get(self, key: StoreKey, default: Any = None) -> Any:
        if self._expiry and self._expired(key):
            return default
        return self._values.get(key, default)

    def _expired(self, key: object) -> bool:
        expires = self._expiry.get(key)  # type: ignore[call-overload]
        return expires is not None and expires <= self._clock.time_ms()

    def set(self, key: StoreKey, value: Any, *, ttl_s: float | None = None) -> None:
        if key not in self._values and key not in self._deleted:
            self._fresh.add(key)
        self._values[key] = value
        self._dirty.add(key)
        if self._deleted:
            self._deleted.discard(key)
        if ttl_s is None:
            if self._expiry:
                self._expiry.pop(key, None)
            return
        if not isinstance(ttl_s, int | float) or isinstance(ttl_s, bool) or not ttl_s > 0:
            raise StateError(
                f"store {self.name!r}: ttl_s={ttl_s!r} must be a positive number of "
                "seconds, or None for a key that never expires"
            )
        self._expiry[key] = self._clock.time_ms() + int(ttl_s * 1000)

    def delete(self, key: StoreKey) -> None:
        if key in self._values:
            del self._values[key]
            self._expiry.pop(key, None)
            self._dirty.discard(key)
            if key in self._fresh:
                self._fresh.discard(key)
            else:
                self._deleted.add(key)

    def __contains__(self, key: object) -> bool:
        if self._expiry and self._expired(key):
            return False
        return key in self._values

    def items(self) -> Iterator[tuple[StoreKey, Any]]:
        if not self._expiry:
            return iter(list(self._values.items()))
        now = self._clock.time_ms()
        expiry = self._expiry
        return iter([(k, v) for k, v in self._values.items() if expiry.get(k, now + 1) > now])

    def __len__(self) -> int:
        return len(self._values)

    def get_many(self, keys: Iterable[StoreKey]) -> list[Any]:
        if self._expiry:
            get = self.get
            return [get(key) for key in keys]
        return list(map(self._values.get, keys))

    def set_many(self, values: Mapping[StoreKey, Any]) -> None:
        # dict and set updates run in C: a batch's windows cost no Python call each.
        fresh = values.keys() - self._values.keys()
        if self._deleted:
            fresh -= self._deleted
            self._deleted.difference_update(values)
        self._fresh |= fresh
        self._values.update(values)
        self._dirty.update(values)
        if self._expiry:
            pop = self._expiry.pop
            for key in values:
                pop(key, None)

    def delete_many(self, keys: Iterable[StoreKey]) -> None:
        values = self._values
        present = values.keys() & keys
        if not present:
            return
        for key in present:
            del values[key]
        self._dirty -= present
        self._deleted |= present - self._fresh
        self._fresh -= present
        if self._expiry:
            pop = self._expiry.pop
            for key in present:
                pop(key, None)

    # --- what the runtime does with it ------------------------------------------------

    def load(self, key: StoreKey, value: Any, expires_at_ms: int | None) -> None:
        """Put a restored key back, as it was (not a change to flush)."""
        self._values[key] = value
        if expires_at_ms is None:
            self._expiry.pop(key, None)
        else:
            self._expiry[key] = expires_at_ms

    def unload(self, key: StoreKey) -> None:
        """Forget a key a restored tombstone deleted (not a change to flush)."""
        self._values.pop(key, None)
        self._expiry.pop(key, None)

    def changes(self) -> list[tuple[StoreKey, Any, int | None, bool]]:
        """Every key changed since the last call, as (key, value, expires_at_ms,
        deleted), the sweep of expired keys included; the store is clean after it."""
        if self._expiry:
            self._sweep()
        dirty, self._dirty = self._dirty, set()
        deleted, self._deleted = self._deleted, set()
        self._fresh = set()
        values, expiry = self._values, self._expiry
        changed = [(key, values.get(key), expiry.get(key), False) for key in dirty]
        return changed + [(key, None, None, True) for key in deleted]

    def pending(self) -> Pending:
        """What :meth:`changes` says, in columns for the flush: the keys set, their
        values, their expiry times (None when no key of the store has a time to live)
        and the keys deleted. The store is clean after it.

        A store of windows changes most of its keys at every commit, so the columns are
        made by passes that run in C rather than a tuple per key."""
        if self._expiry:
            self._sweep()
        live, self._dirty = list(self._dirty), set()
        deleted, self._deleted = list(self._deleted), set()
        self._fresh = set()
        expiry = self._expiry
        return Pending(
            live,
            list(map(self._values.__getitem__, live)),
            list(map(expiry.get, live)) if expiry else None,
            deleted,
        )

    def _sweep(self) -> None:
        now = self._clock.time_ms()
        if now < self._next_sweep_ms:
            return
        self._next_sweep_ms = now + SWEEP_INTERVAL_MS
        for key in [k for k, expires in self._expiry.items() if expires <= now]:
            del self._expiry[key]
            self._values.pop(key, None)
            self._dirty.discard(key)
            if key in self._fresh:
                self._fresh.discard(key)
            else:
                self._deleted.add(key)
