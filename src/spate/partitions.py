"""What a processor keeps per partition it owns (DESIGN §8).

The worker makes one :class:`PartitionContext` when a partition is assigned and drops
it when the partition is revoked or lost, so what lives in it (a store's handles, the
watermark, windows waiting to close) lives exactly as long as the ownership, and a
partition taken over elsewhere starts from what was committed, never from a stale copy.

Pipeline stages reach it through the compiled :class:`~spate.streams.stream.Pipeline`
(``pipeline.partitions``): a stage that needs it (a stateful operator) looks up the
contexts of its batch's records' partitions; the stateless operators never do, so
they pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from spate.clock import Clock
from spate.record import TopicPartition
from spate.state.store import Store


@dataclass(eq=False, slots=True)
class PartitionContext:
    """One owned partition, for as long as this member owns it."""

    tp: TopicPartition
    clock: Clock
    """The worker's clock (injected: tests drive time by hand)."""
    epoch: int | None = None
    """The lease epoch this member got the partition with, where the consumer has
    leases (local, NATS, Redis): writes fenced by it are refused once another member
    took the partition over. None on brokers with native groups (Kafka)."""
    state: dict[str, Any] = field(default_factory=dict)
    """What stateful operators keep per partition in memory only: the watermark,
    indexes rebuilt from a store."""
    stores: dict[str, Store] = field(default_factory=dict)
    """The partition's stores by name, opened (and restored) on assignment for every
    name the pipeline's stages declare (``Stage.stores``)."""

    def store(self, name: str) -> Store:
        """The partition's store ``name``; a stage only asks for one it declared."""
        return self.stores[name]


Partitions = dict[TopicPartition, PartitionContext]


@runtime_checkable
class LeaseEpochs(Protocol):
    """A consumer that owns partitions by lease and tells their epochs."""

    def epochs(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...
