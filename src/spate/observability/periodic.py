"""The shape of a side service that wakes up every few seconds: the lag poller and
the stall watchdog, which both read or write a processor's stats between batches."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from typing import TYPE_CHECKING

from spate.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from spate.runtime.lifecycle import ServiceContext


class Periodic(abc.ABC):
    """Runs :meth:`tick` at once, then every ``interval_s`` of ``clock``, as a task of
    its own from :meth:`begin` until :meth:`stop`."""

    def __init__(self, interval_s: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def tick(self, context: ServiceContext) -> None:
        """One round of the service's work."""

    def begin(self, context: ServiceContext) -> None:
        self._task = asyncio.create_task(self._run(context), name=f"spate:{type(self).__name__}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, context: ServiceContext) -> None:
        while True:
            await self.tick(context)
            await self.clock.sleep(self.interval_s)
