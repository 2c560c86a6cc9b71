"""``kafka://host:port[,host:port…]``: admin, producers and consumers on confluent-kafka.

Admin calls go through librdkafka's AdminClient (futures awaited without blocking the
event loop). Topic creation and deletion wait until the metadata agrees, because Kafka
applies both asynchronously and a client acting right after would otherwise fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
)
from confluent_kafka import TopicPartition as CkTopicPartition

# confluent_kafka.admin re-exports these without listing them in __all__.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from spate.brokers.base import (
    Capabilities,
    OffsetReset,
    PartitionLag,
    ReaderStart,
    RebalanceListener,
    TopicInfo,
)
from spate.brokers.kafka.config import KafkaSettings, create_client
from spate.brokers.kafka.consumer import KafkaConsumer
from spate.brokers.kafka.errors import error_of, to_spate_error
from spate.brokers.kafka.probe import probe
from spate.brokers.kafka.producer import KafkaProducer, KafkaTransactionalProducer
from spate.brokers.kafka.reader import READER_GROUP, KafkaReader
from spate.brokers.lifecycle import OwningBroker
from spate.brokers.url import BrokerURL
from spate.errors import (
    BrokerError,
    ClosedError,
    ConfigError,
    TopicExistsError,
    TopicNotFoundError,
)
from spate.record import TopicPartition

T = TypeVar("T")

logger = logging.getLogger("spate.kafka")

SETTLE_POLL_S = 0.1
"""How often ``settled_end`` asks again while a transaction is open."""

_COORDINATOR_BUSY = (
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
)

_RETRY_LATER = (*_COORDINATOR_BUSY, KafkaError.UNSTABLE_OFFSET_COMMIT)
"""Errors an admin request is asked again after (until the timeout): a coordinator
loading, moving, or (``require_stable``) a transaction still committing offsets.
librdkafka flags UNSTABLE_OFFSET_COMMIT as not retriable, though it always clears."""

_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
"""Kafka's rule for topic names, checked here so every Kafka-compatible broker agrees."""

CAPABILITIES = Capabilities(
    native_groups=True,
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
    compaction=True,
)
"""The idempotent producer deduplicates retries within one producer session only, so
Kafka does not drop a record re-published by a new process: dedup_on_publish=False."""


