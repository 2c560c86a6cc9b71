"""Windows through the App runtime, the same scenario on every broker: per user,
count and revenue in tumbling 10-second event-time windows with 2 s of grace; one
record comes too late and is dead-lettered; an idle partition's last windows close
when the manual clock passes their idle timeout."""

from __future__ import annotations

import time
import uuid
from typing import Any

from spate import App, deadletter
from spate.clock import ManualClock
from spate.streams import agg, tumbling
from spate.testing.app import TestApp

T0 = (time.time_ns() // 3_600_000_000_000 - 1) * 3_600_000
"""Event times start here: a whole hour, an hour or two ago (a multiple of 10 s). Not
a fixed date: Kafka deletes records whose timestamps are older than its retention (7
days by default) at its next retention check, which can come in the middle of a test."""


def window(user: str, start_s: int, n: int, revenue: int) -> dict[str, Any]:
    return {
        "key": user,
        "start": T0 + start_s * 1000,
        "end": T0 + (start_s + 10) * 1000,
        "n": n,
        "revenue": revenue,
    }


def check_windows(broker: str | None, guarantee: str) -> App:
    """Run the scenario on ``broker`` (memory:// if None; fresh topics); returns the App."""
    source = f"orders-{uuid.uuid4().hex[:8]}"
    app = App("shop", processing_guarantee=guarantee)
    orders = app.topic(source, 2)
    totals = app.topic(f"{source}-totals", 2)
    (
        app.stream(orders, group=f"revenue-{source}", dead_letter=True)
        .window(tumbling(seconds=10), grace=2, idle_timeout_s=30, late="dead_letter")
        .aggregate(n=agg.count(), revenue=agg.sum(lambda o: o["amount"]))
        .to(totals)
    )
    sends = [  # (user, event time s, amount), in arrival order
        ("ann", 1, 5),
        ("bob", 3, 1),
        ("ann", 9, 7),
        ("ann", 11, 2),  # ann's partition: watermark 9 s, [0, 10) still open
        ("ann", 8, 4),  # 3 s out of order, within grace: counts
        ("ann", 13, 1),  # watermark 11 s: ann's [0, 10) closes
        ("ann", 5, 100),  # late: its window was emitted
        ("bob", 25, 2),  # bob's [0, 10) closes (watermark 23 s); [20, 30) stays open
    ]
    with TestApp(app, broker=broker, clock=ManualClock(start_ms=T0), timeout_s=60) as t:
        for user, at_s, amount in sends:
            t.send(orders, {"amount": amount}, key=user, timestamp_ms=T0 + at_s * 1000)
        t.run_until_idle()
        closed = t.outputs(totals)
        t.advance(60)  # both partitions idle: their watermarks move with the clock
        everything = t.outputs(totals)
        letters = t.records(deadletter.dead_letter_topic(source))

    def by_window(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(values, key=lambda v: (v["key"], v["start"]))

    assert by_window(closed) == [window("ann", 0, 3, 16), window("bob", 0, 1, 1)], closed
    assert by_window(everything) == [
        window("ann", 0, 3, 16),
        window("ann", 10, 2, 3),
        window("bob", 0, 1, 1),
        window("bob", 20, 1, 2),
    ], everything
    assert [letter.value for letter in letters] == [b'{"amount":100}']
    headers = {name: value.decode() for name, value in letters[0].headers}
    assert headers[deadletter.HEADER_ERROR_TYPE] == "LateRecordError"
    stats = app.stats[f"revenue-{source}"]
    assert stats.late_records == 1
    return app
