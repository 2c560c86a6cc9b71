"""The RocksDB backend (rocksdict, the ``rocksdb`` extra): the durable default when
installed. Raw byte keys and values; each :meth:`write` is one RocksDB write batch,
so the map and its checkpoint change together or not at all.
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch

from spate.errors import StateError
from spate.state.backend import CHECKPOINT_KEY, Backend


class RocksdbBackend(Backend):
    kind = "rocksdb"

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / "state.rocksdb"
        try:
            self._db = Rdict(str(self.path), Options(raw_mode=True))
        except Exception as exc:  # rocksdict raises plain Exception for a bad database
            raise StateError(f"cannot open the state directory {self.path}: {exc}") from exc
        self._closed = False

    def _items(self) -> Iterator[tuple[bytes, bytes]]:
        # raw mode: keys and values are bytes (rocksdict types them as any key kind)
        return iter(
            [(k, v) for k, v in self._db.items() if isinstance(k, bytes) and isinstance(v, bytes)]
        )

    def _get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def _apply(self, changes: Mapping[bytes, bytes | None]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._db.write(batch)

    def write_changes(
        self, puts: Mapping[bytes, bytes], deleted: Collection[bytes], checkpoint: bytes
    ) -> None:
        batch = WriteBatch(raw_mode=True)
        put = batch.put
        for key, value in puts.items():
            put(key, value)
        for key in deleted:
            batch.delete(key)
        put(CHECKPOINT_KEY, checkpoint)
        self._db.write(batch)

    def clear(self) -> None:
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._db = Rdict(str(self.path), Options(raw_mode=True))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()
