"""What a benchmark prints: a line per interval and a summary, as text or JSON.

The wording follows kafka-producer-perf-test (records/s, MB/s with MB = 2**20 bytes,
average and maximum latency, then percentiles), so figures read the same side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spate.bench.latency import PERCENTILES, Latencies

MB = 1024 * 1024


def _rate(amount: float, elapsed_s: float) -> float:
    return amount / elapsed_s if elapsed_s > 0 else 0.0


def _percentile_name(p: float) -> str:
    return f"p{p:g}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Summary:
    """One finished run of one mode: the counts it measured and its latencies."""

    mode: str
    """``produce``, ``consume`` or ``e2e``."""
    topic: str
    records: int
    bytes: int
    elapsed_s: float
    latency: Latencies | None = None
    """Acknowledgement (produce) or end-to-end (e2e) latency; None for consume."""
    target_rate: float | None = None

    @property
    def records_per_s(self) -> float:
        return _rate(self.records, self.elapsed_s)

    @property
    def mb_per_s(self) -> float:
        return _rate(self.bytes / MB, self.elapsed_s)

    def to_json(self) -> dict[str, Any]:
        """The documented ``--json`` object (docs/cli.md, "spate bench")."""
        latency: dict[str, float] | None = None
        if self.latency is not None:
            latency = {
                "avg": self.latency.mean_s * 1000,
                "max": self.latency.max_s * 1000,
            }
            for p, value in self.latency.percentiles().items():
                latency[_percentile_name(p)] = value * 1000
        return {
            "mode": self.mode,
            "topic": self.topic,
            "records": self.records,
            "bytes": self.bytes,
            "elapsed_s": self.elapsed_s,
            "records_per_s": self.records_per_s,
            "mb_per_s": self.mb_per_s,
            "target_rate": self.target_rate,
            "latency_ms": latency,
        }


def summary_line(summary: Mapping[str, Any]) -> str:
    """A :meth:`Summary.to_json` object as one line of text (the e2e consumer's
    summary reaches its parent as JSON, so text is made from JSON on every path)."""
    verb = "sent" if summary["mode"] == "produce" else "received"
    text = (
        f"{summary['records']:,} records {verb} in {summary['elapsed_s']:.2f} s, "
        f"{summary['records_per_s']:,.1f} records/s ({summary['mb_per_s']:.2f} MB/s)"
    )
    latency = summary.get("latency_ms")
    if not latency:
        return text
    parts = [f"{latency['avg']:.2f} ms avg latency", f"{latency['max']:.2f} ms max latency"]
    parts += [f"{latency[_percentile_name(p)]:.2f} ms {_percentile_name(p)}" for p in PERCENTILES]
    return f"{text}, {', '.join(parts)}"


class IntervalReport:
    """Counts of the current interval; :meth:`line` closes it once it is long enough.

    Fed once per batch, never per record.
    """

    def __init__(self, verb: str, interval_s: float, start_s: float) -> None:
        self.verb = verb
        self.interval_s = interval_s
        self._start_s = start_s
        self._reset(start_s)

    def _reset(self, now_s: float) -> None:
        self._start_s = now_s
        self._records = 0
        self._bytes = 0
        self._latency_total_s = 0.0
        self._latency_count = 0
        self._latency_max_s = 0.0

    def add(self, records: int, size: int) -> None:
        """A batch of ``records``, ``size`` bytes in all."""
        self._records += records
        self._bytes += size

    def add_latencies(self, total_s: float, count: int, max_s: float) -> None:
        """A batch's latencies: their sum, how many, the largest."""
        self._latency_total_s += total_s
        self._latency_count += count
        self._latency_max_s = max(self._latency_max_s, max_s)

    def line(self, now_s: float) -> str | None:
        """The interval's line when ``interval_s`` has passed (and a new interval
        starts), else None."""
        elapsed = now_s - self._start_s
        if elapsed < self.interval_s:
            return None
        text = (
            f"{self._records:,} records {self.verb}, "
            f"{_rate(self._records, elapsed):,.1f} records/s "
            f"({_rate(self._bytes / MB, elapsed):.2f} MB/s)"
        )
        if self._latency_count:
            average = self._latency_total_s / self._latency_count
            text += (
                f", {average * 1000:.2f} ms avg latency, "
                f"{self._latency_max_s * 1000:.2f} ms max latency"
            )
        self._reset(now_s)
        return text
