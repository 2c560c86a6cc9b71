"""The in-memory backend: nothing survives the process (tests, the memory:// broker).

A store on it is rebuilt from its changelog at every assignment, which is what a
fresh machine does anyway.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from spate.state.backend import CHECKPOINT_KEY, Backend


class MemoryBackend(Backend):
    kind = "memory"

    def __init__(self, path: Path | None = None) -> None:
        self._data: dict[bytes, bytes] = {}

    def _items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._data.items()))

    def _get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def _apply(self, changes: Mapping[bytes, bytes | None]) -> None:
        data = self._data
        # One update in C, then the deletions out (None only marks them).
        data.update(changes)  # type: ignore[arg-type]
        for key in [key for key, value in changes.items() if value is None]:
            del data[key]

    def write_changes(
        self, puts: Mapping[bytes, bytes], deleted: Collection[bytes], checkpoint: bytes
    ) -> None:
        # A dict in one process: atomic as far as anything can observe.
        data = self._data
        data.update(puts)
        pop = data.pop
        for key in deleted:
            pop(key, None)
        data[CHECKPOINT_KEY] = checkpoint

    def clear(self) -> None:
        self._data.clear()

    def close(self) -> None:
        return None
