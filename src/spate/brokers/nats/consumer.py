"""The NATS group consumer: leases from :mod:`spate.brokers.leased`, reads from
one durable pull consumer per owned partition.

Reading: all of this member's pull consumers deliver into one inbox subscription
(``<inbox>.<consumer name>``), so one ``fetch`` waits on every owned partition at
once. Each partition keeps a pull request of ``PULL_BATCH`` records outstanding,
renewed when it is used up or expires, so records are already on their way while
the runtime processes the previous batch. A delivered message names its stream,
consumer and stream sequence in its ack subject; messages of a consumer this member
replaced (after a ``seek``) are dropped by consumer name, redeliveries by offset.

Committing ``through``: first every partition's lease is read back and must still be
held by this member at its epoch (else FencedError and nothing is acked), then the
message at ``through`` is acked with AckAll as a request, so ``commit`` returns only
once the server confirmed the new ack floor. JetStream cannot make the lease check
and the ack one atomic step: a member paused *between* them could still ack after a
newer owner took over. That ack lands on its own consumer, which the newer owner has
already read and deletes, so it cannot move the newer owner's position; outputs the
zombie re-publishes carry the same ``Nats-Msg-Id`` and are dropped as duplicates.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import nats.errors
import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from spate.brokers.base import OffsetReset, RebalanceListener
from spate.brokers.leased import LeasedConsumer
from spate.brokers.nats import offsets
from spate.brokers.nats.admin import stream_name
from spate.brokers.nats.codec import decode
from spate.brokers.nats.errors import spate_errors
from spate.brokers.nats.leases import escape_key
from spate.errors import (
    BrokerError,
    CommitError,
    ConnectError,
    FencedError,
    SpateError,
    TopicNotFoundError,
)
from spate.record import Record, TopicPartition

if TYPE_CHECKING:
    from spate.brokers.nats.broker import NatsBroker

PULL_BATCH = 1000
PULL_EXPIRES_S = 5.0
RETRY_PAUSE_S = 0.5
OPEN_ATTEMPTS = 5
_ACK = b"+ACK"


@dataclass(slots=True)
class _Partition:
    """One owned partition and the pull consumer this member reads it through."""

    tp: TopicPartition
    stream: str
    consumer: str
    inbox: str
    next_offset: int
    acked_seq: int
    start: int
    inherited: bool
    owed: int = 0
    expires_at: float = 0.0
    dead: bool = False
    ready: deque[Msg] = field(default_factory=deque)
    replies: dict[int, str] = field(default_factory=dict)


class NatsConsumer(LeasedConsumer):
    """A group member on JetStream."""

    def __init__(
        self,
        broker: NatsBroker,
        topics: Sequence[str],
        group: str,
        listener: RebalanceListener | None,
        *,
        offset_reset: OffsetReset,
    ) -> None:
        super().__init__(
            topics,
            group,
            listener,
            store=broker.leases,
            owner=broker,
            offset_reset=offset_reset,
            ttl_s=broker.lease_ttl_s,
            heartbeat_s=broker.heartbeat_s,
            clock=broker.clock,
        )
        self._broker = broker
        self._js = broker.js
        self._client = broker.client
        self._sub: Subscription | None = None
        self._inbox = ""
        self._parts: dict[TopicPartition, _Partition] = {}
        self._by_consumer: dict[str, _Partition] = {}
        self._serial = itertools.count(int(time.time() * 1000))
        self._rotate = 0

    # -- partitions and positions ---------------------------------------------------------

    async def _partitions(self) -> Sequence[TopicPartition]:
        tps: list[TopicPartition] = []
        for topic in self.topics:
            try:  # not the cached count: a topic deleted elsewhere must disappear here
                count = (await self._broker.admin.describe(topic)).partitions
            except TopicNotFoundError:
                continue  # as on every leased broker: a missing topic has no partitions
            tps.extend(TopicPartition(topic, p) for p in range(count))
        return tps

    async def _initial_positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        positions = await asyncio.gather(*(self._open_retrying(tp) for tp in tps))
        return dict(zip(tps, positions, strict=True))

    async def _open_retrying(self, tp: TopicPartition, at: int | None = None) -> int:
        """:meth:`_open`, tried again while the server is unreachable for a moment
        (a restart, a leader election), so a rebalance then does not stop the worker."""
        attempt = 1
        while True:
            try:
                return await self._open(tp, at)
            except BrokerError:
                if attempt == OPEN_ATTEMPTS:
                    raise
                await self._broker.clock.sleep(RETRY_PAUSE_S * attempt)
                attempt += 1

    async def _open(self, tp: TopicPartition, at: int | None = None) -> int:
        """Create this member's consumer on ``tp`` at ``at`` (default: the group's
        committed position, else the reset end) and delete the group's older ones."""
        stream = stream_name(tp.topic, tp.partition)
        older = await offsets.group_consumers(self._js, stream, self.group)
        previous = self._parts.get(tp)
        if at is not None:
            inherited = previous is not None and (
                previous.inherited or previous.acked_seq > previous.start
            )
        else:
            at = offsets.committed_position(older[-1]) if older else None
            inherited = at is not None
            if at is None:
                first, end = await self._broker.admin.end_offset(tp)
                at = first if self.offset_reset == "earliest" else end
        epoch = self.member.epoch(tp) or 0
        serial = next(self._serial)
        name = f"{escape_key(self.group)}_{epoch}_{serial}"
        config = ConsumerConfig(
            durable_name=name,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=at + 1,
            ack_policy=AckPolicy.ALL,
            ack_wait=self._broker.ack_wait_s,
            max_ack_pending=self._broker.max_ack_pending,
            max_deliver=-1,
            metadata={
                offsets.GROUP_META: self.group,
                offsets.EPOCH_META: str(epoch),
                offsets.SERIAL_META: str(serial),
                offsets.START_META: str(at),
                offsets.INHERITED_META: "1" if inherited else "0",
            },
        )
        with spate_errors(f"create the reader of {tp.topic}[{tp.partition}]"):
            await self._js.add_consumer(stream, config)
        await self._subscribe()
        self._forget(tp)
        part = _Partition(
            tp,
            stream,
            name,
            f"{self._inbox}.{name}",
            at,
            acked_seq=at,
            start=at,
            inherited=inherited,
        )
        self._parts[tp] = part
        self._by_consumer[name] = part
        for info in older:
            if info.name and info.name != name:
                await self._delete_consumer(stream, info.name)
        return at

    async def _delete_consumer(self, stream: str, name: str) -> None:
        try:
            with spate_errors(f"delete consumer {name} of {stream}"):
                await self._js.delete_consumer(stream, name)
        except BrokerError:
            pass  # already gone: a newer owner deleted it, or it never finished creating

    def _forget(self, tp: TopicPartition) -> None:
        part = self._parts.pop(tp, None)
        if part is not None:
            self._by_consumer.pop(part.consumer, None)

    async def _subscribe(self) -> None:
        if self._sub is None:
            self._inbox = self._client.new_inbox()
            with spate_errors("subscribe for deliveries"):
                self._sub = await self._client.subscribe(
                    f"{self._inbox}.*", pending_msgs_limit=0, pending_bytes_limit=0
                )

    # -- reading ---------------------------------------------------------------------------

    async def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._client.is_closed:
            # nats-py gave up (max_reconnect_attempts) or the broker was closed: no
            # outage to wait out, and an idle member would otherwise never notice.
            raise ConnectError(
                f"NATS: group {self.group!r}: the connection is closed for good "
                "(max_reconnect_attempts used up, or the broker was closed)",
                transient=False,
            )
        return await super().fetch(max_records, timeout_s)

    async def _read(
        self, positions: Mapping[TopicPartition, int], max_records: int, timeout_s: float
    ) -> list[Record]:
        for tp in [tp for tp in self._parts if tp not in positions]:
            self._forget(tp)
        for tp, position in positions.items():
            part = self._parts.get(tp)
            if part is None or (part.next_offset != position and not part.dead):
                await self._open_retrying(tp, position)
        assert self._sub is not None
        queue = self._sub._pending_queue  # nats-py's own pull fetch drains it the same way
        deadline = time.monotonic() + timeout_s
        while True:
            while not queue.empty():
                self._route(queue.get_nowait())
            records = self._take(max_records)
            await self._request_more()
            if records:
                return records
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            try:
                self._route(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                return []

    def _route(self, msg: Msg) -> None:
        assert self._sub is not None
        self._sub._pending_size -= len(msg.data)
        reply = msg.reply
        if not reply:
            self._status(msg)
            return
        tokens = reply.split(".")
        consumer = tokens[3] if len(tokens) == 9 else tokens[5]
        part = self._by_consumer.get(consumer)
        if part is not None:
            part.owed -= 1
            part.ready.append(msg)

    def _status(self, msg: Msg) -> None:
        part = self._by_consumer.get(msg.subject[len(self._inbox) + 1 :])
        if part is None or not msg.headers:
            return
        status = msg.headers.get("Status", "")
        if status == "100":
            return
        part.owed = 0
        if status not in ("404", "408"):
            # 409: e.g. max ack pending reached or a leader change; ask again a bit later
            # instead of at once, which the server would answer the same way.
            part.expires_at = time.monotonic() + RETRY_PAUSE_S
            part.owed = -1
        if status == "409" and "Deleted" in msg.headers.get("Description", ""):
            part.dead = True  # a newer owner replaced this member's consumer

    def _take(self, max_records: int) -> list[Record]:
        records: list[Record] = []
        parts = list(self._parts.values())
        if not parts:
            return records
        self._rotate = (self._rotate + 1) % len(parts)
        for part in parts[self._rotate :] + parts[: self._rotate]:
            ready = part.ready
            topic, partition = part.tp
            replies = part.replies
            while ready and len(records) < max_records:
                msg = ready.popleft()
                tokens = msg.reply.split(".")
                if len(tokens) == 9:
                    seq, ts_ns = int(tokens[5]), int(tokens[7])
                else:
                    seq, ts_ns = int(tokens[7]), int(tokens[9])
                offset = seq - 1
                if offset < part.next_offset:
                    continue  # redelivered after ack_wait: already handed out
                part.next_offset = offset + 1
                replies[seq] = msg.reply
                records.append(
                    decode(topic, partition, offset, msg.data, msg.headers, ts_ns // 1_000_000)
                )
        return records

    async def _request_more(self) -> None:
        now = time.monotonic()
        publish = self._client.publish
        prefix = self._js._prefix
        for part in self._parts.values():
            if part.dead or len(part.ready) >= PULL_BATCH:
                continue
            if part.owed != 0 and now < part.expires_at:
                continue  # a request is outstanding, or a refused one waits its pause
            request = orjson.dumps(
                {"batch": PULL_BATCH, "expires": int(PULL_EXPIRES_S * 1_000_000_000)}
            )
            try:
                await publish(
                    f"{prefix}.CONSUMER.MSG.NEXT.{part.stream}.{part.consumer}",
                    request,
                    reply=part.inbox,
                )
            except nats.errors.Error:
                continue  # disconnected: asked again once the request would have expired
            part.owed = PULL_BATCH
            part.expires_at = now + PULL_EXPIRES_S

    # -- committing ------------------------------------------------------------------------

    async def _write_commit(
        self, through: Mapping[TopicPartition, int], epochs: Mapping[TopicPartition, int]
    ) -> None:
        store = self._broker.leases
        member = self.member.member_id
        try:
            held = await asyncio.gather(
                *(store.holds(self.group, tp, member, epochs[tp]) for tp in through)
            )
        except SpateError as exc:
            # The leases cannot be read (e.g. the server is restarting): nothing was
            # acked, and the runtime keeps these offsets for its next commit.
            raise CommitError(
                f"group {self.group!r}: cannot check leases to commit: {exc}"
            ) from exc
        stale = [tp for tp, ok in zip(through, held, strict=True) if not ok]
        if stale:
            raise FencedError(
                f"group {self.group!r}: member {member} no longer holds "
                f"{', '.join(f'{tp.topic}[{tp.partition}]' for tp in stale)}; commit refused"
            )
        await asyncio.gather(*(self._ack(tp, offset) for tp, offset in through.items()))

    async def _ack(self, tp: TopicPartition, offset: int) -> None:
        part = self._parts.get(tp)
        if part is None:
            raise FencedError(f"group {self.group!r}: {tp.topic}[{tp.partition}] is not read here")
        seq = offset + 1
        if seq <= part.acked_seq:
            return  # acked already by an earlier commit
        reply = part.replies.get(seq)
        if reply is None:
            raise CommitError(
                f"cannot commit {tp.topic}[{tp.partition}] through offset {offset}: "
                "this member has not fetched that record"
            )
        with spate_errors(f"commit {tp.topic}[{tp.partition}] through {offset}", CommitError):
            await self._client.request(reply, _ACK, timeout=self._broker.request_timeout_s)
        part.acked_seq = max(part.acked_seq, seq)
        part.replies = {s: r for s, r in part.replies.items() if s > seq}

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            sub, self._sub = self._sub, None
            self._parts.clear()
            self._by_consumer.clear()
            if sub is not None and not self._client.is_closed:
                try:
                    with spate_errors("close the consumer"):
                        await sub.unsubscribe()
                except BrokerError:
                    pass
