"""The join scenarios of issue 13, run on memory:// and on every real broker.

Each builds an App, drives it through :class:`~spate.testing.app.TestApp` on the broker
given and compares what the joins published with the expected outputs. Topic and
processor names carry a ``tag`` so runs on one shared broker never meet.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from spate import App, ManualClock, deadletter
from spate.testing.app import TestApp

BASE_MS = (time.time_ns() // 3_600_000_000_000 - 1) * 3_600_000
"""Event times start here: a whole hour, an hour or two ago. Not a fixed date: Kafka
deletes records whose timestamps are older than its retention (7 days by default) at
its next retention check, which can come in the middle of a test."""


def table_join_app(tag: str, how: str, **settings: Any) -> App:
    app = App(f"joins-{tag}", broker="memory://", **settings)
    orders = app.topic(f"orders-{tag}", partitions=2)
    users = app.table(app.topic(f"users-{tag}", partitions=3))
    (
        app.stream(orders, group=f"enrich-{tag}")
        .join(
            users,
            how=how,
            on=lambda o: o["user"],
            merge=lambda o, u: {"order": o["id"], "country": u["country"] if u else None},
        )
        .to(app.topic(f"enriched-{tag}", partitions=1))
    )
    return app


async def check_table_join(
    tag: str, how: str, broker: str, timeout_s: float = 30, **settings: Any
) -> None:
    """Rows first (restored or followed), then orders: each order meets its user's
    latest row; a deleted user and an unknown one have none."""
    app = table_join_app(tag, how, **settings)
    async with TestApp(app, broker=broker, timeout_s=timeout_s) as t:
        users = f"users-{tag}"
        t.send(users, {"country": "fr"}, key="ann")
        t.send(users, {"country": "de"}, key="bob")
        t.send(users, {"country": "it"}, key="cid")
        t.send(users, {"country": "es"}, key="ann")  # the latest value wins
        t.send(users, None, key="cid")  # a tombstone deletes
        await t.run_until_idle_async()
        for i, user in enumerate(["ann", "bob", "cid", "dan", "ann"]):
            t.send(f"orders-{tag}", {"id": i, "user": user}, key=f"order-{i}")
        await t.run_until_idle_async()
        enriched = await t.outputs_async(f"enriched-{tag}")
    expected: list[dict[str, Any]] = [
        {"order": 0, "country": "es"},
        {"order": 1, "country": "de"},
        {"order": 2, "country": None},
        {"order": 3, "country": None},
        {"order": 4, "country": "es"},
    ]
    if how == "inner":
        expected = [e for e in expected if e["country"] is not None]
    assert sorted(enriched, key=lambda e: e["order"]) == expected


def window_join_app(tag: str, how: str, **settings: Any) -> App:
    app = App(f"joins-{tag}", broker="memory://", **settings)
    clicks = app.topic(f"clicks-{tag}", partitions=2)
    views = app.topic(f"views-{tag}", partitions=3)
    (
        app.stream(clicks, group=f"attribute-{tag}")
        .join_stream(
            views,
            within=10,
            grace=60,
            how=how,
            on_left=lambda c: c["ad"],
            on_right=lambda v: v["ad"],
            merge=lambda c, v: [c["id"], v["id"] if v else None],
        )
        .to(app.topic(f"attributed-{tag}", partitions=1))
    )
    return app


async def check_window_join(
    tag: str, how: str, broker: str, timeout_s: float = 30, **settings: Any
) -> None:
    """Clicks meet the views of their ad at most 10 s apart (either way round); with
    how='left' a click that met none comes out with None once a later record moves
    the watermark (max event time - 60 s grace) past its window."""
    app = window_join_app(tag, how, **settings)
    clicks, views = f"clicks-{tag}", f"views-{tag}"
    async with TestApp(app, broker=broker, timeout_s=timeout_s) as t:

        def send(topic: str, id_: str, ad: str, at_s: float) -> None:
            t.send(topic, {"id": id_, "ad": ad}, key=id_, timestamp_ms=BASE_MS + int(at_s * 1000))

        send(views, "v1", "a", 0)
        send(views, "v2", "a", 30)
        send(views, "v3", "b", 5)
        send(clicks, "c1", "a", 8)  # meets v1 (8 s)
        send(clicks, "c2", "a", 25)  # meets v2 (5 s before it), not v1 (25 s)
        send(clicks, "c3", "b", 16)  # v3 is 11 s away: none
        send(clicks, "c4", "c", 1)  # no view of ad c: none
        send(clicks, "c5", "a", 31)  # meets v2
        await t.run_until_idle_async()
        # far later records on every ad close the windows above (partition by partition)
        for ad in ("a", "b", "c"):
            send(views, f"late-{ad}", ad, 1000)
        await t.run_until_idle_async()
        attributed = await t.outputs_async(f"attributed-{tag}")
    expected: list[list[str | None]] = [["c1", "v1"], ["c2", "v2"], ["c5", "v2"]]
    if how == "left":
        expected += [["c3", None], ["c4", None]]
    assert sorted(attributed, key=str) == sorted(expected, key=str)


async def check_window_join_time(
    tag: str, broker: str, timeout_s: float = 30, **settings: Any
) -> None:
    """Event time kept as windows keep it: times from the values, 10 s of grace (an
    out-of-order click meets two views: two outputs of one record), a late click
    dead-lettered and counted, and a click that met nobody emitted with None once its
    idle partition's watermark moves with the manual clock."""
    app = App(f"joins-{tag}", broker="memory://", **settings)
    clicks, views, out = f"clicks-{tag}", f"views-{tag}", f"attributed-{tag}"
    (
        app.stream(app.topic(clicks, partitions=2), group=f"attribute-{tag}", dead_letter=True)
        .join_stream(
            app.topic(views, partitions=3),
            within=5,
            how="left",
            grace=10,
            idle_timeout_s=30,
            late="dead_letter",
            event_time=lambda v: v["at"],
            on_left=lambda c: c["ad"],
            on_right=lambda v: v["ad"],
            merge=lambda c, v: [c["id"], v["id"] if v else None],
        )
        .to(app.topic(out, partitions=1))
    )
    clock = ManualClock(start_ms=BASE_MS)
    async with TestApp(app, broker=broker, clock=clock, timeout_s=timeout_s) as t:

        async def send(topic: str, id_: str, at_s: int) -> None:
            t.send(topic, {"id": id_, "ad": "a", "at": BASE_MS + at_s * 1000}, key=id_)
            await t.run_until_idle_async()  # the sides reach the join topic in this order

        await send(views, "v1", 100)
        await send(views, "v2", 106)
        await send(views, "v3", 112)  # watermark 102 s
        await send(clicks, "c1", 104)  # meets v1 and v2, not v3 (8 s away)
        await send(clicks, "c2", 90)  # its window closed at 95 s: late
        await send(clicks, "c3", 130)  # meets nobody
        first = await t.outputs_async(out)
        await t.advance_async(60)  # idle past 30 s: c3's window closes with the clock
        everything = await t.outputs_async(out)
        letters = await t.records_async(deadletter.dead_letter_topic(clicks))
    assert sorted(first) == [["c1", "v1"], ["c1", "v2"]]
    assert sorted(everything, key=str) == [["c1", "v1"], ["c1", "v2"], ["c3", None]]
    assert [json.loads(letter.value[9:])["id"] for letter in letters] == ["c2"]
    assert app.stats[f"attribute-{tag}.joined"].late_records == 1


