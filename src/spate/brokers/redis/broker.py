"""RedisBroker: ``redis://`` and ``rediss://`` on redis-py's asyncio client.

Topics, groups, lag and retention; producers and consumers live in their own modules.
See :mod:`spate.brokers.redis.keys` for the key layout and ``docs/redis.md`` for the
user-facing guide.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Self

import orjson

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
from spate.brokers.lifecycle import OwningBroker
from spate.brokers.redis import keys
from spate.brokers.redis.client import RedisClient, RedisOptions, raise_first
from spate.brokers.redis.consumer import RedisConsumer
from spate.brokers.redis.errors import spate_errors
from spate.brokers.redis.producer import RedisProducer
from spate.brokers.redis.reader import RedisReader
from spate.brokers.redis.scripts import CLAIM_TOPIC_SCRIPT
from spate.brokers.redis.streams import PartitionStreams, RetentionPolicy, TrimResult
from spate.brokers.url import BrokerURL
from spate.errors import (
    ConfigError,
    TopicExistsError,
    TopicNotFoundError,
)
from spate.record import TopicPartition
from spate.topic import new_incarnation, validate_topic_name

logger = logging.getLogger("spate.brokers.redis")


class RedisBroker(OwningBroker):
    """Redis Streams. Use as ``async with spate.connect("redis://host:6379/0") as b``."""

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

    def __init__(self, url: BrokerURL, options: RedisOptions, passthrough: Mapping[str, Any]):
        super().__init__()
        self.url = url.redacted
        self.options = options
        self.client = RedisClient(
            url, passthrough, reconnect_timeout_s=options.reconnect_timeout_s, clock=options.clock
        )
        self._streams = PartitionStreams(self.client)
        self._partition_counts: dict[str, int] = {}
        self._started = False

    @classmethod
    def from_url(cls, parsed: BrokerURL, options: dict[str, Any]) -> Self:
        """Build from ``redis[s]://[user:password@]host[:port][/db][?options]``.

        spate's own options (:class:`RedisOptions`) come from keywords or the query;
        everything else passes to ``redis.asyncio.Redis`` untouched.
        """
        own, passthrough = RedisOptions.split(parsed, options)
        return cls(parsed, own, passthrough)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while a command keeps retrying a lost connection."""
        return self.client.available

    async def start(self) -> None:
        self._check_open()
        if self._started:
            return
        await self.client.start()
        self._started = True
        if self.options.retention_interval_s > 0:
            self._start_retention(
                self.enforce_retention,
                every_s=self.options.retention_interval_s,
                clock=self.options.clock,
                log=logger,
            )

    async def _disconnect(self) -> None:
        await self.client.close()

    # -- topics --------------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
        *,
        exist_ok: bool = False,
    ) -> TopicInfo:
        self._check_open()
        validate_topic_name(name)
        if not isinstance(partitions, int) or partitions < 1:
            raise ConfigError(f"topic {name!r}: partitions={partitions!r} must be an integer >= 1")
        config = {str(k): str(v) for k, v in (config or {}).items()}
        RetentionPolicy.from_config(name, config)
        what = f"creating topic {name!r}"
        incarnation = new_incarnation()
        claimed = await self.client.run(
            lambda pipe: CLAIM_TOPIC_SCRIPT.queue(
                pipe, [keys.topic_meta(name)], [partitions, incarnation]
            ),
            what,
        )
        raise_first(claimed, what)
        if not claimed[0]:
            if exist_ok:
                return await self.describe_topic(name)
            raise TopicExistsError(f"topic {name!r} exists already")

        def build(pipe: Any) -> None:
            for p in range(partitions):
                stream = keys.stream(name, p)
                pipe.xgroup_create(stream, "spate-create", id="$", mkstream=True)
                pipe.xgroup_destroy(stream, "spate-create")
            pipe.hset(keys.topic_meta(name), "config", orjson.dumps(config))
            pipe.sadd(keys.TOPICS, name)

        results = await self.client.run(build, what)
        raise_first(results, what)
        return TopicInfo(name=name, partitions=partitions, config=config, incarnation=incarnation)

    async def describe_topic(self, name: str) -> TopicInfo:
        self._check_open()
        what = f"describing topic {name!r}"
        results = await self.client.run(lambda pipe: pipe.hgetall(keys.topic_meta(name)), what)
        raise_first(results, what)
        return self._topic_info(name, results[0])

    def _topic_info(self, name: str, meta: Mapping[bytes, bytes]) -> TopicInfo:
        if not meta or b"partitions" not in meta:
            self._partition_counts.pop(name, None)
            raise TopicNotFoundError(
                f"topic {name!r} does not exist; create it with `spate topics create {name}`"
            )
        partitions = int(meta[b"partitions"])
        self._partition_counts[name] = partitions
        config = orjson.loads(meta[b"config"]) if b"config" in meta else {}
        incarnation = meta.get(b"incarnation", b"").decode()
        return TopicInfo(name=name, partitions=partitions, config=config, incarnation=incarnation)

    async def delete_topic(self, name: str) -> None:
        self._check_open()
        info = await self.describe_topic(name)
        tps = [TopicPartition(name, p) for p in range(info.partitions)]
        what = f"deleting topic {name!r}"
        with_tags: list[str] = []
        with spate_errors(what):
            for tp in tps:
                match = f"{{{keys.stream_of(tp)}}}:*"
                with_tags.extend([key async for key in self.client.redis.scan_iter(match=match)])

        def build(pipe: Any) -> None:
            pipe.srem(keys.TOPICS, name)
            pipe.delete(keys.topic_meta(name), *(keys.stream_of(tp) for tp in tps))
            for start in range(0, len(with_tags), 500):
                pipe.delete(*with_tags[start : start + 500])

        results = await self.client.run(build, what)
        raise_first(results, what)
        self._partition_counts.pop(name, None)

    async def list_topics(self) -> list[TopicInfo]:
        self._check_open()
        what = "listing topics"
        names = await self.client.run(lambda pipe: pipe.smembers(keys.TOPICS), what)
        raise_first(names, what)
        ordered = sorted(n.decode() for n in names[0])
        metas = await self.client.run(
            lambda pipe: [pipe.hgetall(keys.topic_meta(n)) for n in ordered], what
        )
        raise_first(metas, what)
        return [self._topic_info(n, m) for n, m in zip(ordered, metas, strict=True) if m]

    async def partition_count(self, topic: str) -> int:
        """The topic's partition count (cached: partitions never change)."""
        count = self._partition_counts.get(topic)
        if count is None:
            count = (await self.describe_topic(topic)).partitions
        return count

    async def partition_counts(self, topics: Sequence[str]) -> dict[str, int]:
        """Partition counts of those of ``topics`` that exist."""
        out: dict[str, int] = {}
        for topic in topics:
            with contextlib.suppress(TopicNotFoundError):
                out[topic] = await self.partition_count(topic)
        return out

    def forget_topic(self, topic: str) -> None:
        """Drop a cached partition count (the topic was deleted or re-created)."""
        self._partition_counts.pop(topic, None)

    # -- producers and consumers ---------------------------------------------------------

    def _new_producer(self) -> Producer:
        self._check_open()
        return self._track(
            RedisProducer(
                self.client,
                self.partition_count,
                self.forget_topic,
                dedup_window_ms=int(self.options.dedup_window_s * 1000),
                clock=self.options.clock,
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
    ) -> Consumer:
        self._check_open()
        return self._track(RedisConsumer(self, topics, group, listener, offset_reset=offset_reset))

    def reader(
        self, topic: str, partition: int = 0, start: ReaderStart = "earliest"
    ) -> RedisReader:
        self._check_open()
        return self._track(RedisReader(self, self._streams, topic, partition, start))

    # -- groups, lag, retention ----------------------------------------------------------

    async def groups(self) -> list[str]:
        self._check_open()
        what = "listing groups"
        results = await self.client.run(lambda pipe: pipe.smembers(keys.GROUPS), what)
        raise_first(results, what)
        return sorted(g.decode() for g in results[0])

    async def lag(self, group: str, topics: Sequence[str] | None = None) -> list[PartitionLag]:
        self._check_open()
        if topics is None:
            what = f"listing topics of group {group!r}"
            results = await self.client.run(
                lambda pipe: pipe.smembers(keys.group_topics(group)), what
            )
            raise_first(results, what)
            topics = sorted(t.decode() for t in results[0])
        tps: list[TopicPartition] = []
        for topic, count in (await self.partition_counts(topics)).items():
            tps.extend(TopicPartition(topic, p) for p in range(count))
        if not tps:
            return []
        return await self._streams.lag(group, sorted(tps))

    async def records_lost(self, group: str) -> dict[TopicPartition, int]:
        """Records retention removed before ``group`` acknowledged them, per partition
        (only on topics whose config says ``retention.allow.loss=true``)."""
        self._check_open()
        tps: list[TopicPartition] = []
        for info in await self.list_topics():
            tps.extend(TopicPartition(info.name, p) for p in range(info.partitions))
        what = f"reading records lost by group {group!r}"
        results = await self.client.run(
            lambda pipe: [pipe.hget(keys.stats(tp), group) for tp in tps], what
        )
        raise_first(results, what)
        return {tp: int(n) for tp, n in zip(tps, results, strict=True) if n}

    async def delete_before(self, topic: str, before_ms: int) -> int:
        """Retention's TRIM script with its cutoff at ``before_ms`` and loss allowed:
        it finds the first entry at or after that time by its ``t`` field (IDs are
        offsets, not times) and XTRIMs MINID up to it."""
        self._check_open()
        info = await self.describe_topic(topic)
        tps = [TopicPartition(topic, p) for p in range(info.partitions)]
        purge = RetentionPolicy(ms=0, allow_loss=True)
        return sum(result.removed for result in await self._streams.trim(tps, purge, before_ms))

    async def enforce_retention(self) -> dict[TopicPartition, TrimResult]:
        """Trim every topic that has a retention config, once; see docs/redis.md."""
        self._check_open()
        out: dict[TopicPartition, TrimResult] = {}
        now_ms = self.options.clock.time_ms()
        for info in await self.list_topics():
            policy = RetentionPolicy.from_config(info.name, info.config)
            if not policy.active:
                continue
            tps = [TopicPartition(info.name, p) for p in range(info.partitions)]
            results = await self._streams.trim(tps, policy, now_ms)
            for tp, result in zip(tps, results, strict=True):
                out[tp] = result
                if result.lost:
                    logger.warning(
                        "event=retention_lost_records topic=%s partition=%d records=%d "
                        "retention.allow.loss=true",
                        tp.topic,
                        tp.partition,
                        result.lost,
                    )
        return out
