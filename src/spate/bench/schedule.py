"""An open-loop send schedule: record ``i`` is due at ``start + i / rate``.

The schedule never waits for the broker, so when a send stalls the records due in the
meantime are late, and their latency, measured from when they were *due*, shows the
stall instead of hiding it (the coordinated-omission mistake of closed-loop tools).
"""

from __future__ import annotations

from spate.errors import ConfigError


class Schedule:
    """When each of ``total`` records is due, at ``rate`` records a second (None:
    all due at once, an unthrottled run)."""

    def __init__(self, total: int, rate: float | None, start_s: float) -> None:
        if rate is not None and rate <= 0:
            raise ConfigError(f"the rate {rate} must be a positive number of records a second")
        self.total = total
        self.rate = rate
        self.start_s = start_s

    def due_at(self, index: int) -> float:
        """The intended send time of record ``index``."""
        if self.rate is None:
            return self.start_s
        return self.start_s + index / self.rate

    def due_by(self, now_s: float) -> int:
        """How many records (from the first) are due at ``now_s``."""
        if self.rate is None:
            return self.total
        elapsed = now_s - self.start_s
        if elapsed < 0:
            return 0
        return min(self.total, int(elapsed * self.rate) + 1)

    def wait_s(self, sent: int, now_s: float) -> float:
        """How long to wait before record ``sent`` is due (0: it already is)."""
        if sent >= self.total:
            return 0.0
        return max(0.0, self.due_at(sent) - now_s)
