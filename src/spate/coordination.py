"""Partition ownership for brokers without a group protocol (local, NATS, Redis).

Each member heartbeats its membership, computes the same assignment from the sorted
list of live members with :func:`assign` (pure: no I/O, property-tested), releases
what it should no longer own (after the runtime committed) and takes what it should
own once the lease is free. A lease carries an epoch that only grows; commits and
transactional writes carry it and a stale one is refused with FencedError, so a
paused "zombie" member can never overwrite the work of the member that replaced it.

Each broker provides a :class:`LeaseStore` over its own storage (SQLite rows, a
JetStream key-value bucket, Redis keys); the membership loop is written once here.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from typing import Protocol

from spate.record import TopicPartition


def new_member_id() -> str:
    """A member id unique across hosts and processes, readable in ``spate groups``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(8)}"


def assign(
    members: Sequence[str], partitions: Sequence[TopicPartition]
) -> dict[str, list[TopicPartition]]:
    """Spread ``partitions`` over ``members``: the same answer on every member.

    Partitions of each topic are dealt round-robin over the sorted members, starting
    where the previous topic stopped, so each member's share differs by at most one
    overall and per topic.
    """
    ordered_members = sorted(set(members))
    result: dict[str, list[TopicPartition]] = {m: [] for m in ordered_members}
    if not ordered_members:
        return result
    for index, tp in enumerate(sorted(set(partitions))):
        result[ordered_members[index % len(ordered_members)]].append(tp)
    return result


class LeaseStore(Protocol):
    """Membership and partition leases in a broker's own storage.

    Every method is atomic on the store (a transaction, a compare-and-set, a script).
    """

    async def heartbeat(self, group: str, member: str, ttl_s: float) -> list[str]:
        """Mark ``member`` alive for ``ttl_s``; return the sorted live members."""
        ...

    async def acquire(
        self, group: str, tp: TopicPartition, member: str, ttl_s: float
    ) -> int | None:
        """Take ``tp`` if its lease is free or expired: the new, larger epoch, else None."""
        ...

    async def renew(
        self, group: str, leases: Mapping[TopicPartition, int], member: str, ttl_s: float
    ) -> set[TopicPartition]:
        """Extend the leases still held by ``member`` at those epochs; return them."""
        ...

    async def release(self, group: str, leases: Mapping[TopicPartition, int], member: str) -> None:
        """Give up leases held at those epochs, so another member can take them now."""
        ...

    async def leave(self, group: str, member: str) -> None:
        """Remove ``member`` from the live members."""
        ...
