"""Lease-based group membership, shared by every broker without a group protocol.

:class:`GroupMember` runs the protocol of :mod:`spate.coordination` over any
:class:`~spate.coordination.LeaseStore`: a background task heartbeats every
``heartbeat_s``, computes the assignment from the live members, renews the leases it
holds, notes which ones it lost, which it should hand back and which it took.
It never calls user code: :class:`LeasedConsumer` turns those notes into
``on_lost`` / ``on_revoked`` / ``on_assigned`` calls *inside* ``fetch`` (and ``close``),
so the runtime never races with a rebalance, and releases a revoked partition only
after ``on_revoked`` returned (the runtime committed by then).

**The revoke deadline** is the lease ttl: a partition the member is asked to give back
is renewed no more, so its owner has one ttl from the renewal before it noticed to
finish its batch, commit, flush its state and release it. A member still busy then
(a batch longer than the ttl) loses the partition, as a dead member would: the next
owner never waits longer than it would for a crashed one, and the late member's
commit is fenced by the lease epoch.

A broker subclasses :class:`LeasedConsumer` and provides four storage hooks:
``_partitions``, ``_initial_positions``, ``_read`` and ``_write_commit`` (which must
check the epochs atomically with the write and raise FencedError when one is stale).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from spate.brokers.base import (
    Consumer,
    NullListener,
    OffsetReset,
    RebalanceListener,
    topic_deleted,
)
from spate.brokers.lifecycle import OwningBroker
from spate.clock import SYSTEM_CLOCK, Clock
from spate.coordination import LeaseStore, assign, new_member_id
from spate.errors import (
    BrokerError,
    ClosedError,
    ConfigError,
    FencedError,
    LeaseLost,
    SpateError,
    TopicNotFoundError,
)
from spate.outage import Outage
from spate.record import Record, TopicPartition, partition_names

log = logging.getLogger("spate.coordination")

DEFAULT_LEASE_TTL_S = 10.0
ACQUIRE_RETRY_S = 0.2
"""How soon a member asks again for partitions it should own but another still holds."""


@dataclass(frozen=True, slots=True)
class MembershipChanges:
    """What happened to a member's partitions since the consumer last looked."""

    lost: tuple[TopicPartition, ...] = ()
    """Leases already gone (taken over, or not renewed within the ttl)."""
    revoke: tuple[TopicPartition, ...] = ()
    """Still owned but assigned elsewhere: commit, then :meth:`GroupMember.release`,
    within one lease ttl of the revocation (then they are lost)."""
    assigned: tuple[TopicPartition, ...] = ()
    """Newly acquired."""


