"""Per-partition state (DESIGN §8): stores, their changelogs, their recovery; and
tables, the latest value per key of a topic that every worker keeps."""

from spate.state.store import MemoryStore, Store, StoreKey
from spate.state.table import Table

__all__ = ["MemoryStore", "Store", "StoreKey", "Table"]
