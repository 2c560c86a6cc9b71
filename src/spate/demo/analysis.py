"""Parsing and statistics for the demo: pure code, no broker, so it is unit-tested alone.

Counts live in this process (the demo predates durable state stores); a restart of
the demo starts them from zero.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from spate.demo.logs import format_timestamp

_LINE = re.compile(
    r'^(?P<ip>\S+) \S+ \S+ \[(?P<ts>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>/\S*) HTTP/[0-9.]+" '
    r"(?P<status>[1-5][0-9]{2}) (?P<size>[0-9]+|-) rt=(?P<rt>[0-9]+(?:\.[0-9]+)?)$"
)

LATENCY_SAMPLE = 2000
"""Latencies kept per path for the p95: the most recent ones, so memory stays flat."""


class Request(msgspec.Struct, frozen=True):
    """One parsed access-log line, as published to the requests topic."""

    timestamp_ms: int
    client: str
    method: str
    path: str
    status: int
    size: int
    latency_ms: float


def parse_line(line: str) -> Request | None:
    """The request a log line describes, or None when the line is malformed."""
    match = _LINE.match(line)
    if match is None:
        return None
    try:
        stamp = datetime.fromisoformat(match["ts"])
    except ValueError:
        return None
    size = match["size"]
    return Request(
        timestamp_ms=int(stamp.timestamp() * 1000),
        client=match["ip"],
        method=match["method"],
        path=match["path"],
        status=int(match["status"]),
        size=0 if size == "-" else int(size),
        latency_ms=float(match["rt"]) * 1000.0,
    )


@dataclass
class PathStats:
    """Request count and latency of one path: average over all, p95 over recent ones."""

    count: int = 0
    latency_total_ms: float = 0.0
    recent_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLE))

    def add(self, latency_ms: float) -> None:
        self.count += 1
        self.latency_total_ms += latency_ms
        self.recent_ms.append(latency_ms)

    @property
    def avg_ms(self) -> float:
        return self.latency_total_ms / self.count if self.count else 0.0

    @property
    def p95_ms(self) -> float:
        if not self.recent_ms:
            return 0.0
        ordered = sorted(self.recent_ms)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


@dataclass
class Stats:
    """Everything the live view and the summary show."""

    lines: int = 0
    malformed: int = 0
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_path: dict[str, PathStats] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def parse(self, line: str) -> list[Request]:
        """Parse one line for ``flat_map``: a malformed line is counted and dropped."""
        self.lines += 1
        request = parse_line(line)
        if request is None:
            self.malformed += 1
            return []
        return [request]

    def observe(self, request: Request) -> None:
        self.requests += 1
        self.by_status[request.status] += 1
        path = self.by_path.get(request.path)
        if path is None:
            path = self.by_path[request.path] = PathStats()
        path.add(request.latency_ms)

    def record_alert(self, alert: dict[str, Any]) -> None:
        self.alerts.append(alert)

    @property
    def share_5xx(self) -> float:
        errors = sum(n for status, n in self.by_status.items() if status >= 500)
        return errors / self.requests if self.requests else 0.0


class ErrorRateAlert:
    """Raises an alert when the 5xx share over the last ``window_s`` of event time
    passes ``threshold``, and a resolution when it falls back under half of it.

    Needs ``min_requests`` in the window, so a handful of early errors is not an outage.
    """

    def __init__(
        self, *, window_s: float = 3.0, threshold: float = 0.15, min_requests: int = 50
    ) -> None:
        self.window_ms = int(window_s * 1000)
        self.threshold = threshold
        self.min_requests = min_requests
        self.firing = False
        self._window: deque[tuple[int, bool]] = deque()
        self._errors = 0
        self._latest_ms = 0

    def observe(self, request: Request) -> list[dict[str, Any]]:
        """Add one request; returns the alert records this request raises (0 or 1)."""
        is_error = request.status >= 500
        self._window.append((request.timestamp_ms, is_error))
        self._errors += is_error
        self._latest_ms = max(self._latest_ms, request.timestamp_ms)
        horizon = self._latest_ms - self.window_ms
        while self._window and self._window[0][0] < horizon:
            _, was_error = self._window.popleft()
            self._errors -= was_error
        total = len(self._window)
        if total < self.min_requests:
            return []
        share = self._errors / total
        if not self.firing and share >= self.threshold:
            self.firing = True
            return [self._alert("firing", share, total)]
        if self.firing and share < self.threshold / 2:
            self.firing = False
            return [self._alert("resolved", share, total)]
        return []

    def _alert(self, state: str, share: float, total: int) -> dict[str, Any]:
        return {
            "alert": "high-5xx-share",
            "state": state,
            "share_5xx": round(share, 4),
            "threshold": self.threshold,
            "window_s": self.window_ms / 1000,
            "requests_in_window": total,
            "at": format_timestamp(self._latest_ms),
        }