class GroupMember:
    """One member of a group: heartbeats, leases and epochs over a LeaseStore."""

    def __init__(
        self,
        store: LeaseStore,
        group: str,
        member_id: str,
        *,
        partitions: Callable[[], Awaitable[Sequence[TopicPartition]]],
        ttl_s: float = DEFAULT_LEASE_TTL_S,
        heartbeat_s: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if ttl_s <= 0:
            raise ConfigError(f"lease ttl_s={ttl_s!r} must be > 0")
        self.heartbeat_s = ttl_s / 3 if heartbeat_s is None else heartbeat_s
        if not 0 < self.heartbeat_s < ttl_s:
            raise ConfigError(
                f"heartbeat_s={self.heartbeat_s!r} must be > 0 and below the lease ttl {ttl_s}"
            )
        self.store = store
        self.group = group
        self.member_id = member_id
        self.ttl_s = ttl_s
        self._partitions = partitions
        self._clock = clock
        self._owned: dict[TopicPartition, int] = {}
        self._assigned: list[TopicPartition] = []
        self._lost: set[TopicPartition] = set()
        self._revoke: set[TopicPartition] = set()
        self._revoking: dict[TopicPartition, float] = {}
        """Partitions asked back, with when their lease was last renewed (monotonic):
        renewed no more, so each is this member's until one ttl after that."""
        self._renewed_at: float | None = None
        self._wanting = False
        self._lock = asyncio.Lock()
        self._heartbeats = Outage(
            log, f"group={group} member={member_id} what=lease_heartbeat", clock=clock
        )
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.changed = asyncio.Event()
        """Set whenever :meth:`take_changes` has something to report."""

    def epoch(self, tp: TopicPartition) -> int | None:
        """The epoch at which this member holds ``tp``, or None."""
        return self._owned.get(tp)

    async def start(self) -> None:
        """Join: one heartbeat round now (so a lone member owns everything at once),
        then keep heartbeating in the background."""
        if self._task is not None:
            return
        await self.tick()
        self._task = asyncio.get_running_loop().create_task(
            self._heartbeat_loop(), name=f"spate-lease-{self.group}-{self.member_id}"
        )

    async def _heartbeat_loop(self) -> None:
        """Heartbeat until :meth:`close`, which cancels this task but also sets
        ``_closing``: a cancellation can be lost inside a store call (Python 3.11's
        ``asyncio.wait_for``, which nats-py requests use, returns the reply instead of
        raising when both come in the same loop iteration), and a loop that went on
        would keep ``close`` (hence a draining worker) waiting forever."""
        while not self._closing:
            await self._clock.sleep(
                min(self.heartbeat_s, ACQUIRE_RETRY_S) if self._wanting else self.heartbeat_s
            )
            try:
                await self.tick()
            except SpateError as exc:
                # Logged once per outage; leases not renewed within the ttl are then
                # handed to the consumer as lost, and taken again once the store answers.
                self._heartbeats.failed(exc)
            except Exception:
                # A bug must not silently stop the heartbeat: the leases would expire
                # while this member keeps working. Log it and try again next round.
                log.exception(
                    "event=heartbeat_failed group=%s member=%s", self.group, self.member_id
                )
            else:
                self._heartbeats.recovered()

    async def tick(self) -> None:
        """One round of the protocol: heartbeat, renew, note revocations, acquire."""
        async with self._lock:
            started = self._clock.monotonic()
            live = await self.store.heartbeat(self.group, self.member_id, self.ttl_s)
            wanted = set(assign(live, await self._partitions()).get(self.member_id, ()))
            for tp in [tp for tp in self._revoking if tp in wanted]:
                del self._revoking[tp]  # wanted here again: renewed again, if still held
            renewing = {tp: e for tp, e in self._owned.items() if tp not in self._revoking}
            if renewing:
                held = await self.store.renew(self.group, renewing, self.member_id, self.ttl_s)
                for tp in set(renewing) - held:
                    del self._owned[tp]
                    self._lost.add(tp)
            self._renewed_at = started
            self._revoke = set(self._owned) - wanted
            newly = sorted(tp for tp in self._revoke if tp not in self._revoking)
            for tp in newly:
                self._revoking[tp] = started
            if newly:
                log.info(
                    "event=revoke_requested group=%s member=%s partitions=%s deadline_s=%s",
                    self.group,
                    self.member_id,
                    partition_names(newly),
                    self.ttl_s,
                )
            self._expire_revoked(self._clock.monotonic())
            for tp in sorted(wanted - set(self._owned)):
                epoch = await self.store.acquire(self.group, tp, self.member_id, self.ttl_s)
                if epoch is not None:
                    self._owned[tp] = epoch
                    self._assigned.append(tp)
            self._wanting = not wanted <= set(self._owned)
            if self._lost or self._revoke or self._assigned:
                self.changed.set()

    def _expire_revoked(self, now: float) -> None:
        """Partitions asked back and not released within the ttl are lost: their
        leases ran out, and another member may hold them already."""
        for tp, renewed_at in list(self._revoking.items()):
            if now - renewed_at > self.ttl_s:
                del self._revoking[tp]
                if self._owned.pop(tp, None) is not None:
                    self._lost.add(tp)
                    self.changed.set()
                    log.warning(
                        "event=revoke_deadline_missed group=%s member=%s partition=%s "
                        "deadline_s=%s",
                        self.group,
                        self.member_id,
                        partition_names([tp]),
                        self.ttl_s,
                    )

    def take_changes(self) -> MembershipChanges:
        """Hand over what changed; leases not renewed within the ttl count as lost."""
        now = self._clock.monotonic()
        if self._owned and self._renewed_at is not None and now - self._renewed_at > self.ttl_s:
            self._lost.update(self._owned)
            self._owned.clear()
        self._expire_revoked(now)
        lost = tuple(sorted(self._lost))
        # Taken, then wanted elsewhere before the consumer looked (a lone member takes
        # every expired lease after an outage, then sees the others come back): such a
        # partition is only released, never handed out.
        assigned = tuple(
            tp for tp in self._assigned if tp in self._owned and tp not in self._revoke
        )
        revoke = tuple(sorted(tp for tp in self._revoke if tp in self._owned))
        self._lost.clear()
        self._assigned.clear()
        self.changed.clear()
        return MembershipChanges(lost=lost, revoke=revoke, assigned=assigned)

    async def release(self, tps: Sequence[TopicPartition]) -> None:
        """Give ``tps`` back so their new owner can take them without waiting."""
        async with self._lock:
            leases = {tp: self._owned.pop(tp) for tp in tps if tp in self._owned}
            self._revoke.difference_update(tps)
            asked = [self._revoking.pop(tp) for tp in tps if tp in self._revoking]
            if leases:
                await self.store.release(self.group, leases, self.member_id)
            if asked and leases:
                log.info(
                    "event=partitions_released group=%s member=%s partitions=%s "
                    "seconds=%.3f deadline_s=%s",
                    self.group,
                    self.member_id,
                    partition_names(leases),
                    self._clock.monotonic() - min(asked),
                    self.ttl_s,
                )

    async def close(self) -> None:
        """Stop heartbeating, release every lease and leave the group.

        If the store cannot be reached, closing still succeeds: the leases then simply
        expire after the ttl, as if this member had died.
        """
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.release(list(self._owned))
            await self.store.leave(self.group, self.member_id)
        except SpateError as exc:
            log.warning(
                "event=leave_failed group=%s member=%s error=%s leases=expire",
                self.group,
                self.member_id,
                exc,
            )


class LeasedConsumer(Consumer):
    """The Consumer of every lease-based broker; subclasses supply storage hooks."""

    def __init__(
        self,
        topics: Sequence[str],
        group: str,
        listener: RebalanceListener | None,
        *,
        store: LeaseStore,
        owner: OwningBroker,
        offset_reset: OffsetReset = "earliest",
        member_id: str | None = None,
        ttl_s: float = DEFAULT_LEASE_TTL_S,
        heartbeat_s: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not topics:
            raise ConfigError("a consumer needs at least one topic")
        if not group:
            raise ConfigError("a consumer needs a group name")
        self.topics = tuple(dict.fromkeys(topics))
        self.group = group
        self.offset_reset: OffsetReset = offset_reset
        self._listener: RebalanceListener = listener or NullListener()
        self._owner = owner
        self.member = GroupMember(
            store,
            group,
            member_id or new_member_id(),
            partitions=self._watched_partitions,
            ttl_s=ttl_s,
            heartbeat_s=heartbeat_s,
            clock=clock,
        )
        self._positions: dict[TopicPartition, int] = {}
        self._epochs: dict[TopicPartition, int] = {}
        """The epoch each partition had when the listener was told it was assigned: a
        batch fetched before a lease was lost and taken again must not commit with the
        new epoch, so commits are signed with this one, not the member's current one."""
        self._seen_topics: set[str] = set()
        self._deleted: str | None = None
        """A subscribed topic that existed and is gone: the next fetch raises."""
        self._started = False
        self._closed = False
        self._released = False
        """Closed refuses fetch at once; released (the leases handed back) refuses
        commits, which the runtime still makes in ``on_revoked`` while closing."""

    # -- hooks ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def _partitions(self) -> Sequence[TopicPartition]:
        """Every partition of the subscribed topics that exists right now."""

    @abc.abstractmethod
    async def _initial_positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Where to start reading each newly owned partition: the group's committed
        offset, else ``self.offset_reset``'s end of the log."""

    @abc.abstractmethod
    async def _read(
        self, positions: Mapping[TopicPartition, int], max_records: int, timeout_s: float
    ) -> list[Record]:
        """Up to ``max_records`` records at or after ``positions``, in offset order per
        partition, waiting up to ``timeout_s`` for the first one."""

    @abc.abstractmethod
    async def _write_commit(
        self, through: Mapping[TopicPartition, int], epochs: Mapping[TopicPartition, int]
    ) -> None:
        """Store ``through[tp] + 1`` per partition, atomically refusing the whole commit
        with FencedError if any lease is no longer held at ``epochs[tp]``."""

    # -- Consumer ------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the group; TopicNotFoundError names a subscribed topic that is missing."""
        self._check_open()
        if not self._started:
            await self._watched_partitions()
            missing = [topic for topic in self.topics if topic not in self._seen_topics]
            if missing:
                raise TopicNotFoundError(
                    f"topic {missing[0]!r} does not exist; create it first "
                    f"(spate topics create {missing[0]} --partitions N)"
                )
            self._started = True
            await self.member.start()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"consumer of group {self.group!r} is closed")

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._positions)

    def epochs(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The lease epoch of each of ``tps``, for a fenced write; FencedError if one
        is not owned by this member any more."""
        epochs: dict[TopicPartition, int] = {}
        for tp in tps:
            epoch = self._epochs.get(tp)
            if epoch is None or epoch != self.member.epoch(tp):
                raise FencedError(
                    f"group {self.group!r}: {tp.topic}[{tp.partition}] is not owned by "
                    f"member {self.member.member_id}"
                )
            epochs[tp] = epoch
        return epochs

    async def _watched_partitions(self) -> Sequence[TopicPartition]:
        """:meth:`_partitions`, noting a subscribed topic that was seen and is gone.

        The heartbeat asks anyway, so a deletion costs the batch loop nothing; a topic
        not created yet is only waited for (it was never seen)."""
        found = await self._partitions()
        present = {tp.topic for tp in found}
        gone = sorted(self._seen_topics - present)
        self._seen_topics |= present
        if gone and self._deleted is None:
            self._deleted = gone[0]
            self.member.changed.set()
        return found

    async def _deleted_topic_error(self, exc: BrokerError) -> SpateError:
        """After a failed read or commit: the deletion of a topic, if that is the cause
        (noticed before the next heartbeat would), else ``exc`` itself."""
        with contextlib.suppress(SpateError):
            await self._watched_partitions()
        return exc if self._deleted is None else topic_deleted(self._deleted, self.group)

    async def _apply_changes(self) -> None:
        if self._deleted is not None:
            raise topic_deleted(self._deleted, self.group)
        changes = self.member.take_changes()
        new_epochs = {tp: self.member.epoch(tp) for tp in changes.assigned}
        # The listener hears only of partitions it was given: after an outage a lease
        # may be taken and lost again before the consumer looked.
        lost = [tp for tp in changes.lost if tp in self._positions]
        if lost:
            for tp in lost:
                del self._positions[tp]
                self._epochs.pop(tp, None)
            log.warning(
                "event=partitions_lost group=%s member=%s partitions=%s",
                self.group,
                self.member.member_id,
                partition_names(lost),
            )
            await self._listener.on_lost(lost)
        if changes.revoke:
            known = [tp for tp in changes.revoke if tp in self._positions]
            try:
                if known:
                    await self._listener.on_revoked(known)
            finally:
                for tp in changes.revoke:
                    self._positions.pop(tp, None)
                    self._epochs.pop(tp, None)
                await self.member.release(changes.revoke)
        if changes.assigned:
            self._epochs.update((tp, e) for tp, e in new_epochs.items() if e is not None)
            self._positions.update(await self._initial_positions(changes.assigned))
            log.info(
                "event=partitions_assigned group=%s member=%s partitions=%s",
                self.group,
                self.member.member_id,
                partition_names(changes.assigned),
            )
            await self._listener.on_assigned(list(changes.assigned))

    async def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        self._check_open()
        if not self._started:
            await self.start()
        await self._apply_changes()
        if not self._positions:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.member.changed.wait(), timeout_s)
            await self._apply_changes()
            if not self._positions:
                return []
            timeout_s = max(deadline - loop.time(), 0.0)
        try:
            records = await self._read(dict(self._positions), max_records, timeout_s)
        except BrokerError as exc:
            raise await self._deleted_topic_error(exc) from exc
        last: dict[tuple[str, int], int] = {}
        for record in records:
            last[record.topic, record.partition] = record.offset
        for (topic, partition), offset in last.items():
            self._positions[TopicPartition(topic, partition)] = offset + 1
        return records

    async def commit(self, through: Mapping[TopicPartition, int], *, wait: bool = True) -> None:
        if self._released:
            raise ClosedError(f"consumer of group {self.group!r} is closed")
        if self._deleted is not None:  # its offsets have nowhere to go (closing)
            through = {tp: o for tp, o in through.items() if tp.topic != self._deleted}
        if through:
            try:
                await self._write_commit(through, self.epochs(list(through)))
            except BrokerError as exc:
                raise await self._deleted_topic_error(exc) from exc

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        self._check_open()
        if tp not in self._positions:
            raise LeaseLost(
                f"group {self.group!r}: cannot seek {tp.topic}[{tp.partition}]: "
                "it is not assigned to this member"
            )
        self._positions[tp] = offset

    async def close(self) -> None:
        """Revoke what is owned and leave the group. The broker that made this consumer
        forgets it even if leaving fails: a closed consumer is not kept by its broker."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._started:
                await self._leave()
        finally:
            self._released = True
            self._owner.forget(self)

    async def _leave(self) -> None:
        """Let the runtime commit what it still owns, then hand the leases back."""
        owned = sorted(self._positions)
        try:
            if owned:
                await self._listener.on_revoked(owned)
        finally:
            self._positions.clear()
            self._epochs.clear()
            await self.member.close()
