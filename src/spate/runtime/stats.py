"""Per-processor counters, updated once per batch (never per record).

The demo's live view and the metrics server (:mod:`spate.observability`) read them
at the moment they are asked, so the hot loop pays one addition per counter and one
bucket increment per histogram per batch, whether anything is watching or not.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass, field

from spate.brokers.base import PartitionLag
from spate.record import TopicPartition

SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RECORDS_BUCKETS = (1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)


@dataclass(slots=True)
class Histogram:
    """Counts of observations per bucket, Prometheus style, observed once per batch.

    ``counts[i]`` holds the observations in ``(bounds[i-1], bounds[i]]`` and the last
    one those above every bound; the exposition makes them cumulative when scraped,
    so observing costs one bisect and one increment."""

    bounds: tuple[float, ...]
    counts: list[int] = field(init=False)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


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
    """Records that failed once their attempts were over: dropped (``on_error="skip"``),
    dead-lettered, or the one that stopped the processor."""
    duplicates: int = 0
    """Outputs the broker acknowledged but dropped: an output with the same dedup id
    was published before, within the broker's window (effectively-once replays)."""
    commits: int = 0
    commit_failures: int = 0
    rebalances: int = 0
    """Assignment changes seen: assigned, revoked (also at close) or lost."""
    partitions_lost: int = 0
    """Partitions whose lease expired or was taken while this worker held them."""
    dead_letters: int = 0
    """Records sent to a dead-letter topic, counted once their batch is durable
    (flushed; under exactly-once, its transaction committed): a batch that fails to
    commit and is read again counts its dead letters once."""
    delayed_retries: int = 0
    """Records moved to a retry topic to be called again once due
    (``Retry(via_topics=...)``), counted once the batch that moved them is durable."""
    deduplicated: int = 0
    """Records a dedup step dropped: their key was let through before on their
    partition (``Dedup`` / ``Stream.dedup``)."""
    retries: int = 0
    """Calls of a user function made again after it failed (``retry=Retry(...)``)."""
    late_records: int = 0
    """Records whose windows (or join windows) had closed when they came (counted, then
    dropped or dead-lettered: ``.window(late=...)``, ``.join_stream(late=...)``)."""
    ticked_s: float | None = None
    """Monotonic time of the pipeline's last tick (windows closing with the clock)."""
    state_restored: int = 0
    """Changelog records replayed to restore stores (``spate_state_restore_records_total``)."""
    batch_duration: Histogram = field(default_factory=lambda: Histogram(SECONDS_BUCKETS))
    batch_size: Histogram = field(default_factory=lambda: Histogram(RECORDS_BUCKETS))
    commit_duration: Histogram = field(default_factory=lambda: Histogram(SECONDS_BUCKETS))
    end_to_end_latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    """Now minus the timestamp of each batch's last record, when the batch is done."""
    lag: dict[TopicPartition, PartitionLag] = field(default_factory=dict)
    """The group's lag per partition, as the lag poller last saw it (empty until then)."""
    batch_seconds_total: float = 0.0
    batch_seconds_max: float = 0.0
    last_batch_seconds: float = 0.0
    assigned: frozenset[TopicPartition] = field(default_factory=frozenset)
    restoring: frozenset[TopicPartition] = field(default_factory=frozenset)
    """Assigned partitions whose stores are being restored now (not ready meanwhile)."""
    restore_progress: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    """(changelog records read, to read) of each partition being restored."""
    running: bool = False
    connected: bool = True
    """False from a transient broker failure of this processor until it fetched again
    (readiness: not ready; see also ``Broker.available``)."""

    def record_batch(
        self,
        consumed: int,
        produced: int,
        errors: int,
        seconds: float,
        last_timestamp_ms: int = 0,
    ) -> None:
        """Account one finished batch; ``last_timestamp_ms`` is its last record's
        timestamp (0: unknown, no latency observed)."""
        self.batches += 1
        self.batch_duration.observe(seconds)
        self.batch_size.observe(consumed)
        if last_timestamp_ms > 0:
            self.end_to_end_latency.observe(max(0.0, time.time() - last_timestamp_ms / 1000))
        self.consumed += consumed
        self.produced += produced
        self.errors += errors
        self.batch_seconds_total += seconds
        self.last_batch_seconds = seconds
        if seconds > self.batch_seconds_max:
            self.batch_seconds_max = seconds
