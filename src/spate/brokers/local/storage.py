"""The SQLite database behind the embedded broker: opening, schema, threads, wake-ups.

One :class:`Database` per process and location, one call per batch, never per record.
On a file every statement runs on one dedicated thread: SQLite calls block, and a
``synchronous=FULL`` commit waits for the disk. ``memory://NAME`` databases never
touch a disk, so their calls run directly on the caller's thread (under a lock):
a thread hop would cost more than the call. They live in this process only and are
shared by every broker opened on the same name until the last one closes.

Wake-ups: a writer in this process resolves the waiters of its own process at once; a
write from another process is noticed by polling ``PRAGMA data_version`` on a second,
read-only connection — a cheap counter SQLite changes whenever another connection
commits — with a sleep that backs off from 1 ms to 20 ms, so an idle consumer costs a
few dozen tiny queries a second and a record still arrives well within 50 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

from spate.brokers.local.errors import to_spate_error
from spate.errors import BrokerError, ConfigError, ConnectError, SpateError

T = TypeVar("T")

FORMAT_VERSION = 1
"""Bumped whenever the schema changes incompatibly; a newer file is refused, not guessed."""

PAGE_SIZE = 16384
WAL_SIZE_LIMIT = 64 * 1024 * 1024
DB_FILE = "spate.db"
_OWN_FILES = frozenset({DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm", f"{DB_FILE}-journal"})

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
"""Records are the user's data: a directory spate creates and its files are readable by
their owner only, whatever the umask (SQLite gives the -wal and -shm files the database
file's mode, so making ``spate.db`` private is enough)."""

Synchronous = Literal["full", "normal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL,
    config TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    start_offset INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    max_timestamp_ms INTEGER NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_by_offset ON batches (topic, partition, last_offset);
CREATE TABLE IF NOT EXISTS offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    records_lost INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL,
    member TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member TEXT,
    epoch INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
"""


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: take the write lock up front, so a busy database
    makes this process wait (``busy_timeout``) instead of failing on a lock upgrade."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (an empty file is a new
    SQLite database); an existing database keeps its mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise ConnectError(f"cannot create the local broker database {str(path)!r}: {exc}") from exc
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # the open's mode passes through the umask
    finally:
        os.close(fd)


class Database:
    """One SQLite database, its worker thread and its change notifications."""

    def __init__(
        self,
        location: Path | None,
        *,
        name: str,
        synchronous: Synchronous = "full",
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.location = location
        self.name = name
        self._synchronous = synchronous
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spate-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._watcher: sqlite3.Connection | None = None
        self._watch_lock = threading.Lock()
        self._inline_lock = threading.Lock()
        self._local_version = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._waiters_lock = threading.Lock()
        self.users = 0

    @property
    def where(self) -> str:
        if self.location is None:
            return f"memory://{self.name}"
        return f"local broker database {str(self.location / DB_FILE)!r}"

    # -- opening ---------------------------------------------------------------------

    def open_blocking(self) -> None:
        """Open (creating if new) and check the database; raise ConnectError/ConfigError."""
        try:
            self._executor.submit(self._open_sync).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    def _open_sync(self) -> None:
        try:
            if self.location is None:
                self._conn = self._connect(":memory:")
            else:
                self._check_directory(self.location)
                _create_private_file(self.location / DB_FILE)
                self._conn = self._connect(str(self.location / DB_FILE))
                mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise ConnectError(f"{self.where} cannot use WAL mode (got {mode!r})")
                self._conn.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
                # After a burst the WAL file shrinks back to this size at a checkpoint.
                self._conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._install_schema(self._conn)
            if self.location is not None:
                self._watcher = sqlite3.connect(
                    str(self.location / DB_FILE), check_same_thread=False, isolation_level=None
                )
                self._watcher.execute("PRAGMA busy_timeout=0")
        except SpateError:
            self._close_sync()
            raise
        except sqlite3.Error as exc:
            self._close_sync()
            raise to_spate_error(exc, self.where, ConnectError) from exc

    def _connect(self, target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        # Batches are blobs of tens to hundreds of KiB: bigger pages mean fewer overflow
        # pages to chain, copy and checksum (only takes effect when the file is created).
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        # Space freed by retention goes back to the file system (see retention.py).
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        return conn

    def _check_directory(self, path: Path) -> None:
        if path.exists() and not path.is_dir():
            raise ConfigError(
                f"local broker path {str(path)!r} is a file, not a directory; "
                "give a directory, e.g. local://.spate"
            )
        try:
            path.mkdir(parents=True, mode=PRIVATE_DIR_MODE)
            # mkdir's mode passes through the umask; the directory must be 0700 anyway.
            path.chmod(PRIVATE_DIR_MODE)
        except FileExistsError:
            pass  # the user's directory: its mode is the user's choice
        except OSError as exc:
            raise ConnectError(
                f"cannot create the local broker directory {str(path)!r}: {exc}"
            ) from exc
        names = {entry.name for entry in path.iterdir()}
        if DB_FILE not in names and names - _OWN_FILES:
            raise ConfigError(
                f"directory {str(path)!r} is not a spate broker: it holds other files "
                f"({', '.join(sorted(names - _OWN_FILES)[:3])}); give an empty or new "
                "directory, e.g. local://.spate"
            )

    def _install_schema(self, conn: sqlite3.Connection) -> None:
        with write_transaction(conn):
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            if tables and "meta" not in tables:
                raise ConfigError(
                    f"{self.where} is a SQLite database but not a spate broker (no meta "
                    "table); point local:// at an empty or new directory"
                )
            row = None
            if tables:
                row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
            if tables and row is None:
                raise ConfigError(f"{self.where} has no format version; it is not a spate broker")
            if row is not None and int(row[0]) > FORMAT_VERSION:
                raise ConfigError(
                    f"{self.where} was written by a newer spate (format version {row[0]}; "
                    f"this spate reads up to {FORMAT_VERSION}); upgrade spate-streams"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('format_version', ?)",
                (str(FORMAT_VERSION),),
            )

    # -- running statements ------------------------------------------------------------

    async def run(
        self, fn: Callable[[sqlite3.Connection], T], error: type[SpateError] = BrokerError
    ) -> T:
        """Run ``fn(connection)`` on the database thread (inline for memory://);
        SQLite errors become ``error``."""
        if self.location is None:
            with self._inline_lock:
                return self._call(fn, error)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, error)

    def _call(self, fn: Callable[[sqlite3.Connection], T], error: type[SpateError]) -> T:
        conn = self._conn
        if conn is None:
            raise ConnectError(f"{self.where} is closed")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise to_spate_error(exc, self.where, error) from exc

    # -- change notification -----------------------------------------------------------

    def version(self) -> tuple[int, int]:
        """A token that changes whenever anyone commits; cheap, safe on the event loop."""
        return (self._local_version, self._data_version())

    def _data_version(self) -> int:
        watcher = self._watcher
        if watcher is None:
            return 0
        with self._watch_lock:
            try:
                return int(watcher.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                return -1 - self._local_version

    def notify(self) -> None:
        """Wake every waiter of this process: something was committed."""
        self._local_version += 1
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            with contextlib.suppress(RuntimeError):
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)

    async def wait_for_change(self, token: tuple[int, int], timeout_s: float) -> None:
        """Return once :meth:`version` differs from ``token``, or after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        delay = 0.001
        polling = self._watcher is not None
        while self.version() == token:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            waiter: asyncio.Future[None] = loop.create_future()
            with self._waiters_lock:
                self._waiters.append(waiter)
            try:
                await asyncio.wait(
                    (waiter,), timeout=min(delay, remaining) if polling else remaining
                )
            finally:
                with self._waiters_lock, contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            delay = min(delay * 2, 0.02)

    # -- closing -----------------------------------------------------------------------

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_sync)
        self._executor.shutdown(wait=False)

    def _close_sync(self) -> None:
        for conn in (self._conn, self._watcher):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
        self._conn = self._watcher = None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_open: dict[tuple[str, str], Database] = {}
_open_lock = threading.Lock()


async def acquire_database(
    location: Path | None,
    *,
    name: str,
    synchronous: Synchronous,
    busy_timeout_s: float,
) -> Database:
    """The process's shared :class:`Database` for this location, opened on first use.

    Opening runs on a helper thread under a thread lock, so brokers on different event
    loops (one per test, say) share one database safely.
    """
    return await asyncio.to_thread(_acquire, location, name, synchronous, busy_timeout_s)


def _acquire(
    location: Path | None, name: str, synchronous: Synchronous, busy_timeout_s: float
) -> Database:
    key = ("memory", name) if location is None else ("local", str(location.resolve()))
    with _open_lock:
        db = _open.get(key)
        if db is None:
            db = Database(
                location, name=name, synchronous=synchronous, busy_timeout_s=busy_timeout_s
            )
            db.open_blocking()
            _open[key] = db
        db.users += 1
        return db


async def release_database(db: Database) -> None:
    """Drop one user; the last one closes the database (a memory one disappears)."""
    with _open_lock:
        db.users -= 1
        last = db.users == 0
        if last:
            for key, value in list(_open.items()):
                if value is db:
                    del _open[key]
    if last:
        await db.close()
