"""The SQLite backend (standard library): the durable fallback without rocksdict.

One file per (processor, store, partition), one table of (key, entry) blobs, a
write-ahead log so a commit is one fsync-free append; each :meth:`write` is one
transaction, so the map and its checkpoint change together or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

from spate.errors import StateError
from spate.state.backend import Backend


class SqliteBackend(Backend):
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / "state.sqlite"
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
            )
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot open the state file {self.path}: {exc}") from exc

    def _items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._db.execute("SELECT k, v FROM kv").fetchall())

    def _get(self, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _apply(self, changes: Mapping[bytes, bytes | None]) -> None:
        puts = [(k, v) for k, v in changes.items() if v is not None]
        deletes = [(k,) for k, v in changes.items() if v is None]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", puts)
            self._db.executemany("DELETE FROM kv WHERE k = ?", deletes)

    def clear(self) -> None:
        self._db.execute("DELETE FROM kv")

    def close(self) -> None:
        self._db.close()
