"""group_by: a stream whose key changes hops through an internal topic (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest

from spate import App
from spate.errors import ConfigError
from spate.streams.stream import Stream
from spate.testing.app import TestApp


def grouping_app(guarantee: str = "at-least-once") -> App:
    app = App("shop", broker="memory://", processing_guarantee=guarantee, fetch_timeout_s=0.02)
    orders = app.topic("orders", partitions=3)
    (
        app.stream(orders, group="by-user")
        .filter(lambda o: o["amount"] > 0)
        .group_by(lambda o: o["user"])
        .map(lambda o: {"user": o["user"], "amount": o["amount"]})
        .to(app.topic("per-user", partitions=2))
    )
    return app


def test_group_by_splits_the_stream_into_two_processors_through_an_internal_topic() -> None:
    app = grouping_app()
    assert [(p.name, p.group) for p in app.processors] == [
        ("by-user", "by-user"),
        ("by-user.grouped", "by-user.grouped"),
    ]
    internal = app.topics["shop-by-user-repartition"]
    assert internal.partitions == 3  # as many as the source
    assert [t.name for t in app.processors[0].stream.output_topics] == [internal.name]
    assert [t.name for t in app.processors[1].stream.topics] == [internal.name]


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_records_of_one_new_key_meet_in_one_partition_of_the_internal_topic(
    guarantee: str,
) -> None:
    app = grouping_app(guarantee)
    with TestApp(app) as t:
        for i in range(12):
            # the source key (the order id) spreads a user's orders over partitions
            t.send("orders", {"user": f"u{i % 3}", "amount": i}, key=f"order-{i}")
        t.run_until_idle()
        hopped = t.records("shop-by-user-repartition")
        outputs = t.records("per-user")
    assert len(hopped) == 11  # amount 0 filtered out before the hop
    partitions_of: dict[bytes, set[int]] = {}
    for record in hopped:
        partitions_of.setdefault(record.key or b"", set()).add(record.partition)
    assert sorted(partitions_of) == [b"u0", b"u1", b"u2"]
    assert all(len(parts) == 1 for parts in partitions_of.values())
    # the second processor ran the rest: keyed by user, values mapped
    assert sorted((r.key, r.value) for r in outputs) == sorted(
        (f"u{i % 3}".encode(), f'{{"user":"u{i % 3}","amount":{i}}}'.encode()) for i in range(1, 12)
    )
    assert app.stats["by-user"].consumed == 12
    assert app.stats["by-user.grouped"].consumed == 11


def test_operators_added_to_the_stream_after_group_by_go_to_the_grouped_processor() -> None:
    app = App("shop", broker="memory://")
    stream = app.stream(app.topic("orders"), group="g")
    stream.group_by(lambda o: o["user"])
    stream.map(lambda o: o["amount"]).to(app.topic("amounts"))  # the same object, continued
    grouped = app.processors[1].stream
    assert repr(grouped).endswith("map.to>")


def test_group_by_keeps_the_stream_error_handling_and_dead_letter_topic() -> None:
    app = App("shop", broker="memory://")
    app.stream(app.topic("orders"), group="g", dead_letter=True).group_by(lambda o: o).map(str)
    first, second = app.processors
    assert second.on_error == first.on_error == "dead_letter"
    assert second.dead_letters == {"shop-g-repartition": "orders.dlq"}


def test_group_by_needs_a_stream_of_an_app_and_valid_partitions() -> None:
    from spate.topic import Topic

    with pytest.raises(ConfigError, match=r"make the stream with app.stream"):
        Stream([Topic(name="t")], "g", "g").group_by(lambda v: v)
    app = App("shop", broker="memory://")
    with pytest.raises(ConfigError, match=r"group_by\(partitions=0\) must be an integer >= 1"):
        app.stream(app.topic("t"), group="g").group_by(lambda v: v, partitions=0)
    ended = app.stream(app.topic("u"), group="h").to(app.topic("v"))
    with pytest.raises(ConfigError, match=r"already ends in .to\(\)"):
        ended.group_by(lambda v: v)


def test_group_by_partitions_and_serde_override_the_defaults() -> None:
    app = App("shop", broker="memory://")
    app.stream(app.topic("t", partitions=2), group="g").map(str).group_by(
        lambda v: v, partitions=5, serde=app.topic("strings", serde="str").serde
    )
    internal: Any = app.topics["shop-g-repartition"]
    assert internal.partitions == 5
    assert internal.serde.inner.name == "str"


def test_records_keep_their_event_time_across_the_hop() -> None:
    """A join after group_by pairs by the source timestamps (years before the hop)."""
    app = App("shop", broker="memory://", fetch_timeout_s=0.02)
    (
        app.stream(app.topic("clicks", partitions=2), group="g")
        .group_by(lambda c: c["ad"])
        .join_stream(app.topic("views", partitions=2), within=10, merge=lambda c, v: c["id"])
        .to(app.topic("joined"))
    )
    with TestApp(app) as t:
        base_ms = 1_600_000_000_000
        t.send("views", {"ad": "a"}, key="a", timestamp_ms=base_ms)
        t.send("clicks", {"id": 1, "ad": "a"}, key="c1", timestamp_ms=base_ms + 5_000)
        t.send("clicks", {"id": 2, "ad": "a"}, key="c2", timestamp_ms=base_ms + 50_000)
        t.run_until_idle()
        assert t.outputs("joined") == [1]
