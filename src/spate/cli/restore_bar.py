"""A progress bar per store restore on a terminal, for ``spate run``.

Restoring a big changelog can take a while, and a worker that says nothing meanwhile
looks stuck. When stderr is a terminal, this service draws one rich progress bar per
partition being restored (from ``ProcessorStats.restore_progress``), and removes it
when the partition is ready; off a terminal (logs, pods) the ``event=state_restored``
lines say the same without redrawing.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from spate.observability.periodic import Periodic
from spate.record import TopicPartition

if TYPE_CHECKING:
    from spate.runtime.lifecycle import ServiceContext

REDRAW_S = 0.2


class RestoreBar(Periodic):
    """Bars for the partitions whose stores are being restored now."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__(REDRAW_S)
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._bars: dict[tuple[str, TopicPartition], TaskID] = {}

    async def start(self, context: ServiceContext) -> None:
        if self.console.is_terminal:
            self.begin(context)

    async def tick(self, context: ServiceContext) -> None:
        restoring = {
            (name, tp): done_total
            for name, stats in context.stats.items()
            for tp, done_total in stats.restore_progress.items()
        }
        if restoring and self._progress is None:
            self._progress = Progress(
                TextColumn("restoring {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        progress = self._progress
        if progress is None:
            return
        for key, (done, total) in restoring.items():
            bar = self._bars.get(key)
            if bar is None:
                name, tp = key
                bar = self._bars[key] = progress.add_task(
                    f"{name} {tp.topic}[{tp.partition}]", total=total
                )
            progress.update(bar, completed=done, total=total)
        for key in [k for k in self._bars if k not in restoring]:
            progress.remove_task(self._bars.pop(key))
        if not self._bars:
            progress.stop()
            self._progress = None

    async def stop(self) -> None:
        await super().stop()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def restore_bars() -> list[RestoreBar]:
    """The service for ``spate run``'s processes: one when stderr is a terminal."""
    return [RestoreBar()] if sys.stderr.isatty() else []
