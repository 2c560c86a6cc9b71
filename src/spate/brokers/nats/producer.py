"""Publishing to JetStream: ``send`` buffers, ``flush`` publishes many at once.

``flush`` writes every buffered record with a reply inbox of its own and then waits
for all PubAcks together, so thousands of records are in flight at a time instead of
one round trip each. Acknowledgements are tracked here rather than with nats-py's
``publish_async`` so that an ack lost to a broken connection (a server restart) is
noticed by a timeout and the record published again, until ``timeout_s`` runs out.
Re-publishing is harmless for records with a ``dedup_id`` (JetStream drops the copy
inside the topic's duplicate window) and gives an at-least-once duplicate otherwise.

A PubAck marked ``duplicate`` means JetStream stored nothing: the record's id was in
the window already. Those are counted in ``duplicates`` (DESIGN §6: never a silent
drop); a copy re-published after a lost acknowledgement counts too, as spate cannot
tell it from a replay's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from spate.brokers.base import Producer
from spate.brokers.nats.admin import TopicAdmin, subject
from spate.brokers.nats.codec import encode_headers
from spate.brokers.nats.errors import describe, spate_errors
from spate.clock import SYSTEM_CLOCK, Clock
from spate.errors import BrokerError, ClosedError, PublishError
from spate.partitioner import Partitioner
from spate.record import Headers

DEFAULT_FLUSH_TIMEOUT_S = 60.0
ATTEMPT_TIMEOUT_S = 10.0
_PENDING, _ACKED, _RETRY, _FATAL, _DUPLICATE = 0, 1, 2, 3, 4
# JetStream answers these while a stream is (re)starting: worth trying again.
_RETRYABLE_STATUS = ("503",)
_RETRYABLE_CODES = (503,)
"""The same, as the ``code`` of a JSON error reply ("JetStream system temporarily
unavailable", "JetStream not enabled" while a restarted server recovers its streams)."""


def classify_reply(headers: dict[str, str] | None, data: bytes) -> tuple[int, str | None]:
    """A PubAck's verdict: acknowledged, acknowledged but dropped as a duplicate, worth
    publishing again (the server or the stream is starting), or refused for good; and
    the error, if any."""
    status = headers.get("Status") if headers else None
    if status is not None:
        description = headers.get("Description", "") if headers else ""
        return (_RETRY if status in _RETRYABLE_STATUS else _FATAL), f"status {status} {description}"
    reply = orjson.loads(data)
    error = reply.get("error") if isinstance(reply, dict) else None
    if not error:
        return (_DUPLICATE if reply.get("duplicate") else _ACKED), None
    if not isinstance(error, dict):
        return _FATAL, str(error)
    verdict = _RETRY if error.get("code") in _RETRYABLE_CODES else _FATAL
    return verdict, str(error.get("description", error))


@dataclass(slots=True)
class _Pending:
    topic: str
    partition: int | None
    value: bytes
    key: bytes | None
    headers: dict[str, str] | None
    dedup_id: str | None


class NatsProducer(Producer):
    """A producer on one NATS connection (shared with the broker that made it)."""

    def __init__(
        self,
        client: Client,
        admin: TopicAdmin,
        is_closed: Callable[[], bool],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._client = client
        self._clock = clock
        self._admin = admin
        self._broker_closed = is_closed
        self._partitioner = Partitioner()
        self._buffer: list[_Pending] = []
        self._subjects: dict[tuple[str, int], str] = {}
        self._lock = asyncio.Lock()
        self._closed = False
        self._sub: Subscription | None = None
        self._inbox = ""
        self._tokens: dict[str, int] = {}
        self._status = bytearray()
        self._errors: dict[int, str] = {}
        self._waiting = 0
        self._answered = asyncio.Event()
        self._next_token = 0

    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
        dedup_id: str | None = None,
    ) -> None:
        if self._closed or self._broker_closed():
            raise ClosedError("NATS producer is closed")
        if partition is None:
            count = self._admin.cached_partitions(topic)
            if count is not None:
                partition = self._partitioner.choose(topic, key, count, dedup_id=dedup_id)
        self._buffer.append(
            _Pending(
                topic,
                partition,
                value,
                key,
                encode_headers(key, headers, timestamp_ms, dedup_id),
                dedup_id,
            )
        )

    async def start(self) -> None:
        if self._sub is None:
            self._inbox = self._client.new_inbox()
            with spate_errors("subscribe for publish acknowledgements", PublishError):
                self._sub = await self._client.subscribe(
                    f"{self._inbox}.*",
                    cb=self._on_reply,
                    pending_msgs_limit=-1,
                    pending_bytes_limit=-1,
                )

    async def _on_reply(self, msg: Msg) -> None:
        index = self._tokens.pop(msg.subject[len(self._inbox) + 1 :], None)
        if index is None:
            return
        previous = self._status[index]
        if previous == _ACKED:
            return
        verdict, error = classify_reply(msg.headers, msg.data)
        if verdict == _DUPLICATE:
            self.duplicates += 1
            verdict = _ACKED
        self._status[index] = verdict
        if error is not None:
            self._errors[index] = error
        if previous == _PENDING:
            self._waiting -= 1
            if self._waiting == 0:
                self._answered.set()

    async def _resolve(self, batch: list[_Pending]) -> None:
        for item in batch:
            if item.partition is None:
                try:
                    count = await self._admin.partitions(item.topic)
                except BrokerError as exc:
                    raise PublishError(
                        f"cannot publish to topic {item.topic!r} (key {item.key!r}): {exc}"
                    ) from exc
                item.partition = self._partitioner.choose(
                    item.topic, item.key, count, dedup_id=item.dedup_id
                )

    async def flush(self, timeout_s: float | None = None) -> None:
        if self._closed or self._broker_closed():
            raise ClosedError("NATS producer is closed")
        await self.start()
        async with self._lock:
            batch, self._buffer = self._buffer, []
            if batch:
                await self._resolve(batch)
                await self._publish(
                    batch, DEFAULT_FLUSH_TIMEOUT_S if timeout_s is None else timeout_s
                )

    def _subject(self, topic: str, partition: int) -> str:
        found = self._subjects.get((topic, partition))
        if found is None:
            found = self._subjects[(topic, partition)] = subject(topic, partition)
        return found

    async def _publish(self, batch: list[_Pending], timeout_s: float) -> None:
        clock = self._clock
        deadline = clock.monotonic() + timeout_s
        self._status = bytearray(len(batch))
        self._errors = {}
        todo = list(range(len(batch)))
        pause_s = 0.05
        try:
            while True:
                self._waiting = len(todo)
                self._answered.clear()
                await self._send_all(batch, todo)
                remaining = deadline - clock.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._answered.wait(), min(ATTEMPT_TIMEOUT_S, max(remaining, 0.01))
                    )
                fatal = [i for i in todo if self._status[i] == _FATAL]
                if fatal:
                    self._fail(batch, fatal[0], self._errors.get(fatal[0], "rejected"))
                todo = [i for i in todo if self._status[i] != _ACKED]
                if not todo:
                    return
                if clock.monotonic() >= deadline:
                    self._fail(
                        batch,
                        todo[0],
                        self._errors.get(todo[0], f"no acknowledgement within {timeout_s}s"),
                        transient=True,
                    )
                for i in todo:
                    self._status[i] = _PENDING
                await clock.sleep(pause_s)
                pause_s = min(pause_s * 2, 1.0)
        finally:
            self._tokens.clear()

    async def _send_all(self, batch: list[_Pending], todo: list[int]) -> None:
        publish = self._client.publish
        prefix = self._inbox + "."
        tokens = self._tokens
        for i in todo:
            item = batch[i]
            token = str(self._next_token)
            self._next_token += 1
            tokens[token] = i
            assert item.partition is not None
            try:
                await publish(
                    self._subject(item.topic, item.partition),
                    item.value,
                    reply=prefix + token,
                    headers=item.headers,
                )
            except (nats.errors.ConnectionReconnectingError, nats.errors.OutboundBufferLimitError):
                # Disconnected: what is left is sent again in the next attempt.
                tokens.pop(token, None)
                self._waiting -= 1
                self._status[i] = _RETRY
            except nats.errors.Error as exc:
                tokens.pop(token, None)
                self._fail(batch, i, describe(exc))
        if self._waiting <= 0:
            self._answered.set()

    @staticmethod
    def _fail(batch: list[_Pending], index: int, reason: str, *, transient: bool = False) -> None:
        """Raise for ``batch[index]``; ``transient``: no answer in time (an outage), as
        opposed to a refusal."""
        item = batch[index]
        raise PublishError(
            f"NATS did not acknowledge a record for topic {item.topic!r} partition "
            f"{item.partition} key {item.key!r}: {reason}",
            transient=transient,
        )

    async def close(self) -> None:
        """Flush what is still buffered (as Kafka's producer does), then unsubscribe."""
        if self._closed:
            return
        try:
            if self._buffer and not self._broker_closed():
                await self.flush()
        finally:
            self._closed = True
            self._buffer.clear()
            sub, self._sub = self._sub, None
            if sub is not None and not self._client.is_closed:
                with contextlib.suppress(BrokerError), spate_errors("close the producer"):
                    await sub.unsubscribe()
