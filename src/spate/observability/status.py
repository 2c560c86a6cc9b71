"""``/readyz`` and ``/status``: what an operator (or ``spate top``) asks of a run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spate.runtime.lifecycle import ServiceContext

RATE_WINDOW_S = 1.0
"""Rates are measured over at least this long between two ``/status`` requests."""


def not_ready(context: ServiceContext) -> list[str]:
    """Why the run is not ready (empty: ready): every processor must run with its
    partitions assigned, reaching a broker that is available."""
    reasons = [] if context.broker.available else ["broker unavailable"]
    for processor in context.processors:
        stats = context.stats[processor.name]
        if not stats.running:
            reasons.append(f"processor {processor.name} not running")
        elif not stats.connected:
            reasons.append(f"processor {processor.name} lost its broker")
        elif not stats.assigned:
            reasons.append(f"processor {processor.name} has no partitions assigned")
    return reasons


@dataclass(slots=True)
class _Sample:
    at: float
    consumed: int
    produced: int
    consumed_per_s: float = 0.0
    produced_per_s: float = 0.0


class StatusView:
    """The ``/status`` document of one run; remembers the last counts for rates."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self.started = time.monotonic()
        self._samples = {
            name: _Sample(self.started, s.consumed, s.produced) for name, s in context.stats.items()
        }

    def document(self) -> dict[str, Any]:
        context, now = self.context, time.monotonic()
        return {
            "app": context.app_name,
            "uptime_s": round(now - self.started, 3),
            "ready": not not_ready(context),
            "broker_available": context.broker.available,
            "processors": [self._processor(p.name, p.group, now) for p in context.processors],
        }

    def _processor(self, name: str, group: str, now: float) -> dict[str, Any]:
        stats = self.context.stats[name]
        sample = self._samples[name]
        if now - sample.at >= RATE_WINDOW_S:
            elapsed = now - sample.at
            sample.consumed_per_s = (stats.consumed - sample.consumed) / elapsed
            sample.produced_per_s = (stats.produced - sample.produced) / elapsed
            sample.at, sample.consumed, sample.produced = now, stats.consumed, stats.produced
        assigned, restoring = set(stats.assigned), stats.restoring
        known = sorted(assigned | restoring | set(stats.lag))
        return {
            "name": name,
            "group": group,
            "running": stats.running,
            "connected": stats.connected,
            "consumed": stats.consumed,
            "produced": stats.produced,
            "errors": stats.errors,
            "rebalances": stats.rebalances,
            "commits": stats.commits,
            "commit_failures": stats.commit_failures,
            "restoring": len(restoring),
            "state_restored": stats.state_restored,
            "consumed_per_s": round(sample.consumed_per_s, 3),
            "produced_per_s": round(sample.produced_per_s, 3),
            "partitions": [
                {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "assigned": tp in assigned,
                    "restoring": tp in restoring,
                    "committed": lag.committed if (lag := stats.lag.get(tp)) else None,
                    "end_offset": lag.end_offset if lag else None,
                    "lag": lag.lag if lag else None,
                }
                for tp in known
            ],
        }
