"""Drive an event-time operator (windows, window joins) as a worker would, for the
property tests: the items in batches cut at ``cuts``, the first ``restarts`` batches
each followed by a reassignment that keeps only the stores (so what the operator
rebuilds from them is exercised), then enough idle time for every window to close."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from spate.clock import ManualClock
from spate.partitions import PartitionContext
from spate.record import TopicPartition
from spate.streams.eventtime import EventTimeOperator, Item


def run_in_batches(
    operator: EventTimeOperator[Any],
    contexts: dict[TopicPartition, PartitionContext],
    clock: ManualClock,
    items: Sequence[Item],
    cuts: Sequence[int],
    restarts: int,
) -> list[Item]:
    """Every item ``operator`` emits: from its batches, then from its idle ticks."""
    out: list[Any] = []
    edges = [0, *sorted(set(cuts)), len(items)]
    for batch, (start, end) in enumerate(itertools.pairwise(edges)):
        out.extend(operator.run(list(items[start:end])))
        if batch < restarts:
            for tp, old in contexts.items():
                contexts[tp] = PartitionContext(tp, clock, stores=old.stores)
    for _ in range(2):  # a partition assigned anew is idle from its first tick on
        clock.advance(10_000_000)
        out.extend(operator.tick(clock.monotonic()))
    return out
