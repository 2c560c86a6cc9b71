"""librdkafka configuration: spate's defaults, the URL, and the user's ``kafka_config``.

Precedence, lowest first: spate's defaults for the role (producer/consumer) < URL
query parameters < ``kafka_config``. Nothing the user gives is dropped or renamed; a
property librdkafka does not know fails when the client is created, with librdkafka's
message wrapped in :class:`ConfigError`.

spate sets librdkafka's unsafe-for-spate defaults explicitly: the consumer never
auto-commits or auto-stores offsets (spate commits what it processed), verifies CRCs,
and uses cooperative-sticky assignment so a rebalance only moves what must move.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from confluent_kafka import KafkaException

from spate.brokers.kafka.probe import DEFAULT_CONNECT_TIMEOUT_S
from spate.brokers.options import AdapterOptions, count, seconds
from spate.brokers.url import BrokerURL
from spate.clock import SYSTEM_CLOCK, Clock
from spate.errors import ConfigError

logger = logging.getLogger("spate.kafka")


class _RoleWarningFilter(logging.Filter):
    """Drop librdkafka's "is a consumer/producer property and will be ignored" warnings:
    one ``kafka_config`` serves every client role by design, so they are expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "property and will be ignored by this" not in record.getMessage()


logger.addFilter(_RoleWarningFilter())

DEFAULT_PORT = 9092

PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 1,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "delivery.report.only.error": True,
    "partitioner": "consistent_random",
}
"""Idempotent, acknowledged by all in-sync replicas, batched for throughput.

``linger.ms`` is 1, not librdkafka's 5: spate hands librdkafka a whole batch at once,
so there is little to wait for, and a batch sent sooner is usually acknowledged by the
time at-least-once settles it, which then needs no thread hand-off to flush.

Only failed deliveries are reported: success needs no Python callback per record.
``consistent_random`` (librdkafka's default, set here to say it is relied on) places a
key by CRC32 modulo the partition count, as spate does on every other broker.
"""

TRANSACTIONAL_DEFAULTS: Mapping[str, Any] = {"transaction.timeout.ms": 10_000}
"""As Kafka Streams does under exactly-once: a worker killed inside a transaction holds
``read_committed`` readers of its partitions back until the broker aborts it, so 10 s
rather than librdkafka's 60 s."""

CONSUMER_DEFAULTS: Mapping[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "check.crcs": True,
    "partition.assignment.strategy": "cooperative-sticky",
    "isolation.level": "read_committed",
    "fetch.wait.max.ms": 100,
}
"""``read_committed`` by default: free for topics without transactions, and the only
correct choice for topics written by exactly-once apps."""


@dataclass(frozen=True, kw_only=True, slots=True)
class KafkaOptions(AdapterOptions):
    """spate's own options of ``spate.connect("kafka://…", ...)``, not librdkafka's.

    librdkafka's properties go in ``kafka_config`` or the URL query, never as keywords.
    """

    adapter: ClassVar[str] = "Kafka"

    kafka_config: Mapping[str, Any] | None = None
    """librdkafka properties, for every client role; they win over the URL query."""
    replication_factor: int = field(default=-1, metadata=count())
    """Replicas of a topic ``create_topic`` makes (default, -1: the broker's)."""
    timeout_s: float = field(default=30.0, metadata=seconds())
    """Admin and transaction calls."""
    connect_timeout_s: float | None = field(default=None, metadata=seconds())
    """The first metadata request (default: 5 s, at most ``timeout_s``)."""
    clock: Clock = SYSTEM_CLOCK
    """Time for the adapter's retry pauses and waits (tests inject one)."""


class KafkaSettings:
    """The parsed URL and options, and the client configurations built from them."""

    def __init__(self, parsed: BrokerURL, options: KafkaOptions) -> None:
        if not parsed.hosts:
            raise ConfigError(f"broker URL {parsed.redacted!r}: no host; write kafka://host:port")
        self.url = parsed.redacted
        user_config = options.kafka_config or {}
        if not isinstance(user_config, Mapping):
            raise ConfigError("kafka_config must be a mapping of librdkafka properties")
        self.replication_factor = options.replication_factor
        self.timeout_s = options.timeout_s
        self.connect_timeout_s = options.connect_timeout_s or min(
            DEFAULT_CONNECT_TIMEOUT_S, self.timeout_s
        )
        self.clock = options.clock
        base: dict[str, Any] = {
            "bootstrap.servers": ",".join(f"{h}:{p}" for h, p in parsed.host_list(DEFAULT_PORT)),
            "client.id": "spate",
            "logger": logger,
        }
        if parsed.username is not None:
            base["sasl.username"] = parsed.username
        if parsed.password is not None:
            base["sasl.password"] = parsed.password
        self._base = base
        self._query = KafkaOptions.foreign_query(parsed)
        self._user = dict(user_config)

    @classmethod
    def from_url(cls, parsed: BrokerURL, options: Mapping[str, Any]) -> KafkaSettings:
        """spate's options from ``options`` and the query; any other keyword is refused,
        as librdkafka's properties belong in ``kafka_config``."""
        own, unknown = KafkaOptions.split(parsed, options)
        if unknown:
            raise ConfigError(
                f"kafka broker: unknown option(s) {', '.join(sorted(unknown))}; librdkafka "
                f"properties go in kafka_config={{...}}, spate's options are "
                f"{', '.join(sorted(KafkaOptions.names()))}"
            )
        return cls(parsed, own)

    def _merge(self, defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
        return {**defaults, **self._base, **overrides, **self._query, **self._user}

    def admin(self) -> dict[str, Any]:
        return self._merge({}, {})

    def producer(self, transactional_id: str | None) -> dict[str, Any]:
        if transactional_id is None:
            return self._merge(PRODUCER_DEFAULTS, {})
        return self._merge(
            {**PRODUCER_DEFAULTS, **TRANSACTIONAL_DEFAULTS}, {"transactional.id": transactional_id}
        )

    def consumer(
        self, group: str, offset_reset: str, instance_id: str | None = None
    ) -> dict[str, Any]:
        overrides = {"group.id": group, "auto.offset.reset": offset_reset}
        if instance_id is not None:
            overrides["group.instance.id"] = instance_id
        return self._merge(CONSUMER_DEFAULTS, overrides)


ClientT = TypeVar("ClientT")


def create_client(factory: Callable[[dict[str, Any]], ClientT], config: dict[str, Any]) -> ClientT:
    """Create a confluent-kafka client; a property librdkafka rejects → ConfigError."""
    try:
        return factory(config)
    except (KafkaException, ValueError, TypeError) as exc:
        raise ConfigError(f"kafka configuration rejected by librdkafka: {exc}") from exc
