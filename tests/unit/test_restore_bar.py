"""spate run draws a bar per partition whose stores are being restored, on a terminal."""

from __future__ import annotations

import asyncio
import io

from rich.console import Console

from spate.cli.restore_bar import RestoreBar
from spate.record import TopicPartition
from spate.runtime.lifecycle import ServiceContext
from spate.runtime.stats import ProcessorStats


def context_of(stats: ProcessorStats) -> ServiceContext:
    return ServiceContext("app", None, None, [], {"sums": stats}, asyncio.Event())  # type: ignore[arg-type]


async def test_a_bar_shows_while_a_partition_restores_and_goes_when_it_is_done() -> None:
    out = io.StringIO()
    bar = RestoreBar(Console(file=out, force_terminal=True, width=100))
    stats = ProcessorStats(processor="sums", group="sums")
    context = context_of(stats)
    stats.restore_progress[TopicPartition("numbers", 2)] = (300, 1000)
    await bar.tick(context)
    assert bar._progress is not None
    bar._progress.refresh()
    assert "restoring sums numbers[2]" in out.getvalue()
    assert "300/1000" in out.getvalue()
    stats.restore_progress.clear()
    await bar.tick(context)
    assert bar._progress is None
    await bar.stop()


async def test_off_a_terminal_nothing_is_drawn() -> None:
    out = io.StringIO()
    bar = RestoreBar(Console(file=out, force_terminal=False))
    stats = ProcessorStats(processor="sums", group="sums")
    await bar.start(context_of(stats))
    stats.restore_progress[TopicPartition("numbers", 0)] = (1, 2)
    await asyncio.sleep(0.3)
    await bar.stop()
    assert out.getvalue() == ""
