"""The :class:`~spate.coordination.LeaseStore` on Redis keys.

Members live in a sorted set scored by their expiry in *server* time, so members with
skewed clocks still agree on who is alive. A partition lease is a hash
``{member, epoch}`` with a PX expiry, taken only when absent (set-if-absent in a
script); renew and release compare member and epoch before touching it. The epoch comes
from ``HINCRBY`` on a hash that never expires, so it only grows, and the commit script
checks it in the same atomic step as the XACK (fencing).
"""

from __future__ import annotations

from collections.abc import Mapping

from spate.brokers.redis import keys
from spate.brokers.redis.client import RedisClient, raise_first
from spate.brokers.redis.scripts import (
    ACQUIRE_SCRIPT,
    HEARTBEAT_SCRIPT,
    RELEASE_SCRIPT,
    RENEW_SCRIPT,
)
from spate.record import TopicPartition


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisLeaseStore:
    """Membership and partition leases for spate groups, kept in Redis."""

    def __init__(self, client: RedisClient) -> None:
        self._client = client

    async def heartbeat(self, group: str, member: str, ttl_s: float) -> list[str]:
        results = await self._client.run(
            lambda pipe: (
                HEARTBEAT_SCRIPT.queue(pipe, [keys.members(group)], [member, _ms(ttl_s)]),
                pipe.sadd(keys.GROUPS, group),
            ),
            f"heartbeat of {member!r} in group {group!r}",
        )
        raise_first(results, f"heartbeat of {member!r} in group {group!r}")
        return sorted(m.decode() for m in results[0])

    async def acquire(
        self, group: str, tp: TopicPartition, member: str, ttl_s: float
    ) -> int | None:
        what = f"acquiring {tp.topic}[{tp.partition}] for group {group!r}"
        results = await self._client.run(
            lambda pipe: ACQUIRE_SCRIPT.queue(
                pipe, [keys.lease(tp, group), keys.epochs(tp)], [group, member, _ms(ttl_s)]
            ),
            what,
        )
        raise_first(results, what)
        epoch = results[0]
        return None if epoch is None else int(epoch)

    async def renew(
        self, group: str, leases: Mapping[TopicPartition, int], member: str, ttl_s: float
    ) -> set[TopicPartition]:
        if not leases:
            return set()
        order = list(leases.items())
        what = f"renewing leases of {member!r} in group {group!r}"
        results = await self._client.run(
            lambda pipe: [
                RENEW_SCRIPT.queue(pipe, [keys.lease(tp, group)], [member, epoch, _ms(ttl_s)])
                for tp, epoch in order
            ],
            what,
        )
        raise_first(results, what)
        return {tp for (tp, _), kept in zip(order, results, strict=True) if kept == 1}

    async def release(self, group: str, leases: Mapping[TopicPartition, int], member: str) -> None:
        if not leases:
            return
        what = f"releasing leases of {member!r} in group {group!r}"
        results = await self._client.run(
            lambda pipe: [
                RELEASE_SCRIPT.queue(pipe, [keys.lease(tp, group)], [member, epoch])
                for tp, epoch in leases.items()
            ],
            what,
        )
        raise_first(results, what)

    async def leave(self, group: str, member: str) -> None:
        what = f"leaving group {group!r}"
        results = await self._client.run(lambda pipe: pipe.zrem(keys.members(group), member), what)
        raise_first(results, what)
