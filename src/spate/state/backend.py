"""The local backends a store keeps its state in, behind one small contract.

A backend is a plain byte map (encoded key → encoded entry, :mod:`spate.state.codec`)
plus one checkpoint: what the map reflects (see :mod:`spate.state.changelog`). Both
change in one atomic :meth:`Backend.write`, so after a crash the map and its
checkpoint always agree. The checkpoint is kept under a reserved key no encoded store
key can be (an encoded key is one msgpack document; this is not).

The subclasses say only how bytes are stored (:mod:`.memory`, :mod:`.sqlite`,
:mod:`.rocksdb`); everything else is here, once.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

CHECKPOINT_KEY = b"\xc1spate-checkpoint"
"""0xc1 is the one byte msgpack never uses: no encoded store key starts with it."""


class Backend(abc.ABC):
    """One (processor, store, partition)'s local state."""

    kind: str
    """The setting's name for this backend (``memory``, ``sqlite``, ``rocksdb``)."""

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every stored (key, entry), the checkpoint aside."""
        return ((k, v) for k, v in self._items() if k != CHECKPOINT_KEY)

    def checkpoint(self) -> bytes | None:
        """The checkpoint written with the last :meth:`write` (None: never written)."""
        return self._get(CHECKPOINT_KEY)

    def write(self, changes: Mapping[bytes, bytes | None], checkpoint: bytes) -> None:
        """Apply ``changes`` (None deletes the key) and the new checkpoint atomically."""
        self._apply({**changes, CHECKPOINT_KEY: checkpoint})

    def write_changes(
        self, puts: Mapping[bytes, bytes], deleted: Collection[bytes], checkpoint: bytes
    ) -> None:
        """:meth:`write` with the deletions apart: put every key of ``puts``, delete
        every key of ``deleted`` (none of them in ``puts``), and the new checkpoint,
        atomically. A flush has its changes in these two forms already; a backend that
        can apply them so (no None to look for per key) overrides this."""
        self._apply({**puts, **dict.fromkeys(deleted), CHECKPOINT_KEY: checkpoint})

    @abc.abstractmethod
    def _items(self) -> Iterator[tuple[bytes, bytes]]: ...

    @abc.abstractmethod
    def _get(self, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def _apply(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Put or delete (None) every key in one atomic step."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget everything, checkpoint included (a rebuild starts from here)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the files; idempotent."""


BackendFactory = type[Backend]


def store_path(root: Path, processor: str, store: str, topic: str, partition: int) -> Path:
    """Where one (processor, store, source partition) keeps its files under ``root``."""
    return root / processor / store / f"{topic}-{partition}"