def group_by_app(tag: str, **settings: Any) -> App:
    app = App(f"hops-{tag}", broker="memory://", **settings)
    (
        app.stream(app.topic(f"orders-{tag}", partitions=3), group=f"by-user-{tag}")
        .filter(lambda o: o["amount"] > 0)
        .group_by(lambda o: o["user"])
        .map(lambda o: o["amount"])
        .to(app.topic(f"amounts-{tag}", partitions=2))
    )
    return app


async def check_group_by(tag: str, broker: str, timeout_s: float = 30, **settings: Any) -> None:
    """Orders keyed by order id come out keyed by user, every user's orders having
    crossed one partition of the internal topic."""
    app = group_by_app(tag, **settings)
    async with TestApp(app, broker=broker, timeout_s=timeout_s) as t:
        for i in range(12):
            t.send(f"orders-{tag}", {"user": f"u{i % 3}", "amount": i}, key=f"order-{i}")
        await t.run_until_idle_async()
        hopped = await t.records_async(f"hops-{tag}-by-user-{tag}-repartition")
        amounts = await t.records_async(f"amounts-{tag}")
    partitions_of: dict[bytes, set[int]] = {}
    for record in hopped:
        partitions_of.setdefault(record.key or b"", set()).add(record.partition)
    assert sorted(partitions_of) == [b"u0", b"u1", b"u2"]
    assert all(len(parts) == 1 for parts in partitions_of.values())
    assert sorted((r.key, int(r.value)) for r in amounts) == sorted(
        (f"u{i % 3}".encode(), i) for i in range(1, 12)
    )


Scenario = Callable[[str, str], Awaitable[None]]


def _scenarios() -> dict[str, Scenario]:
    def table(how: str) -> Scenario:
        return lambda tag, broker: check_table_join(tag, how, broker, timeout_s=90)

    def window(how: str) -> Scenario:
        return lambda tag, broker: check_window_join(tag, how, broker, timeout_s=90)

    return {
        "group_by": lambda tag, broker: check_group_by(
            tag, broker, timeout_s=90, processing_guarantee="exactly-once"
        ),
        "table-inner": table("inner"),
        "table-left": table("left"),
        "window-inner": window("inner"),
        "window-left": window("left"),
        "window-event-time": lambda tag, broker: check_window_join_time(
            tag, broker, timeout_s=90, processing_guarantee="exactly-once"
        ),
    }


SCENARIOS = _scenarios()
"""Every scenario, by name, as ``scenario(tag, broker_url)``: what each broker runs.
group_by and window-event-time run exactly-once, which is effectively-once on NATS
and Redis; Tansu runs
it too, though it is never the proof of exactly-once (Apache Kafka is)."""
