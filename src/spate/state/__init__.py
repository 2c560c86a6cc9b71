"""Per-partition state (DESIGN §8): stores, their changelogs, their recovery."""

from spate.state.store import MemoryStore, Store, StoreKey

__all__ = ["MemoryStore", "Store", "StoreKey"]
