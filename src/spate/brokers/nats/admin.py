"""Topics on JetStream: one stream per partition, registered in a key-value bucket.

Layout (documented in docs/nats.md):

* partition ``p`` of topic ``t`` is the subject ``t.p``, stored in its own stream
  ``SPATE-<t>-<p>`` (``.`` and ``_`` in ``t`` escaped as ``_2E``/``_5F``). One stream
  per partition makes JetStream's stream sequence a dense per-partition offset and
  lets a cluster place partitions on different servers, as Kafka does.
* offsets are the stream sequence minus one, so the first record is offset 0.
* the topic itself — partition count, config and incarnation (a random id made at
  creation, ``TopicInfo.incarnation``) — is one entry in the key-value bucket
  ``spate_topics``. Creating that entry (create-if-absent) is what makes a topic exist,
  so two processes creating the same topic agree on one partition count and one
  incarnation.

Topic config keys (Kafka's names where Kafka has one): ``retention.ms`` → the
streams' ``max_age``, ``retention.bytes`` → ``max_bytes`` per partition,
``replicas`` → ``num_replicas``, ``duplicate.window.ms`` → ``duplicate_window`` (the
window in which a re-published ``Nats-Msg-Id`` is dropped; JetStream's default 2 min).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import nats.js.errors
import orjson
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.kv import KeyValue

from spate.brokers.base import TopicInfo
from spate.brokers.nats.codec import timestamp_of
from spate.brokers.nats.errors import STREAM_NOT_FOUND, api_code, spate_errors
from spate.errors import BrokerError, ConfigError, TopicExistsError, TopicNotFoundError
from spate.record import TopicPartition
from spate.topic import new_incarnation, validate_topic_name

TOPICS_BUCKET = "spate_topics"
STREAM_PREFIX = "SPATE-"
_CONFIG_KEYS = ("retention.ms", "retention.bytes", "replicas", "duplicate.window.ms")


def stream_name(topic: str, partition: int) -> str:
    """The stream holding one partition; injective over valid topic names."""
    escaped = topic.replace("_", "_5F").replace(".", "_2E")
    return f"{STREAM_PREFIX}{escaped}-{partition}"


def subject(topic: str, partition: int) -> str:
    return f"{topic}.{partition}"


def _positive_number(topic: str, key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"topic {topic!r}: config {key}={text!r} must be a number > 0")
    return value


def stream_config(
    topic: str, partition: int, partitions: int, config: Mapping[str, str]
) -> StreamConfig:
    """The JetStream stream for one partition, with limits from the topic config."""
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise ConfigError(
            f"topic {topic!r}: config {', '.join(unknown)} not supported on NATS; "
            f"use {', '.join(_CONFIG_KEYS)}"
        )
    max_age = max_bytes = duplicate_window = None
    replicas = 1
    if "retention.ms" in config:
        max_age = _positive_number(topic, "retention.ms", config["retention.ms"]) / 1000.0
    if "retention.bytes" in config:
        max_bytes = int(_positive_number(topic, "retention.bytes", config["retention.bytes"]))
    if "replicas" in config:
        replicas = int(_positive_number(topic, "replicas", config["replicas"]))
    if "duplicate.window.ms" in config:
        duplicate_window = (
            _positive_number(topic, "duplicate.window.ms", config["duplicate.window.ms"]) / 1000.0
        )
        if max_age is not None and duplicate_window > max_age:
            raise ConfigError(f"topic {topic!r}: duplicate.window.ms must not exceed retention.ms")
    return StreamConfig(
        name=stream_name(topic, partition),
        subjects=[subject(topic, partition)],
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=max_age,
        max_bytes=max_bytes,
        num_replicas=replicas,
        duplicate_window=duplicate_window or 0,
        allow_direct=True,
        metadata={
            "spate.topic": topic,
            "spate.partition": str(partition),
            "spate.partitions": str(partitions),
        },
    )


@dataclass(frozen=True, slots=True)
class _Registered:
    partitions: int
    config: dict[str, str]
    incarnation: str

    def info(self, topic: str) -> TopicInfo:
        return TopicInfo(
            name=topic,
            partitions=self.partitions,
            config=self.config,
            incarnation=self.incarnation,
        )


class TopicAdmin:
    """Creates, describes, lists and deletes topics; caches partition counts."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None
        self._partitions: dict[str, int] = {}

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            with spate_errors("open the topic registry"):
                self._kv = await self._js.create_key_value(
                    KeyValueConfig(bucket=TOPICS_BUCKET, history=1, storage=StorageType.FILE)
                )
        return self._kv

    def cached_partitions(self, topic: str) -> int | None:
        """The partition count if this process has seen the topic (no I/O)."""
        return self._partitions.get(topic)

    async def partitions(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = (await self.describe(topic)).partitions
        return count

    async def _read(self, topic: str) -> _Registered:
        kv = await self._bucket()
        try:
            with spate_errors(f"describe topic {topic!r}"):
                entry = await kv.get(topic)
        except BrokerError as exc:
            if isinstance(exc.__cause__, nats.js.errors.KeyNotFoundError):
                raise TopicNotFoundError(
                    f"topic {topic!r} does not exist on NATS; create it with "
                    f"`spate topics create {topic} --partitions N`"
                ) from None
            raise
        data = orjson.loads(entry.value or b"{}")
        registered = _Registered(
            int(data["partitions"]), dict(data.get("config", {})), str(data.get("incarnation", ""))
        )
        self._partitions[topic] = registered.partitions
        return registered

    async def describe(self, topic: str) -> TopicInfo:
        return (await self._read(validate_topic_name(topic))).info(topic)

    async def _ensure_streams(self, topic: str, partitions: int, config: Mapping[str, str]) -> None:
        configs = [stream_config(topic, p, partitions, config) for p in range(partitions)]
        with spate_errors(f"create the streams of topic {topic!r}"):
            await asyncio.gather(*(self._js.add_stream(c) for c in configs))

    async def create(
        self, topic: str, partitions: int, config: Mapping[str, str], exist_ok: bool
    ) -> TopicInfo:
        validate_topic_name(topic)
        if not isinstance(partitions, int) or partitions < 1:
            raise ConfigError(f"topic {topic!r}: partitions={partitions!r} must be an integer >= 1")
        config = {str(k): str(v) for k, v in config.items()}
        for p in range(partitions):
            stream_config(topic, p, partitions, config)  # validates before anything is written
        kv = await self._bucket()
        registered = _Registered(partitions, config, new_incarnation())
        value = orjson.dumps(
            {"partitions": partitions, "config": config, "incarnation": registered.incarnation}
        )
        try:
            with spate_errors(f"create topic {topic!r}"):
                await kv.create(topic, value)
        except BrokerError as exc:
            if not isinstance(exc.__cause__, nats.js.errors.KeyWrongLastSequenceError):
                raise
            if not exist_ok:
                raise TopicExistsError(f"topic {topic!r} exists already on NATS") from None
            existing = await self._read(topic)
            # Repairs a topic whose creator died between registering and creating streams.
            await self._ensure_streams(topic, existing.partitions, existing.config)
            return existing.info(topic)
        try:
            await self._ensure_streams(topic, partitions, config)
        except BrokerError:
            with spate_errors(f"roll back topic {topic!r}"):
                await kv.purge(topic)
            raise
        self._partitions[topic] = partitions
        return registered.info(topic)

    async def delete(self, topic: str) -> None:
        registered = await self._read(validate_topic_name(topic))
        for p in range(registered.partitions):
            try:
                with spate_errors(f"delete topic {topic!r}"):
                    await self._js.delete_stream(stream_name(topic, p))
            except BrokerError as exc:
                if api_code(exc.__cause__ or exc) != STREAM_NOT_FOUND:
                    raise
        kv = await self._bucket()
        with spate_errors(f"delete topic {topic!r}"):
            await kv.purge(topic)
        self._partitions.pop(topic, None)

    async def list(self) -> list[TopicInfo]:
        kv = await self._bucket()
        try:
            with spate_errors("list topics"):
                names = await kv.keys()
        except BrokerError as exc:
            if isinstance(exc.__cause__, nats.js.errors.NoKeysError):
                return []
            raise
        infos: list[TopicInfo] = []
        for name in sorted(names):
            try:
                infos.append((await self._read(name)).info(name))
            except TopicNotFoundError:
                continue  # deleted while listing
        return infos

    async def end_offset(self, tp: TopicPartition) -> tuple[int, int]:
        """(first offset still stored, offset the next record will get) of a partition."""
        with spate_errors(f"read the end of {tp.topic}[{tp.partition}]"):
            info = await self._js.stream_info(stream_name(tp.topic, tp.partition))
        state = info.state
        first = max(state.first_seq - 1, 0) if state.messages else state.last_seq
        return first, state.last_seq

    async def delete_before(self, topic: str, before_ms: int) -> int:
        """Purge each partition's stream below its first message at or after
        ``before_ms``, found by bisecting the sequences (a record's time is its
        ``Spate-Timestamp``, else the server's)."""
        registered = await self._read(validate_topic_name(topic))
        removed = 0
        for p in range(registered.partitions):
            name = stream_name(topic, p)
            with spate_errors(f"purge {topic}[{p}] before {before_ms}"):
                state = (await self._js.stream_info(name)).state
                if not state.messages:
                    continue
                lo, hi = state.first_seq, state.last_seq + 1
                on = subject(topic, p)
                while lo < hi:
                    mid = (lo + hi) // 2
                    msg = await self._js.get_msg(name, seq=mid, subject=on, next=True)
                    server_ms = int(msg.time.timestamp() * 1000) if msg.time else 0
                    if timestamp_of(msg.headers, server_ms) < before_ms:
                        lo = (msg.seq or mid) + 1
                    else:
                        hi = mid
                if lo > state.first_seq:
                    await self._js.purge_stream(name, seq=lo)
                    removed += lo - state.first_seq
        return removed
