"""Per-partition state (DESIGN §8): stores, their changelogs, their recovery."""

from spate.state.store import CachedStore, MemoryStore, Store, StoreKey
from spate.state.view import State

__all__ = ["CachedStore", "MemoryStore", "State", "Store", "StoreKey"]
