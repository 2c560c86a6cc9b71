"""LocalBroker: the embedded, serverless broker on SQLite (``local://PATH``, ``memory://``).

``local://PATH`` keeps everything in ``PATH/spate.db`` (default ``.spate``); several
processes of one user may share the directory, which spate creates 0700 with 0600
files (see :mod:`spate.brokers.local.storage`). ``memory://[NAME]`` is the same code on an
in-memory database that lives as long as a broker of this process has it open.

Topics keep every record unless their config sets ``retention.ms`` or
``retention.bytes`` (Kafka's names); records deleted by retention before a group
committed them are counted per group and partition (:meth:`LocalBroker.records_lost`)
— the policy is in :mod:`spate.brokers.local.retention`. Exactly-once is one SQLite
transaction: a transactional producer's records and the consumer's offsets are
written together after the lease epochs are checked.

URL query options (also accepted as keyword options of ``spate.connect``):

``synchronous=full|normal``
    ``full`` (default): a flush or commit that returned survives power loss.
    ``normal``: faster commits in WAL mode; a power loss or OS crash may undo the
    last commits (never corrupts the database; a crash of the process alone loses
    nothing). Use it when replaying a few seconds of input is acceptable.
``lease_ttl_s`` (default 10)
    How long a member that stopped heartbeating (killed, paused) keeps its partitions.
``heartbeat_s`` (default ``lease_ttl_s / 3``, at most 1 s)
    A heartbeat is also how members notice a join or a leave, so it bounds how
    fast partitions move; on a local file it costs one small write.
``busy_timeout_s`` (default 30)
    How long a statement waits for another process's write lock before failing.
``retention_check_s`` (default 30)
    How often retention (``retention.ms``, ``retention.bytes``) is enforced.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from spate.brokers.base import (
    Capabilities,
    Consumer,
    OffsetReset,
    PartitionLag,
    Producer,
    ReaderStart,
    RebalanceListener,
    TopicInfo,
    TransactionalProducer,
)
from spate.brokers.leased import DEFAULT_LEASE_TTL_S
from spate.brokers.lifecycle import OwningBroker
from spate.brokers.local import log, retention
from spate.brokers.local.consumer import LocalConsumer
from spate.brokers.local.producer import LocalProducer, LocalTransactionalProducer
from spate.brokers.local.reader import LocalReader
from spate.brokers.local.storage import (
    Database,
    Synchronous,
    acquire_database,
    release_database,
    write_transaction,
)
from spate.brokers.options import AdapterOptions, choice, seconds
from spate.brokers.url import BrokerURL
from spate.clock import SYSTEM_CLOCK, Clock
from spate.errors import ConfigError, ConnectError
from spate.record import TopicPartition
from spate.topic import validate_topic_name

logger = logging.getLogger("spate.brokers.local")

DEFAULT_PATH = ".spate"


@dataclass(frozen=True, kw_only=True, slots=True)
class LocalOptions(AdapterOptions):
    """The local broker's options (the module docstring says what each does).

    Each can be given as a keyword to ``spate.connect`` or in the URL query; there is
    no client library behind this adapter, so any other name is an error.
    """

    adapter: ClassVar[str] = "local broker"

    synchronous: Synchronous = field(default="full", metadata=choice("full", "normal"))
    lease_ttl_s: float = field(default=DEFAULT_LEASE_TTL_S, metadata=seconds())
    heartbeat_s: float | None = field(default=None, metadata=seconds())
    busy_timeout_s: float = field(default=30.0, metadata=seconds())
    retention_check_s: float = field(default=30.0, metadata=seconds())
    clock: Clock = SYSTEM_CLOCK


class LocalBroker(OwningBroker):
    """The embedded broker. Use as ``async with LocalBroker(...) as broker``."""

    capabilities = Capabilities(
        native_groups=False,
        per_key_order=True,
        replay=True,
        transactions=True,
        dedup_on_publish=False,
        partitions=True,
        seek=True,
        admin=True,
        lag=True,
        reader=True,
        delete_records=True,
    )

    def __init__(
        self,
        path: str | Path | None = DEFAULT_PATH,
        *,
        memory_name: str = "",
        synchronous: Synchronous = "full",
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
        heartbeat_s: float | None = None,
        busy_timeout_s: float = 30.0,
        retention_check_s: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ConfigError(f"synchronous={synchronous!r} is not valid; use full or normal")
        for name, value in (
            ("lease_ttl_s", lease_ttl_s),
            ("busy_timeout_s", busy_timeout_s),
            ("retention_check_s", retention_check_s),
        ):
            if value <= 0:
                raise ConfigError(f"local broker option {name}={value!r} must be > 0")
        if heartbeat_s is not None and not 0 < heartbeat_s < lease_ttl_s:
            raise ConfigError(
                f"heartbeat_s={heartbeat_s!r} must be > 0 and below lease_ttl_s={lease_ttl_s}"
            )
        self.path = None if path is None else Path(path).expanduser()
        self.memory_name = memory_name
        self.url = f"memory://{memory_name}" if self.path is None else f"local://{self.path}"
        self.synchronous: Synchronous = synchronous
        self.lease_ttl_s = lease_ttl_s
        self.heartbeat_s = min(lease_ttl_s / 3, 1.0) if heartbeat_s is None else heartbeat_s
        self.busy_timeout_s = busy_timeout_s
        self.retention_check_s = retention_check_s
        self.clock = clock
        super().__init__()
        self._db: Database | None = None

    @classmethod
    def from_url(cls, parsed: BrokerURL, options: dict[str, Any]) -> Self:
        """Build from ``local://PATH?opt=…`` or ``memory://NAME``; see the module doc."""
        own, unknown = LocalOptions.split(parsed, options)
        unknown.update(LocalOptions.foreign_query(parsed))
        if unknown:
            raise ConfigError(
                f"broker URL {parsed.redacted!r}: unknown option {next(iter(unknown))!r}; "
                f"the local broker knows {', '.join(sorted(LocalOptions.names()))}"
            )
        kwargs = own.as_kwargs()
        if parsed.scheme == "memory":
            return cls(None, memory_name=parsed.path, **kwargs)
        return cls(parsed.path, **kwargs)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def db(self) -> Database:
        """The open database; ConnectError before ``start`` or after ``close``."""
        if self._db is None:
            raise ConnectError(
                f"broker {self.url} is not started; use `async with spate.connect(url) as broker`"
            )
        return self._db

    async def start(self) -> None:
        if self._closed:
            raise ConnectError(f"broker {self.url} is closed")
        if self._db is not None:
            return
        self._db = await acquire_database(
            self.path,
            name=self.memory_name,
            synchronous=self.synchronous,
            busy_timeout_s=self.busy_timeout_s,
        )
        self._start_retention(
            self.enforce_retention, every_s=self.retention_check_s, clock=self.clock, log=logger
        )

    async def _disconnect(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await release_database(db)

    # -- admin ---------------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
        *,
        exist_ok: bool = False,
    ) -> TopicInfo:
        validate_topic_name(name)
        if not isinstance(partitions, int) or partitions < 1:
            raise ConfigError(f"topic {name!r}: partitions={partitions!r} must be an integer >= 1")
        settings = {str(k): str(v) for k, v in (config or {}).items()}
        retention.validate_config(name, settings)
        now = self.clock.time_ms()

        def run(conn: sqlite3.Connection) -> TopicInfo:
            with write_transaction(conn):
                return log.create_topic(conn, name, partitions, settings, now, exist_ok)

        return await self.db.run(run)

    async def describe_topic(self, name: str) -> TopicInfo:
        return await self.db.run(lambda conn: log.describe_topic(conn, name))

    async def delete_topic(self, name: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                log.delete_topic(conn, name)

        await self.db.run(run)

    async def list_topics(self) -> list[TopicInfo]:
        return await self.db.run(log.list_topics)

    async def lag(self, group: str, topics: Sequence[str] | None = None) -> list[PartitionLag]:
        return await self.db.run(lambda conn: log.group_lag(conn, group, topics))

    async def groups(self) -> list[str]:
        now_ms = self.clock.time_ms()
        return await self.db.run(lambda conn: log.groups(conn, now_ms))

    async def records_lost(self, group: str) -> dict[TopicPartition, int]:
        """Records retention deleted before ``group`` committed them, per partition."""
        return await self.db.run(lambda conn: retention.records_lost(conn, group))

    # -- clients -------------------------------------------------------------------------

    def _new_producer(self) -> Producer:
        return self._track(LocalProducer(self))

    def _new_transactional_producer(self, transactional_id: str) -> TransactionalProducer:
        return self._track(LocalTransactionalProducer(self, transactional_id))

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        listener: RebalanceListener | None = None,
        *,
        offset_reset: OffsetReset = "earliest",
        instance_id: str | None = None,
    ) -> Consumer:
        return self._track(
            LocalConsumer(self, self.db, topics, group, listener, offset_reset=offset_reset)
        )

    def reader(
        self, topic: str, partition: int = 0, start: ReaderStart = "earliest"
    ) -> LocalReader:
        return self._track(LocalReader(self, topic, partition, start))

    # -- retention -----------------------------------------------------------------------

    async def delete_before(self, topic: str, before_ms: int) -> int:
        """Whole produce batches go (see :func:`retention.delete_before`): a batch
        holding records on both sides of ``before_ms`` stays."""

        def run(conn: sqlite3.Connection) -> int:
            log.describe_topic(conn, topic)  # TopicNotFoundError if missing
            return retention.delete_before(conn, topic, before_ms)

        return await self.db.run(run)

    async def enforce_retention(self) -> list[retention.Loss]:
        """Apply ``retention.ms`` / ``retention.bytes`` now (the background task calls it)."""
        now = self.clock.time_ms()

        def run(conn: sqlite3.Connection) -> list[retention.Loss]:
            topics = {info.name: dict(info.config) for info in log.list_topics(conn)}
            return retention.enforce(conn, topics, now)

        return await self.db.run(run)


__all__ = ["LocalBroker"]
