"""Windows through TestApp on memory://: its manual clock, event times, closed windows,
idle timeouts, late records and the errors that name the field to fix."""

from __future__ import annotations

from typing import Any

import pytest

from spate import App
from spate.clock import ManualClock
from spate.errors import ConfigError
from spate.observability.metrics import render
from spate.streams import agg, hopping, session, sliding, tumbling
from spate.testing.app import TestApp
from window_checks import check_windows


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_windows_close_late_records_are_dead_lettered_and_idle_partitions_close(
    guarantee: str,
) -> None:
    app = check_windows(None, guarantee)
    assert "spate_late_records_total" in render(app.name, app.stats)


def test_the_late_records_metric_counts_them() -> None:
    app = check_windows(None, "at-least-once")
    lines = [
        line
        for line in render(app.name, app.stats).splitlines()
        if line.startswith("spate_late_records_total{")
    ]
    assert len(lines) == 1
    assert lines[0].endswith(" 1")


def shop() -> tuple[App, Any, Any]:
    app = App("shop", broker="memory://unused")
    return app, app.topic("orders", 1), app.topic("out", 1)


def test_an_event_time_extractor_and_every_update_emitted() -> None:
    app, orders, out = shop()
    (
        app.stream(orders, group="g")
        .window(hopping(seconds=10, every=5), event_time=lambda o: o["at"], emit="update")
        .aggregate(total=agg.sum(lambda o: o["v"]), items=agg.collect(lambda o: o["v"]))
        .to(out)
    )
    with TestApp(app, clock=ManualClock(start_ms=0)) as t:
        t.send(orders, {"at": 7_000, "v": 1}, key="k")
        t.run_until_idle()
        first = t.outputs(out)
        t.send(orders, {"at": 8_000, "v": 2}, key="k")
        t.run_until_idle()
        both = t.outputs(out)[len(first) :]
    assert [(o["start"], o["end"], o["total"]) for o in first] == [
        (0, 10_000, 1),
        (5_000, 15_000, 1),
    ]
    assert [(o["start"], o["items"]) for o in both] == [(0, [1, 2]), (5_000, [1, 2])]


def test_session_windows_merge_with_a_custom_reducer() -> None:
    app, orders, out = shop()
    distinct = agg.reducer(
        initializer=list,
        add=lambda acc, o: sorted({*acc, o["page"]}),
        merge=lambda a, b: sorted({*a, *b}),
        result=len,
    )
    (
        app.stream(orders, group="g")
        .window(session(gap=30), grace=60, idle_timeout_s=60)
        .aggregate(pages=distinct, clicks=agg.count())
        .to(out)
    )
    with TestApp(app, clock=ManualClock(start_ms=0)) as t:
        for at_s, page in [(0, "a"), (50, "b"), (25, "c"), (51, "b"), (200, "z")]:
            t.send(orders, {"page": page}, key="u", timestamp_ms=at_s * 1000)
        t.run_until_idle()
        closed = t.outputs(out)
        t.advance(120)
        after = t.outputs(out)[len(closed) :]
    # 0 and 50 are two sessions until 25 bridges them
    assert [(o["start"], o["end"], o["pages"], o["clicks"]) for o in closed] == [(0, 81_000, 3, 4)]
    assert [(o["start"], o["end"], o["clicks"]) for o in after] == [(200_000, 230_000, 1)]


def test_sliding_windows_end_at_each_record() -> None:
    app, orders, out = shop()
    (
        app.stream(orders, group="g")
        .window(sliding(seconds=10), idle_timeout_s=5)
        .aggregate(n=agg.count(), top=agg.max(lambda o: o["v"]))
        .to(out)
    )
    with TestApp(app, clock=ManualClock(start_ms=0)) as t:
        for at_s, v in [(1, 3), (5, 9), (14, 1)]:
            t.send(orders, {"v": v}, key="k", timestamp_ms=at_s * 1000)
        t.run_until_idle()
        t.advance(10)
        outputs = t.outputs(out)
    assert [(o["start"], o["end"], o["n"], o["top"]) for o in outputs] == [
        (-9_000, 1_000, 1, 3),
        (-5_000, 5_000, 2, 9),
        (4_000, 14_000, 2, 9),
    ]


