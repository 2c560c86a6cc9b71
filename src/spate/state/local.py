"""Which local backend a store gets, where its files live, and what to do when they
cannot be read (DESIGN §8).

``state_backend="auto"`` picks RocksDB (rocksdict, the ``rocksdb`` extra) when it is
installed, SQLite otherwise, and memory on the memory:// broker, whose topics (the
changelogs too) die with the process anyway. Files live under
``<state_dir>/<app>/<processor>/<store>/<topic>-<partition>``.

Local files are a cache of the changelog, never the truth: files that cannot be
opened are wiped (``event=state_wiped``) and the store is rebuilt from the changelog,
never started empty.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

from spate.errors import RecoveryError, StateError
from spate.state.backend import Backend
from spate.state.memory import MemoryBackend
from spate.state.sqlite import SqliteBackend

log = logging.getLogger("spate.state")


def backend_kind(setting: str, broker_url: str) -> str:
    """The backend ``state_backend=setting`` means on the broker at ``broker_url``."""
    if setting != "auto":
        return setting
    if broker_url.startswith("memory:"):
        return "memory"
    return "rocksdb" if importlib.util.find_spec("rocksdict") is not None else "sqlite"


def _open(kind: str, path: Path) -> Backend:
    if kind == "memory":
        return MemoryBackend(path)
    if kind == "sqlite":
        return SqliteBackend(path)
    from spate.state.rocksdb import RocksdbBackend  # the rocksdb extra: imported if chosen

    return RocksdbBackend(path)


def open_backend(kind: str, path: Path) -> Backend:
    """The backend at ``path``; files that do not open are wiped, and it starts empty
    (its owner rebuilds it from the changelog). RecoveryError if another process
    holds them (a member that still runs): waiting, not wiping, is the cure."""
    try:
        return _open(kind, path)
    except StateError as exc:
        if "lock" in str(exc).lower():
            raise RecoveryError(
                f"state at {path} is locked by another process: {exc}", transient=True
            ) from exc
        log.warning("event=state_wiped path=%s reason=%s", path, str(exc).replace(" ", "_"))
        shutil.rmtree(path, ignore_errors=True)
    return _open(kind, path)