class KafkaBroker(OwningBroker):
    """One Kafka cluster. ``spate.connect("kafka://h:9092", kafka_config={...})``."""

    capabilities = CAPABILITIES

    def __init__(self, settings: KafkaSettings) -> None:
        super().__init__()
        self._settings = settings
        self.url = settings.url
        self._admin: AdminClient | None = None

    @classmethod
    def from_url(cls, parsed: BrokerURL, options: dict[str, Any]) -> KafkaBroker:
        return cls(KafkaSettings.from_url(parsed, options))

    async def start(self) -> None:
        """Create the admin client and check that the cluster answers."""
        if self._admin is not None:
            return
        if self._closed:
            raise ClosedError(f"{self.url} was closed")
        admin = create_client(AdminClient, self._settings.admin())
        await probe(admin, self.url, self._settings.connect_timeout_s)
        self._admin = admin

    async def _disconnect(self) -> None:
        self._admin = None

    def _client(self) -> AdminClient:
        if self._closed:
            raise ClosedError(f"{self.url} was closed")
        if self._admin is None:
            raise ClosedError(f"{self.url} is not started: use `async with spate.connect(url)`")
        return self._admin

    async def _await(self, future: concurrent.futures.Future[T], context: str) -> T:
        try:
            return await asyncio.wrap_future(future)
        except KafkaException as exc:
            raise to_spate_error(exc, f"{context} on {self.url}") from exc

    async def _retrying(
        self, request: Callable[[], concurrent.futures.Future[T]], context: str
    ) -> T:
        """``request()`` again while the broker answers a retriable error (a group
        coordinator still loading after a restart) until the timeout passes."""
        clock = self._settings.clock
        deadline = clock.monotonic() + self._settings.timeout_s
        while True:
            try:
                return await asyncio.wrap_future(request())
            except KafkaException as exc:
                error = error_of(exc)
                retriable = error is not None and (
                    error.retriable() or error.code() in _RETRY_LATER
                )
                if not retriable or clock.monotonic() > deadline:
                    raise to_spate_error(exc, f"{context} on {self.url}") from exc
            await clock.sleep(0.1)

    async def _metadata(self, topic: str | None = None) -> Any:
        try:
            return await asyncio.to_thread(
                self._client().list_topics, topic, self._settings.timeout_s
            )
        except KafkaException as exc:
            raise to_spate_error(exc, f"metadata from {self.url}") from exc

    async def _wait_metadata(self, name: str, *, present: bool) -> None:
        clock = self._settings.clock
        deadline = clock.monotonic() + self._settings.timeout_s
        while clock.monotonic() < deadline:
            metadata = await self._metadata()
            topic = metadata.topics.get(name)
            exists = topic is not None and topic.error is None and bool(topic.partitions)
            ready = exists and all(p.leader >= 0 for p in topic.partitions.values())
            if ready if present else not exists:
                return
            await clock.sleep(0.05)

    # -- topics -----------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
        *,
        exist_ok: bool = False,
    ) -> TopicInfo:
        """``config`` holds Kafka topic configs; ``replication.factor`` may be given
        there too (else the ``replication_factor`` option, else the broker default)."""
        if not _LEGAL_TOPIC.fullmatch(name) or name in (".", ".."):
            raise ConfigError(
                f"topic name {name!r} is not valid on Kafka: use 1-249 characters from "
                "a-z A-Z 0-9 . _ -"
            )
        if partitions < 1:
            raise ConfigError(f"topic {name!r}: partitions must be at least 1, not {partitions}")
        topic_config = {k: str(v) for k, v in (config or {}).items()}
        replication = int(topic_config.pop("replication.factor", self._settings.replication_factor))
        futures = self._client().create_topics(
            [NewTopic(name, partitions, replication, config=topic_config)],
            request_timeout=self._settings.timeout_s,
        )
        try:
            await self._await(futures[name], f"create topic {name!r}")
        except TopicExistsError:
            if not exist_ok:
                raise
            return await self.describe_topic(name)
        await self._wait_metadata(name, present=True)
        return TopicInfo(name=name, partitions=partitions, config=topic_config)

    async def describe_topic(self, name: str) -> TopicInfo:
        metadata = await self._metadata()
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None:
            raise TopicNotFoundError(f"topic {name!r} does not exist on {self.url}")
        resource = ConfigResource(ResourceType.TOPIC, name)
        futures = self._client().describe_configs(
            [resource], request_timeout=self._settings.timeout_s
        )
        entries = await self._await(futures[resource], f"describe topic {name!r}")
        explicit = {
            key: entry.value
            for key, entry in entries.items()
            if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value and entry.value is not None
        }
        return TopicInfo(name=name, partitions=len(topic.partitions), config=explicit)

    async def delete_topic(self, name: str) -> None:
        futures = self._client().delete_topics([name], request_timeout=self._settings.timeout_s)
        await self._await(futures[name], f"delete topic {name!r}")
        await self._wait_metadata(name, present=False)

    async def list_topics(self) -> list[TopicInfo]:
        metadata = await self._metadata()
        return [
            TopicInfo(name=name, partitions=len(topic.partitions))
            for name, topic in sorted(metadata.topics.items())
            if not name.startswith("__") and topic.error is None
        ]

    # -- clients ----------------------------------------------------------------------

    def _new_producer(self) -> KafkaProducer:
        self._client()
        return self._track(
            KafkaProducer(
                self._settings.producer(None),
                url=self.url,
                timeout_s=self._settings.timeout_s,
                owner=self,
            )
        )

    def _new_transactional_producer(self, transactional_id: str) -> KafkaTransactionalProducer:
        self._client()
        return self._track(
            KafkaTransactionalProducer(
                self._settings.producer(transactional_id),
                url=self.url,
                timeout_s=self._settings.timeout_s,
                owner=self,
            )
        )

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        listener: RebalanceListener | None = None,
        *,
        offset_reset: OffsetReset = "earliest",
        instance_id: str | None = None,
    ) -> KafkaConsumer:
        self._client()
        return self._track(
            KafkaConsumer(
                self._settings.consumer(group, offset_reset, instance_id),
                topics,
                group,
                listener,
                url=self.url,
                timeout_s=self._settings.timeout_s,
                connect_timeout_s=self._settings.connect_timeout_s,
                owner=self,
            )
        )

    def reader(
        self, topic: str, partition: int = 0, start: ReaderStart = "earliest"
    ) -> KafkaReader:
        self._client()
        config = self._settings.consumer(READER_GROUP, "earliest")
        return self._track(KafkaReader(self, config, topic, partition, start))

    async def bounds(self, tp: TopicPartition) -> tuple[int, int]:
        """(first retained offset, last stable offset) of a partition, as ``lag`` sees them."""
        starts = await self._offsets({tp: None}, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        ends = await self._offsets({tp: None}, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        return starts[tp], ends[tp]

    async def settled_end(self, tp: TopicPartition, timeout_s: float) -> int:
        """The last stable offset once it reached the high watermark of now: every
        transaction that wrote to ``tp`` before this call is committed or aborted, so
        a read_committed reader up to here sees everything committed before it.

        The stable offset alone is not enough: it stops at the first open transaction
        (a SIGKILLed producer's, open until ``transaction.timeout.ms`` aborts it; or a
        committed one whose marker the broker has not written yet) and hides every
        transaction committed after it, though their consumer offsets may already be
        committed (a restore reading only to it would lose those batches' changes).
        A transient BrokerError after ``timeout_s``."""
        clock = self._settings.clock
        started = clock.monotonic()
        written = (
            await self._offsets(
                {tp: None},
                OffsetSpec.latest(),  # type: ignore[no-untyped-call]
                IsolationLevel.READ_UNCOMMITTED,
            )
        )[tp]
        told = False
        while True:
            stable = (await self._offsets({tp: None}, OffsetSpec.latest()))[tp]  # type: ignore[no-untyped-call]
            if stable >= written:
                if told:
                    logger.info(
                        "event=transactions_settled partition=%s[%d] end=%d seconds=%.3f",
                        tp.topic,
                        tp.partition,
                        stable,
                        clock.monotonic() - started,
                    )
                return stable
            waited = clock.monotonic() - started
            if waited > timeout_s:
                raise BrokerError(
                    f"{tp.topic}[{tp.partition}] on {self.url}: a transaction open at "
                    f"offset {stable} did not end within {timeout_s}s (written up to "
                    f"{written}); is a producer hanging with transaction.timeout.ms that long?",
                    transient=True,
                )
            if not told:
                told = True
                logger.info(
                    "event=waiting_for_open_transaction partition=%s[%d] stable=%d "
                    "written=%d; a producer's transaction is open (one killed is aborted "
                    "after its transaction.timeout.ms)",
                    tp.topic,
                    tp.partition,
                    stable,
                    written,
                )
            await clock.sleep(SETTLE_POLL_S)

    async def delete_before(self, topic: str, before_ms: int) -> int:
        """DeleteRecords up to the offset ``offsets_for_times`` gives for ``before_ms``
        in each partition (the log end where no record is that recent)."""
        info = await self.describe_topic(topic)
        tps = {TopicPartition(topic, p): None for p in range(info.partitions)}
        starts = await self._offsets(tps, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        cuts = await self._offsets(tps, OffsetSpec.for_timestamp(before_ms))
        futures = self._client().delete_records(
            [CkTopicPartition(tp.topic, tp.partition, cut) for tp, cut in cuts.items()],
            request_timeout=self._settings.timeout_s,
        )
        removed = 0
        for ck_tp, future in futures.items():
            deleted = await self._await(future, f"delete records of {topic}[{ck_tp.partition}]")
            removed += deleted.low_watermark - starts[TopicPartition(topic, ck_tp.partition)]
        return removed

    # -- groups -----------------------------------------------------------------------

    async def groups(self) -> list[str]:
        future = self._client().list_consumer_groups(request_timeout=self._settings.timeout_s)
        result = await self._await(future, "list groups")
        if result.errors:
            # Some brokers did not answer: a partial list would silently hide groups.
            raise to_spate_error(result.errors[0], f"list groups on {self.url}")
        return sorted(g.group_id for g in result.valid)

    async def lag(self, group: str, topics: Sequence[str] | None = None) -> list[PartitionLag]:
        """Committed offset vs the last stable offset (read_committed high watermark),
        for every partition of ``topics`` (default: the topics the group committed on).
        A partition without a commit lags by all its retained records."""
        committed = await self._group_offsets(group, stable=False)
        if topics is None:
            topics = sorted({tp.topic for tp in committed})
        if topics:
            wanted = set(topics)
            committed = {tp: o for tp, o in committed.items() if tp.topic in wanted}
            metadata = await self._metadata()
            for name in topics:
                topic = metadata.topics.get(name)
                if topic is None or topic.error is not None:
                    raise TopicNotFoundError(f"topic {name!r} does not exist on {self.url}")
                for partition in topic.partitions:
                    committed.setdefault(TopicPartition(name, partition), None)
        if not committed:
            return []
        ends = await self._offsets(committed, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        starts = await self._offsets(committed, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        return [
            PartitionLag(
                topic=tp.topic,
                partition=tp.partition,
                committed=offset,
                end_offset=ends[tp],
                lag=max(0, ends[tp] - (starts[tp] if offset is None else offset)),
            )
            for tp, offset in sorted(committed.items())
        ]

    async def committed(
        self, group: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Waits until no transaction that commits offsets of ``group`` is in flight
        (``require_stable``, KIP-447), as the group's read_committed consumers do before
        they resume. Without that, a transaction whose commit is being completed (its
        worker killed mid-commit) still shows the offsets before it while the new
        owner's consumer resumes after it, and a store restored up to the older offsets
        would miss that batch's changes for good."""
        offsets = await self._group_offsets(group, stable=True)
        return {tp: offsets.get(tp) or 0 for tp in partitions}

    async def _group_offsets(self, group: str, *, stable: bool) -> dict[TopicPartition, int | None]:
        """The group's committed offsets; ``stable``: once none is in flight (retrying
        while the broker says some are, until the timeout)."""
        clock = self._settings.clock
        deadline = clock.monotonic() + self._settings.timeout_s
        while True:
            result = await self._retrying(
                lambda: self._client().list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group)],
                    require_stable=stable,
                    request_timeout=self._settings.timeout_s,
                )[group],
                f"offsets of group {group!r}",
            )
            unstable = next((tp.error for tp in result.topic_partitions if tp.error), None)
            if unstable is None:
                return {
                    TopicPartition(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None
                    for tp in result.topic_partitions
                }
            retriable = unstable.retriable() or unstable.code() in _RETRY_LATER
            if not retriable or clock.monotonic() > deadline:
                raise to_spate_error(unstable, f"offsets of group {group!r} on {self.url}")
            await clock.sleep(0.1)

    async def _offsets(
        self,
        tps: Mapping[TopicPartition, Any],
        spec: Any,
        isolation: Any = IsolationLevel.READ_COMMITTED,
    ) -> dict[TopicPartition, int]:
        futures = self._client().list_offsets(
            {CkTopicPartition(t, p): spec for t, p in tps},
            isolation_level=isolation,
            request_timeout=self._settings.timeout_s,
        )
        found: dict[TopicPartition, int] = {}
        for ck_tp, future in futures.items():
            info = await self._await(future, f"offsets of {ck_tp.topic}[{ck_tp.partition}]")
            found[TopicPartition(ck_tp.topic, ck_tp.partition)] = info.offset
        return found
