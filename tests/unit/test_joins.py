"""Tables, stream-table joins and windowed stream-stream joins on memory:// (issue 13);
the same scenarios run on every real broker under tests/integration."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from join_checks import check_table_join, check_window_join, table_join_app, window_join_app
from spate import App, ManualClock
from spate.errors import ConfigError
from spate.partitions import PartitionContext
from spate.record import Record, TopicPartition
from spate.serde import serde_for
from spate.state.store import MemoryStore
from spate.streams.eventtime import WATERMARK_KEY
from spate.streams.joins import LEFT, RIGHT, JoinSerde, WindowJoin, window_join
from spate.streams.stream import Item
from spate.testing.app import TestApp


def memory() -> str:
    return f"memory://joins-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("how", ["inner", "left"])
async def test_stream_table_join_against_expected_outputs(how: str) -> None:
    await check_table_join("m", how, memory())


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
@pytest.mark.parametrize("how", ["inner", "left"])
async def test_windowed_stream_stream_join_against_expected_outputs(
    how: str, guarantee: str
) -> None:
    await check_window_join("m", how, memory(), processing_guarantee=guarantee)


def test_a_table_is_restored_before_the_processors_start(tmp_path: Path) -> None:
    broker = f"local://{tmp_path}/broker"
    with TestApp(table_join_app("r", "left"), broker=broker) as first:  # an earlier run
        first.send("users-r", {"country": "pt"}, key="eve")
        first.run_until_idle()
    restarted = table_join_app("r", "left")
    with TestApp(restarted, broker=broker) as t:
        # sent at once: the processor must not see it before the table is restored
        t.send("orders-r", {"id": 7, "user": "eve"}, key="o7")
        t.run_until_idle()
        assert t.outputs("enriched-r") == [{"order": 7, "country": "pt"}]
    assert restarted.tables[0].get("eve") == {"country": "pt"}


def test_join_stream_splits_into_side_and_join_processors() -> None:
    app = window_join_app("s", "inner")
    assert [(p.name, [t.name for t in p.stream.topics]) for p in app.processors] == [
        ("attribute-s", ["clicks-s"]),
        ("attribute-s.right", ["views-s"]),
        ("attribute-s.joined", ["joins-s-attribute-s-join"]),
    ]
    assert app.topics["joins-s-attribute-s-join"].partitions == 3  # the most of both sides


def test_join_arguments_are_checked_when_declared() -> None:
    app = App("bad", broker="memory://")
    stream = app.stream(app.topic("a"), group="g")
    table = app.table(app.topic("t"))
    with pytest.raises(ConfigError, match=r"how='outer'\) must be 'inner' or 'left'"):
        stream.join(table, how="outer")
    with pytest.raises(ConfigError, match=r"needs a table from app.table"):
        stream.join(app.topic("t"))  # type: ignore[arg-type]

    async def lookup(value: object) -> object:
        return value

    with pytest.raises(ConfigError, match=r"on=...\) must be a plain function, not async"):
        stream.join(table, on=lookup)
    with pytest.raises(ConfigError, match=r"on_left=...\) must be a plain function"):
        stream.join_stream(app.topic("b"), within=1, on_left=lookup)
    with pytest.raises(ConfigError, match=r"within=-1\) must be seconds >= 0"):
        stream.join_stream(app.topic("b"), within=-1)
    with pytest.raises(ConfigError, match=r"a table of topic 't' already"):
        app.table(app.topic("t"))
    other = App("other", broker="memory://")
    with pytest.raises(ConfigError, match=r"a stream of the same App"):
        stream.join_stream(other.stream(other.topic("b"), group="h"), within=1)


def test_join_buffers_are_rebuilt_from_the_store_after_a_new_assignment() -> None:
    """What a durable store restores (encoded values, matched flags) is enough to go on
    joining: the in-memory buffers are rebuilt from it on the first batch."""
    serde = JoinSerde(serde_for(), serde_for())
    stage = window_join(WindowJoin.of("s", 10, "left", None), serde)
    tp = TopicPartition("join", 0)
    context = PartitionContext(tp, ManualClock())
    context.stores = {"join": MemoryStore("join")}

    def item(offset: int, side: int, at_ms: int, value: object) -> Item:
        data = serde.encode((side, at_ms, value))
        record = Record("join", 0, offset, b"k", data, timestamp_ms=at_ms)
        return (record, b"k", serde.decode(data))

    def run(*items: Item) -> list[object]:
        built = stage(lambda record, exc: None, {tp: context})
        return [value for _, _, value in built.run(list(items))]

    assert run(item(0, LEFT, 1_000, {"click": 1})) == []
    context.state.clear()  # a new owner: only the store is left
    assert run(item(1, RIGHT, 5_000, {"view": 1})) == [({"click": 1}, {"view": 1})]
    context.state.clear()
    # far later: the window closes; the click met a view, so a left join adds nothing
    assert run(item(2, RIGHT, 100_000, {"view": 2})) == []
    assert dict(context.store("join").items()) == {
        (b"k", RIGHT, 100_000, 2): [b'{"view":2}', False],
        WATERMARK_KEY: 100_000,  # kept with the buffers: a new owner closes what was closed
    }
