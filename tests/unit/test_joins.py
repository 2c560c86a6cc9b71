"""Tables, stream-table joins and windowed stream-stream joins on memory:// (issue 13);
the same scenarios run on every real broker under tests/integration."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from join_checks import (
    check_table_join,
    check_window_join,
    check_window_join_time,
    table_join_app,
    window_join_app,
)
from spate import App, ManualClock, deadletter
from spate.errors import ConfigError
from spate.observability.metrics import render
from spate.partitions import PartitionContext
from spate.record import Record, TopicPartition
from spate.serde import serde_for
from spate.state.store import MemoryStore
from spate.streams.eventtime import WATERMARK_KEY
from spate.streams.joins import LEFT, RIGHT, JoinSerde, WindowJoin, window_join
from spate.streams.stages import Item
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


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
async def test_window_join_event_time_against_expected_outputs(guarantee: str) -> None:
    await check_window_join_time("m", memory(), processing_guarantee=guarantee)


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


# --- event time: grace, late records, idle partitions, extractors (as windows) --------

T0 = 1_700_000_000_000


def clicks_and_views(**join: Any) -> tuple[App, str]:
    """Clicks left-joined with the views of their ad at most 5 s apart; returns the App
    and its output topic."""
    app = App("ads", broker="memory://unused")
    (
        app.stream(app.topic("clicks", 2), group="attribute", dead_letter=True)
        .join_stream(
            app.topic("views", 2),
            within=5,
            how="left",
            on_left=lambda c: c["ad"],
            on_right=lambda v: v["ad"],
            merge=lambda c, v: [c["id"], v["id"] if v else None],
            **join,
        )
        .to(app.topic("attributed", 1))
    )
    return app, "attributed"


def send(t: TestApp, topic: str, id_: str, at_s: float, ad: str = "a") -> None:
    """One record, processed before the next is sent: the two sides reach the join
    topic in the order sent."""
    t.send(topic, {"id": id_, "ad": ad, "at": T0 + int(at_s * 1000)}, key=id_, timestamp_ms=T0)
    t.run_until_idle()


def times_from_values(**join: Any) -> dict[str, Any]:
    return {"event_time": lambda v: v["at"], **join}


@pytest.mark.parametrize(("grace", "pairs", "late"), [(20, [["c1", "v1"]], 0), (0, [], 1)])
def test_grace_lets_out_of_order_records_still_meet(
    grace: float, pairs: list[list[str]], late: int
) -> None:
    app, out = clicks_and_views(**times_from_values(grace=grace, idle_timeout_s=None))
    with TestApp(app, clock=ManualClock(start_ms=T0)) as t:
        send(t, "views", "v1", 100)
        send(t, "views", "v2", 120)  # watermark: 120 s - grace
        send(t, "clicks", "c1", 103)  # 17 s out of order: within 20 s of grace only
        assert t.outputs(out) == pairs
    assert app.stats["attribute.joined"].late_records == late


def test_late_records_are_counted_and_dead_lettered() -> None:
    app, out = clicks_and_views(**times_from_values(late="dead_letter"))
    with TestApp(app, clock=ManualClock(start_ms=T0)) as t:
        send(t, "clicks", "c1", 100)
        send(t, "views", "v1", 200)  # c1's window closed: it is emitted alone
        send(t, "clicks", "c2", 194)  # window [189, 199] s: closed at 200 s
        send(t, "clicks", "c3", 195)  # window [190, 200] s: open, meets v1
        assert t.outputs(out) == [["c1", None], ["c3", "v1"]]
        letters = t.records(deadletter.dead_letter_topic("clicks"))
    assert [json.loads(letter.value[9:])["id"] for letter in letters] == ["c2"]
    headers = {name: value.decode() for name, value in letters[0].headers}
    assert headers[deadletter.HEADER_ERROR_TYPE] == "LateRecordError"
    assert app.stats["attribute.joined"].late_records == 1
    assert "spate_late_records_total" in render(app.name, app.stats)


def test_late_dead_letters_need_a_dead_letter_topic_and_late_is_checked() -> None:
    app = App("ads", broker="memory://unused")
    stream = app.stream(app.topic("clicks"), group="g")
    with pytest.raises(ConfigError, match=r"late='keep' must be 'drop' or 'dead_letter'"):
        stream.join_stream(app.topic("views"), within=1, late="keep")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"idle_timeout_s=0"):
        stream.join_stream(app.topic("views"), within=1, idle_timeout_s=0)
    stream.join_stream(app.topic("views"), within=1, late="dead_letter").to(app.topic("out"))
    with pytest.raises(ConfigError, match=r"dead_letter=True"):
        app.validate()


@pytest.mark.parametrize("idle_timeout_s", [30, None])
def test_an_idle_partition_emits_its_left_join_misses_with_the_clock(
    idle_timeout_s: float | None,
) -> None:
    app, out = clicks_and_views(**times_from_values(idle_timeout_s=idle_timeout_s))
    with TestApp(app, clock=ManualClock(start_ms=T0)) as t:
        send(t, "views", "v1", 10)
        send(t, "clicks", "c1", 12)  # meets v1
        send(t, "clicks", "c2", 30)  # meets nobody (yet)
        t.advance(20)  # not idle for 30 s yet
        assert t.outputs(out) == [["c1", "v1"]]
        t.advance(20)  # idle: the watermark moves with the clock past 30 s + 5 s
        emitted = t.outputs(out)
    assert emitted == [["c1", "v1"]] + ([["c2", None]] if idle_timeout_s else [])


def test_event_times_come_from_the_extractor_on_both_sides() -> None:
    """Record timestamps are all the same; the values' times are 100 s apart."""
    app, out = clicks_and_views(**times_from_values())
    with TestApp(app, clock=ManualClock(start_ms=T0)) as t:
        send(t, "views", "v1", 0)
        send(t, "clicks", "c1", 100)  # its window closes v1's
        send(t, "views", "v2", 103)
        assert t.outputs(out) == [["c1", "v2"]]


def test_an_extractor_that_raises_fails_that_record_only() -> None:
    app, out = clicks_and_views(**times_from_values())
    with TestApp(app, clock=ManualClock(start_ms=T0)) as t:
        t.send("views", {"id": "v0", "ad": "a"}, key="v0")  # no "at"
        t.run_until_idle()
        send(t, "views", "v1", 0)
        send(t, "clicks", "c1", 1)
        assert t.outputs(out) == [["c1", "v1"]]
        letters = t.records(deadletter.dead_letter_topic("clicks"))
    assert [json.loads(letter.value)["id"] for letter in letters] == ["v0"]
