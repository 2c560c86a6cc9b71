"""Injected time, so tests advance a manual clock instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Where spate reads time. Wall time for timestamps, monotonic time for deadlines."""

    def time_ms(self) -> int:
        """Wall-clock milliseconds since the epoch (record timestamps, retention)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (timeouts, intervals)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def time_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that moves only when a test calls :meth:`advance`."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = float(start_ms)
        self._changed = asyncio.Event()
        self.sleeps: list[float] = []
        """Every sleep asked of this clock, in order: the schedule a test asserts."""

    def time_ms(self) -> int:
        return int(self._now_ms)

    def monotonic(self) -> float:
        return self._now_ms / 1000.0

    def advance(self, seconds: float) -> None:
        self._now_ms += seconds * 1000.0
        self._changed.set()
        self._changed = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        """Return once :meth:`advance` has moved the clock ``seconds`` on."""
        self.sleeps.append(seconds)
        self._changed.set()
        self._changed = asyncio.Event()
        deadline = self._now_ms + seconds * 1000.0
        while self._now_ms < deadline:
            await self._changed.wait()

    async def asked(self, count: int) -> float:
        """Wait until ``count`` sleeps have been asked of this clock; the last one's seconds.

        A test drives a retry loop with it: ``clock.advance(await clock.asked(n))``.
        """
        while len(self.sleeps) < count:
            await self._changed.wait()
        return self.sleeps[count - 1]


SYSTEM_CLOCK: Clock = SystemClock()
