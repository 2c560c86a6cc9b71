"""The stall watchdog on a manual clock: one loud line per stall, one when it resumes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

import spate
from spate.app import App
from spate.brokers.base import PartitionLag
from spate.clock import ManualClock
from spate.config import Settings
from spate.observability.lag import LagPoller
from spate.observability.server import observability_services
from spate.observability.watchdog import StallWatchdog
from spate.record import TopicPartition
from spate.runtime.lifecycle import ServiceContext

TP = TopicPartition("in", 1)


@pytest.fixture
async def context() -> AsyncIterator[ServiceContext]:
    app = App("web", broker="memory://unused")
    app.stream(app.topic("in", partitions=2), group="copy").to(app.topic("out"))
    async with spate.connect("memory://watchdog") as broker:
        yield ServiceContext(
            app.name, broker, app.settings, app.processors, app.stats, asyncio.Event()
        )


def polled(context: ServiceContext, committed: int | None, lag: int) -> None:
    """What the lag poller would store for partition 1, which this process holds."""
    stats = context.stats["copy"]
    stats.assigned = frozenset({TP})
    stats.lag = {
        TP: PartitionLag(
            topic=TP.topic, partition=TP.partition, committed=committed, end_offset=100, lag=lag
        )
    }


async def tick(clock: ManualClock, seconds: float) -> None:
    clock.advance(seconds)
    for _ in range(5):
        await asyncio.sleep(0)  # let the watchdog's sleep return and its check run


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "partition_" in r.getMessage()]


async def test_a_stall_is_logged_once_and_its_end_once(
    context: ServiceContext, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    watchdog = StallWatchdog(timeout_s=60, interval_s=5, clock=clock)
    polled(context, committed=40, lag=60)
    caplog.set_level(logging.INFO, "spate.observability")
    await watchdog.start(context)
    try:
        await tick(clock, 0)  # its first check: offset 40 seen at t=0
        await tick(clock, 55)
        assert lines(caplog) == []
        await tick(clock, 5)
        await tick(clock, 5)
        await tick(clock, 5)
        assert lines(caplog) == [
            "event=partition_stalled app=web processor=copy topic=in partition=1 "
            "committed=40 lag=60 stalled_s=60.0"
        ]
        assert caplog.records[-1].levelno == logging.WARNING
        polled(context, committed=41, lag=59)
        await tick(clock, 5)
        await tick(clock, 5)
    finally:
        await watchdog.stop()
    assert lines(caplog)[1:] == [
        "event=partition_resumed app=web processor=copy topic=in partition=1 "
        "committed=41 lag=59 stalled_s=75.0"
    ]


async def test_no_lag_or_progress_is_no_stall(
    context: ServiceContext, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    watchdog = StallWatchdog(timeout_s=10, interval_s=1, clock=clock)
    caplog.set_level(logging.INFO, "spate.observability")
    polled(context, committed=100, lag=0)
    for _ in range(3):
        watchdog.check(context)
        clock.advance(20)
    for offset in range(50, 55):  # slow but moving
        polled(context, committed=offset, lag=100 - offset)
        watchdog.check(context)
        clock.advance(9)
    context.stats["copy"].assigned = frozenset()  # not ours any more: its owner watches
    clock.advance(60)
    watchdog.check(context)
    assert lines(caplog) == []


def test_the_watchdog_runs_the_lag_poller_without_a_metrics_port() -> None:
    kinds = [type(s) for s in observability_services(Settings(stall_timeout_s=30))]
    assert kinds == [LagPoller, StallWatchdog]
    assert observability_services(Settings(stall_timeout_s=0)) == []
