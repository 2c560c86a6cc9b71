"""The NATS partition reader: an ephemeral, unacknowledged pull consumer on the
partition's stream, starting at the offset's sequence (offset + 1).

It carries no group metadata, so ``groups`` and ``lag`` never see it; the server
forgets it when the reader closes, or after ``INACTIVE_S`` if the process died. A
``seek``, or a consumer the server dropped meanwhile, starts a new one at the position.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from spate.brokers.base import ReaderStart
from spate.brokers.nats.admin import stream_name
from spate.brokers.nats.codec import decode
from spate.brokers.nats.errors import spate_errors
from spate.brokers.reader import PartitionReader
from spate.errors import BrokerError
from spate.record import Record

if TYPE_CHECKING:
    from spate.brokers.nats.broker import NatsBroker

INACTIVE_S = 120.0
MIN_WAIT_S = 0.001


class NatsReader(PartitionReader):
    """Reads one partition of a NATS topic; see :class:`PartitionReader`."""

    def __init__(self, broker: NatsBroker, topic: str, partition: int, start: ReaderStart):
        super().__init__(broker, topic, partition, start)
        self._nats = broker
        self._stream = stream_name(topic, partition)
        self._sub: JetStreamContext.PullSubscription | None = None
        self._name = ""
        self._next = -1
        """The offset the server-side consumer delivers next (-1: none exists)."""

    async def _bounds(self) -> tuple[int, int]:
        return await self._nats.admin.end_offset(self.topic_partition)

    async def _open(self, position: int) -> JetStreamContext.PullSubscription:
        await self._drop()
        name = f"spate-reader-{secrets.token_hex(8)}"
        config = ConsumerConfig(
            name=name,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=position + 1,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=INACTIVE_S,
            mem_storage=True,
        )
        topic, partition = self.topic_partition
        with spate_errors(f"create a reader of {topic}[{partition}]"):
            await self._nats.js.add_consumer(self._stream, config)
            self._sub = await self._nats.js.pull_subscribe_bind(name=name, stream=self._stream)
        self._name = name
        self._next = position
        return self._sub

    async def _read(self, position: int, max_records: int, timeout_s: float) -> list[Record]:
        topic, partition = self.topic_partition
        for attempt in (1, 2):
            sub = self._sub
            if sub is None or position != self._next:
                sub = await self._open(position)
            try:
                with spate_errors(f"read {topic}[{partition}]"):
                    messages = await sub.fetch(max_records, max(timeout_s, MIN_WAIT_S))
                break
            except BrokerError as exc:
                if isinstance(exc.__cause__, nats.errors.TimeoutError):
                    return []
                self._next = -1  # gone (the server dropped it when idle): open a new one
                if attempt == 2:
                    raise
        records = []
        for msg in messages:
            meta = msg.metadata
            records.append(
                decode(
                    topic,
                    partition,
                    meta.sequence.stream - 1,
                    msg.data,
                    msg.headers,
                    int(meta.timestamp.timestamp() * 1000),
                )
            )
        if records:
            self._next = records[-1].offset + 1
        return records

    async def _drop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is None:
            return
        try:
            with spate_errors(f"delete the reader of {self._stream}"):
                await sub.unsubscribe()
                await self._nats.js.delete_consumer(self._stream, self._name)
        except BrokerError:
            pass  # already gone: the server dropped it as inactive

    async def _release(self) -> None:
        await self._drop()
