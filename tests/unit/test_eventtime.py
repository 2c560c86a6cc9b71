"""Watermarks per partition: largest event time minus grace, idle partitions move
with the clock, and the watermark survives in the store."""

from __future__ import annotations

import pytest

from spate.clock import ManualClock
from spate.errors import ConfigError
from spate.partitions import PartitionContext
from spate.record import TopicPartition
from spate.state.store import MemoryStore
from spate.streams.eventtime import WATERMARK_KEY, EventTime, seconds_to_ms, watermark


def context(clock: ManualClock) -> PartitionContext:
    return PartitionContext(TopicPartition("t", 0), clock)


def test_watermark_is_largest_event_time_minus_grace() -> None:
    clock = ManualClock()
    wm = watermark(context(clock), MemoryStore("s"), EventTime(grace_s=5))
    assert wm.value is None
    wm.seen(10_000, clock.monotonic())
    wm.seen(7_000, clock.monotonic())
    assert wm.value == 5_000


def test_an_idle_partition_moves_with_the_clock_after_the_timeout() -> None:
    clock = ManualClock()
    wm = watermark(context(clock), MemoryStore("s"), EventTime(idle_timeout_s=10))
    wm.seen(1_000, clock.monotonic())
    clock.advance(9)
    assert not wm.idle(clock.monotonic())
    clock.advance(2)
    assert wm.idle(clock.monotonic())
    assert wm.value == 12_000
    clock.advance(1)
    assert wm.idle(clock.monotonic())
    assert wm.value == 13_000


def test_no_idle_timeout_keeps_the_watermark() -> None:
    clock = ManualClock()
    wm = watermark(context(clock), MemoryStore("s"), EventTime(idle_timeout_s=None))
    wm.seen(1_000, clock.monotonic())
    clock.advance(3600)
    assert not wm.idle(clock.monotonic())


def test_the_watermark_is_loaded_from_the_store_after_assignment() -> None:
    clock = ManualClock()
    store = MemoryStore("s")
    wm = watermark(context(clock), store, EventTime(grace_s=1))
    wm.seen(5_000, clock.monotonic())
    wm.save(store)
    assert store.get(WATERMARK_KEY) == 5_000
    again = watermark(context(clock), store, EventTime(grace_s=1))
    assert again.value == 4_000


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"grace_s": -1}, "grace"),
        ({"idle_timeout_s": 0}, "idle_timeout_s"),
        ({"extract": 3}, "event_time"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        EventTime(**kwargs)  # type: ignore[arg-type]


def test_durations_under_a_millisecond_are_refused() -> None:
    with pytest.raises(ConfigError, match="size"):
        seconds_to_ms("size", 0.0001)
    assert seconds_to_ms("size", 1.5) == 1500
