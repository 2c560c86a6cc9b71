"""Latency samples and their percentiles, in pure Python.

Samples carry a count, so a batch whose records share one latency (everything sent
before one flush) costs one entry, not one per record. Percentiles are exact over
the samples (sort once, walk the cumulative counts): a benchmark run holds at most a
few million entries, and numpy is not a dependency.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0, 99.9)
"""The percentiles every report gives, as kafka-producer-perf-test does."""


class Latencies:
    """Latencies in seconds, each with how many records it stands for."""

    def __init__(self) -> None:
        self._samples: list[tuple[float, int]] = []
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0

    def add(self, latency_s: float, count: int = 1) -> None:
        """``count`` records that each took ``latency_s``."""
        if count <= 0:
            return
        self._samples.append((latency_s, count))
        self.count += count
        self.total_s += latency_s * count
        self.max_s = max(self.max_s, latency_s)

    def extend(self, latencies_s: Sequence[float]) -> None:
        """One record per latency (a consumer's batch, each with its own send time)."""
        if not latencies_s:
            return
        self._samples.extend((latency, 1) for latency in latencies_s)
        self.count += len(latencies_s)
        self.total_s += sum(latencies_s)
        self.max_s = max(self.max_s, max(latencies_s))

    @property
    def mean_s(self) -> float:
        return self.total_s / self.count if self.count else 0.0

    def percentiles(self, wanted: Iterable[float] = PERCENTILES) -> dict[float, float]:
        """The smallest latency at or under which ``p`` percent of the records fall
        (nearest rank); 0.0 for each when there are no samples."""
        ranks = sorted(wanted)
        result = dict.fromkeys(ranks, 0.0)
        if not self.count:
            return result
        samples = sorted(self._samples)
        seen = 0
        index = 0
        for p in ranks:
            # nearest rank: the ceil(p/100 * n)-th record, at least the first
            target = max(1, -(-p * self.count // 100))
            while seen + samples[index][1] < target:
                seen += samples[index][1]
                index += 1
            result[p] = samples[index][0]
        return result
