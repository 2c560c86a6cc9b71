"""The stall watchdog: a loud line when a partition with lag stops moving.

A partition is stalled when its group has lag there and its committed offset has not
moved for ``stall_timeout_s``: a handler blocked on a lock or a dead downstream, a
batch that never ends. The batch loop is not touched: the watchdog reads what the lag
poller (:mod:`spate.observability.lag`) already stores in each processor's
``stats.lag`` — the committed offset *is* the progress — so it needs the poller, and
:func:`~spate.observability.server.observability_services` runs the poller whenever
the watchdog runs, metrics port or not. It watches only the partitions this process
holds (``stats.assigned``), so each stall is logged once, by its owner: one
``event=partition_stalled`` WARNING per stall, one ``event=partition_resumed`` when
the offset moves again (or the lag is gone).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spate.brokers.base import PartitionLag
from spate.clock import SYSTEM_CLOCK, Clock
from spate.observability.periodic import Periodic
from spate.record import TopicPartition

if TYPE_CHECKING:
    from spate.runtime.lifecycle import ServiceContext

log = logging.getLogger("spate.observability")


@dataclass(slots=True)
class _Watch:
    """Where one partition's committed offset was, and since when."""

    committed: int | None
    since: float
    stalled: bool = False


class StallWatchdog(Periodic):
    """Checks every ``interval_s`` for partitions stalled ``timeout_s`` or longer."""

    def __init__(self, timeout_s: float, interval_s: float, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(interval_s, clock)
        self.timeout_s = timeout_s
        self._watches: dict[tuple[str, TopicPartition], _Watch] = {}

    async def start(self, context: ServiceContext) -> None:
        if context.broker.capabilities.lag:
            self.begin(context)

    async def tick(self, context: ServiceContext) -> None:
        self.check(context)

    def check(self, context: ServiceContext) -> None:
        """Compare each held partition's last polled offset with what it was."""
        now = self.clock.monotonic()
        seen: set[tuple[str, TopicPartition]] = set()
        for processor in context.processors:
            stats = context.stats[processor.name]
            for tp in stats.assigned:
                lag = stats.lag.get(tp)
                if lag is None:
                    continue
                key = (processor.name, tp)
                seen.add(key)
                watch = self._watches.get(key)
                if watch is None or watch.committed != lag.committed or lag.lag <= 0:
                    if watch is not None and watch.stalled:
                        _report(
                            logging.INFO, "partition_resumed", context, key, lag, now - watch.since
                        )
                    self._watches[key] = _Watch(lag.committed, now)
                elif not watch.stalled and now - watch.since >= self.timeout_s:
                    watch.stalled = True
                    _report(
                        logging.WARNING, "partition_stalled", context, key, lag, now - watch.since
                    )
        for key in self._watches.keys() - seen:
            del self._watches[key]  # released: its next owner watches it


def _report(
    level: int,
    event: str,
    context: ServiceContext,
    key: tuple[str, TopicPartition],
    lag: PartitionLag,
    stalled_s: float,
) -> None:
    processor, tp = key
    log.log(
        level,
        "event=%s app=%s processor=%s topic=%s partition=%d committed=%s lag=%d stalled_s=%.1f",
        event,
        context.app_name,
        processor,
        tp.topic,
        tp.partition,
        lag.committed,
        lag.lag,
        stalled_s,
    )
