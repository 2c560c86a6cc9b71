"""``nats://`` and ``tls://``: spate on NATS JetStream (DESIGN §5, docs/nats.md).

Ties together the connection (:mod:`.client`), topics (:mod:`.admin`), publishing
(:mod:`.producer`), group leases (:mod:`.leases`), reading and committing
(:mod:`.consumer`) and committed offsets (:mod:`.offsets`). NATS has neither
partitions nor consumer groups; spate builds both: a partition is a stream, a group
member owns partitions by leases in a key-value bucket.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Self

from nats.aio.client import Client
from nats.js import JetStreamContext

from spate.brokers.base import (
    Capabilities,
    Consumer,
    OffsetReset,
    PartitionLag,
    Producer,
    ReaderStart,
    RebalanceListener,
    TopicInfo,
)
from spate.brokers.leased import DEFAULT_LEASE_TTL_S
from spate.brokers.lifecycle import OwningBroker
from spate.brokers.nats import offsets
from spate.brokers.nats.admin import TopicAdmin
from spate.brokers.nats.client import NatsOptions, connect_options, open_connection
from spate.brokers.nats.consumer import NatsConsumer
from spate.brokers.nats.errors import spate_errors
from spate.brokers.nats.leases import NatsLeaseStore
from spate.brokers.nats.producer import NatsProducer
from spate.brokers.nats.reader import NatsReader
from spate.brokers.url import BrokerURL
from spate.clock import SYSTEM_CLOCK, Clock
from spate.errors import ConfigError, ConnectError, SpateError


class NatsBroker(OwningBroker):
    """JetStream as a spate broker. Use as ``async with spate.connect("nats://…") as b``."""

    capabilities = Capabilities(
        native_groups=False,
        per_key_order=True,
        replay=True,
        transactions=False,
        dedup_on_publish=True,
        partitions=True,
        seek=True,
        admin=True,
        lag=True,
        reader=True,
        delete_records=True,
    )

    def __init__(
        self,
        url: str,
        connect_kwargs: Mapping[str, Any],
        *,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
        heartbeat_s: float | None = None,
        ack_wait_s: float = 300.0,
        max_ack_pending: int = 100_000,
        request_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        for name, value in (
            ("lease_ttl_s", lease_ttl_s),
            ("ack_wait_s", ack_wait_s),
            ("request_timeout_s", request_timeout_s),
            ("max_ack_pending", max_ack_pending),
        ):
            if value <= 0:
                raise ConfigError(f"NATS broker option {name}={value!r} must be > 0")
        super().__init__()
        self.url = url
        self.lease_ttl_s = lease_ttl_s
        self.heartbeat_s = heartbeat_s
        self.ack_wait_s = ack_wait_s
        self.max_ack_pending = max_ack_pending
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.clock = clock
        self._connect_kwargs = dict(connect_kwargs)
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._admin: TopicAdmin | None = None
        self._leases: NatsLeaseStore | None = None

    @classmethod
    def from_url(cls, parsed: BrokerURL, options: dict[str, Any]) -> Self:
        """Build from ``nats://host:port[,…][?…]``; see :mod:`spate.brokers.nats.client`."""
        own, passthrough = NatsOptions.split(parsed, options)
        stripped = dataclasses.replace(parsed, query=NatsOptions.foreign_query(parsed))
        return cls(parsed.redacted, connect_options(stripped, passthrough), **own.as_kwargs())

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ConnectError(
                f"broker {self.url} is not started; use `async with spate.connect(url) as broker`"
            )
        return self._client

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise ConnectError(f"broker {self.url} is not started")
        return self._js

    @property
    def admin(self) -> TopicAdmin:
        if self._admin is None:
            raise ConnectError(f"broker {self.url} is not started")
        return self._admin

    @property
    def leases(self) -> NatsLeaseStore:
        if self._leases is None:
            raise ConnectError(f"broker {self.url} is not started")
        return self._leases

    @property
    def available(self) -> bool:
        """False while nats-py is reconnecting."""
        return self._client is None or self._client.is_connected

    def _is_closed(self) -> bool:
        return self._closed

    async def start(self) -> None:
        self._check_open()
        if self._client is not None:
            return
        self._client, self._js = await open_connection(
            self._connect_kwargs, self.url, self.request_timeout_s, self.connect_timeout_s
        )
        self._admin = TopicAdmin(self._js)
        self._leases = NatsLeaseStore(self._js, self.clock)

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            with contextlib.suppress(SpateError), spate_errors("close the connection"):
                await client.close()

    # -- admin ---------------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
        *,
        exist_ok: bool = False,
    ) -> TopicInfo:
        return await self.admin.create(name, partitions, config or {}, exist_ok)

    async def describe_topic(self, name: str) -> TopicInfo:
        return await self.admin.describe(name)

    async def delete_topic(self, name: str) -> None:
        await self.admin.delete(name)

    async def delete_before(self, topic: str, before_ms: int) -> int:
        return await self.admin.delete_before(topic, before_ms)

    async def list_topics(self) -> list[TopicInfo]:
        return await self.admin.list()

    async def lag(self, group: str, topics: Sequence[str] | None = None) -> list[PartitionLag]:
        return await offsets.lag(self.js, self.admin, group, topics)

    async def groups(self) -> list[str]:
        return sorted(await offsets.groups(self.js) | set(await self.leases.groups()))

    # -- clients -------------------------------------------------------------------------

    def _new_producer(self) -> Producer:
        return self._track(NatsProducer(self.client, self.admin, self._is_closed, self.clock))

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        listener: RebalanceListener | None = None,
        *,
        offset_reset: OffsetReset = "earliest",
        instance_id: str | None = None,
    ) -> Consumer:
        self._check_open()
        return self._track(NatsConsumer(self, topics, group, listener, offset_reset=offset_reset))

    def reader(self, topic: str, partition: int = 0, start: ReaderStart = "earliest") -> NatsReader:
        self._check_open()
        return self._track(NatsReader(self, topic, partition, start))
