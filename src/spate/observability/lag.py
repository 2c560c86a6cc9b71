"""The lag poller: every processor's group lag, asked from the broker on an interval.

Every adapter answers ``Broker.lag`` from its own idea of the log's end (Kafka's high
watermark, a JetStream stream's last sequence, a Redis stream's length, the embedded
log's next offset) against what the group committed, so one poller serves them all.
It runs as a side service of the lifecycle, never in a batch loop, and stores what it
sees in each processor's :class:`~spate.runtime.stats.ProcessorStats` for the
``spate_consumer_lag_records`` gauge and ``/status``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from spate.observability.periodic import Periodic
from spate.record import TopicPartition

if TYPE_CHECKING:
    from spate.runtime.lifecycle import ServiceContext

log = logging.getLogger("spate.observability")


class LagPoller(Periodic):
    """Refreshes ``stats.lag`` of every processor every ``interval_s`` seconds."""

    def __init__(self, interval_s: float) -> None:
        super().__init__(interval_s)
        self._failing = False

    async def start(self, context: ServiceContext) -> None:
        if not context.broker.capabilities.lag:
            log.info("event=lag_unavailable app=%s broker_has_no_lag=true", context.app_name)
            return
        self.begin(context)

    async def tick(self, context: ServiceContext) -> None:
        await self.poll(context)

    async def poll(self, context: ServiceContext) -> None:
        """Ask the lag of each processor's group once; keep the last answer on failure.

        A failure is logged once until a poll succeeds again: the broker being away is
        what the processors report too, and the poller must outlive it."""
        for processor in context.processors:
            topics = [topic.name for topic in processor.stream.topics]
            try:
                lags = await context.broker.lag(processor.group, topics)
            except Exception as exc:  # a side service outlives any broker failure
                if not self._failing:
                    log.warning(
                        "event=lag_poll_failed app=%s processor=%s error=%s: %s",
                        context.app_name,
                        processor.name,
                        type(exc).__name__,
                        exc,
                    )
                self._failing = True
                return
            context.stats[processor.name].lag = {
                TopicPartition(lag.topic, lag.partition): lag for lag in lags
            }
        self._failing = False
