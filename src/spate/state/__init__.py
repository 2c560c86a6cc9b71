"""Per-partition state (DESIGN §8): stores, their changelogs, their recovery; and
tables, the latest value per key of a topic that every worker keeps."""

from spate.state.store import CachedStore, MemoryStore, Store, StoreKey
from spate.state.table import Table
from spate.state.view import State

__all__ = ["CachedStore", "MemoryStore", "State", "Store", "StoreKey", "Table"]
