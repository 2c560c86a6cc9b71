"""Synthetic web access logs, with a scheduled incident and some malformed lines.

Lines look like a combined access log with the response time appended::

    198.51.100.23 - - [2026-11-27T01:02:03.123Z] "GET /api/orders HTTP/1.1" 200 512 rt=0.023

A seeded ``random.Random`` makes a run reproducible; the incident (a burst of 5xx
answers and slow responses) is placed inside the run so the alert fires in every
default run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

# path, weight, typical latency in seconds
PATHS: tuple[tuple[str, float, float], ...] = (
    ("/", 0.22, 0.012),
    ("/api/orders", 0.20, 0.045),
    ("/api/users", 0.15, 0.030),
    ("/api/search", 0.15, 0.120),
    ("/static/app.js", 0.18, 0.004),
    ("/checkout", 0.10, 0.090),
)
_PATH_NAMES = [p for p, _, _ in PATHS]
_PATH_WEIGHTS = [w for _, w, _ in PATHS]
_LATENCY = {p: t for p, _, t in PATHS}

# status, weight in normal operation
NORMAL_STATUSES: tuple[tuple[int, float], ...] = (
    (200, 0.86),
    (201, 0.03),
    (304, 0.04),
    (301, 0.01),
    (404, 0.03),
    (400, 0.015),
    (500, 0.01),
    (503, 0.005),
)
_STATUS_CODES = [status for status, _ in NORMAL_STATUSES]
_STATUS_WEIGHTS = [weight for _, weight in NORMAL_STATUSES]
INCIDENT_5XX_SHARE = 0.4
"""Share of requests answered with 5xx while the incident lasts."""
INCIDENT_SLOWDOWN = 4.0
MALFORMED_SHARE = 0.02


@dataclass(frozen=True, kw_only=True, slots=True)
class Incident:
    """When the simulated outage happens, in seconds since the start of the run."""

    start_s: float
    end_s: float

    @classmethod
    def within(cls, duration_s: float) -> Incident:
        """An incident from 35% to 60% of the run (at most 8 s), so it always fits."""
        start = duration_s * 0.35
        return cls(start_s=start, end_s=min(duration_s * 0.6, start + 8.0))

    def active(self, elapsed_s: float) -> bool:
        return self.start_s <= elapsed_s < self.end_s


def format_timestamp(timestamp_ms: int) -> str:
    """ISO 8601 in UTC with milliseconds, as the log lines carry it."""
    stamp = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AccessLogGenerator:
    """Makes access-log lines; ``lines`` is pure apart from the seeded generator."""

    def __init__(self, incident: Incident, *, seed: int | None = None) -> None:
        self.incident = incident
        self._rng = random.Random(seed)

    def lines(self, count: int, *, elapsed_s: float, timestamp_ms: int) -> list[str]:
        """``count`` lines stamped ``timestamp_ms``, as the run stands at ``elapsed_s``."""
        in_incident = self.incident.active(elapsed_s)
        return [self._line(in_incident, timestamp_ms) for _ in range(count)]

    def _status(self, in_incident: bool) -> int:
        rng = self._rng
        if in_incident and rng.random() < INCIDENT_5XX_SHARE:
            return rng.choice((500, 502, 503, 504))
        return rng.choices(_STATUS_CODES, _STATUS_WEIGHTS)[0]

    def _line(self, in_incident: bool, timestamp_ms: int) -> str:
        rng = self._rng
        path = rng.choices(_PATH_NAMES, _PATH_WEIGHTS)[0]
        status = self._status(in_incident)
        latency = rng.lognormvariate(0.0, 0.5) * _LATENCY[path]
        if in_incident:
            latency *= INCIDENT_SLOWDOWN
        method = "POST" if path == "/checkout" else "GET"
        ip = f"198.51.100.{rng.randrange(1, 255)}"
        size = 0 if status == 304 else rng.randrange(200, 20000)
        line = (
            f'{ip} - - [{format_timestamp(timestamp_ms)}] "{method} {path} HTTP/1.1" '
            f"{status} {size} rt={latency:.3f}"
        )
        if rng.random() < MALFORMED_SHARE:
            return self._break(line)
        return line

    def _break(self, line: str) -> str:
        """A line the parser must reject: cut short, a missing field, or noise."""
        kind = self._rng.randrange(4)
        if kind == 0:
            return line[: self._rng.randrange(5, len(line) // 2)]
        if kind == 1:
            return line.replace(" rt=", " rt=n/a ", 1)
        if kind == 2:
            return line.replace('"GET ', '"', 1).replace('"POST ', '"', 1) + " -"
        return "\\x16\\x03\\x01 client sent a TLS handshake to the plain-text port"
