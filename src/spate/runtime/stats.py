"""Per-processor counters, updated once per batch (never per record).

The demo's live view reads them directly and the Prometheus collectors (a later
issue) will read the same object, so the hot loop pays one addition per counter per
batch whatever is watching.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spate.record import TopicPartition


@dataclass(kw_only=True, slots=True)
class ProcessorStats:
    """What one processor did in this process so far."""

    processor: str
    group: str
    batches: int = 0
    consumed: int = 0
    """Records fetched and decoded."""
    produced: int = 0
    """Records handed to the producer by the pipeline's sinks."""
    errors: int = 0
    """Records that failed: dropped (``on_error="skip"``) or the one that stopped the
    processor."""
    duplicates: int = 0
    """Outputs the broker acknowledged but dropped: an output with the same dedup id
    was published before, within the broker's window (effectively-once replays)."""
    commits: int = 0
    commit_failures: int = 0
    rebalances: int = 0
    """Assignment changes seen: assigned, revoked (also at close) or lost."""
    partitions_lost: int = 0
    """Partitions whose lease expired or was taken while this worker held them."""
    batch_seconds_total: float = 0.0
    batch_seconds_max: float = 0.0
    last_batch_seconds: float = 0.0
    assigned: frozenset[TopicPartition] = field(default_factory=frozenset)
    running: bool = False
    connected: bool = True
    """False from a transient broker failure of this processor until it fetched again
    (readiness: not ready; see also ``Broker.available``)."""

    def record_batch(self, consumed: int, produced: int, errors: int, seconds: float) -> None:
        """Account one finished batch."""
        self.batches += 1
        self.consumed += consumed
        self.produced += produced
        self.errors += errors
        self.batch_seconds_total += seconds
        self.last_batch_seconds = seconds
        if seconds > self.batch_seconds_max:
            self.batch_seconds_max = seconds