def test_advance_needs_a_manual_clock() -> None:
    app, orders, out = shop()
    app.stream(orders, group="g").window(tumbling(seconds=1)).aggregate(n=agg.count()).to(out)
    with TestApp(app) as t, pytest.raises(ConfigError, match="ManualClock"):
        t.advance(1)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda s: s.window(tumbling(seconds=0)), "tumbling"),
        (lambda s: s.window(hopping(seconds=5, every=10)), "every"),
        (lambda s: s.window(tumbling(seconds=1), grace=-1), "grace"),
        (lambda s: s.window(tumbling(seconds=1), idle_timeout_s=0), "idle_timeout_s"),
        (lambda s: s.window(tumbling(seconds=1), emit="always").aggregate(n=agg.count()), "emit"),
        (lambda s: s.window(tumbling(seconds=1), late="keep").aggregate(n=agg.count()), "late"),
        (lambda s: s.window(tumbling(seconds=1)).aggregate(), "at least one"),
        (lambda s: s.window(tumbling(seconds=1)).aggregate(n=len), "n="),
        (lambda s: s.window(tumbling(seconds=1)).aggregate(start=agg.count()), "start"),
        (lambda s: s.window("1m").aggregate(n=agg.count()), "tumbling"),
        (
            lambda s: s.window(session(gap=1)).aggregate(
                x=agg.reducer(initializer=list, add=lambda a, v: a)
            ),
            "merge",
        ),
        (lambda s: s.window(tumbling(seconds=1)).aggregate(n=agg.sum(3)), "sum"),  # type: ignore[arg-type]
    ],
)
def test_bad_window_settings_name_the_field(build: Any, field: str) -> None:
    app, orders, _ = shop()
    with pytest.raises(ConfigError, match=field):
        build(app.stream(orders, group="g"))


def test_late_dead_letters_need_a_dead_letter_topic() -> None:
    app, orders, out = shop()
    (
        app.stream(orders, group="g")
        .window(tumbling(seconds=1), late="dead_letter")
        .aggregate(n=agg.count())
        .to(out)
    )
    with pytest.raises(ConfigError, match="dead_letter=True"):
        app.validate()


def test_unkeyed_records_share_one_window_per_span() -> None:
    app, orders, out = shop()
    app.stream(orders, group="g").window(tumbling(seconds=10)).aggregate(n=agg.count()).to(out)
    with TestApp(app, clock=ManualClock(start_ms=0)) as t:
        for at_s, key in [(1, None), (2, "k"), (3, None), (11, None)]:
            t.send(orders, {}, key=key, timestamp_ms=at_s * 1000)
        t.run_until_idle()
        outputs = t.outputs(out)
    assert [(o["key"], o["start"], o["n"]) for o in outputs] == [(None, 0, 2), ("k", 0, 1)]


def test_a_new_session_acts_on_time_at_once() -> None:
    """A worker that (re)joins acts on the clock at its first fetch, so a test's (or an
    idle partition's) time is seen even if the clock moved just before it started."""
    app, orders, out = shop()
    app.stream(orders, group="g").window(tumbling(seconds=1)).aggregate(n=agg.count()).to(out)
    with TestApp(app, clock=ManualClock(start_ms=0), timeout_s=3) as t:
        t.advance(0)


@pytest.mark.parametrize("window", [tumbling(seconds=10), hopping(seconds=10, every=10)])
def test_aggregations_read_a_field_by_name_and_a_record_without_it_fails_alone(
    window: Any,
) -> None:
    """``agg.sum("v")`` reads ``value["v"]``: inlined in the tumbling loop, and in the
    updater the other shapes call; a record without the field fails on its own."""
    app, orders, out = shop()
    (
        app.stream(orders, group="g", on_error="skip")
        .window(window)
        .aggregate(
            total=agg.sum("v"),
            top=agg.max("v"),
            mean=agg.mean("v"),
            first=agg.first("v"),
            items=agg.collect("v"),
        )
        .to(out)
    )
    with TestApp(app, clock=ManualClock(start_ms=0)) as t:
        for at_s, value in [(1, {"v": 3}), (2, {"w": 1}), (3, {"v": 5}), (11, {"v": 0})]:
            t.send(orders, value, key="k", timestamp_ms=at_s * 1000)
        t.run_until_idle()
        outputs = t.outputs(out)
    assert [
        (o["start"], o["total"], o["top"], o["mean"], o["first"], o["items"]) for o in outputs
    ] == [(0, 8, 5, 4.0, 3, [3, 5])]
    assert app.stats["g"].errors == 1
