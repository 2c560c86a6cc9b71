"""ManualClock: sleepers wake when a test advances it, and their requests are kept."""

from __future__ import annotations

import asyncio

from spate.clock import ManualClock


async def test_sleepers_wake_when_time_passes_and_the_schedule_is_kept() -> None:
    clock = ManualClock()
    short = asyncio.create_task(clock.sleep(1.0))
    long = asyncio.create_task(clock.sleep(3.0))
    assert await clock.asked(2) == 3.0
    clock.advance(2.0)
    await asyncio.wait_for(short, 1)
    assert not long.done()
    clock.advance(1.0)
    await asyncio.wait_for(long, 1)
    assert clock.sleeps == [1.0, 3.0]
    assert clock.monotonic() == 1_700_000_003.0
