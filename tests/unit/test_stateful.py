"""stateful_map and handlers that take ``state``, on the in-memory broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from spate import App, ConfigError, State, StateError
from spate.clock import SYSTEM_CLOCK
from spate.errors import ProcessingError
from spate.partitions import PartitionContext
from spate.record import Record, TopicPartition
from spate.state.store import MemoryStore
from spate.testing.app import TestApp


def summing_app(**settings: Any) -> tuple[App, Any, Any]:
    app = App("sums", **settings)
    numbers = app.topic("numbers", partitions=2)
    totals = app.topic("totals", partitions=2)
    return app, numbers, totals


def test_stateful_map_keeps_a_value_per_key() -> None:
    app, numbers, totals = summing_app()

    def add(value: dict[str, int], state: State[int]) -> dict[str, int]:
        total = (state.get() or 0) + value["n"]
        state.set(total)
        return {"n": value["n"], "total": total}

    app.stream(numbers, group="summer").stateful_map(add).to(totals)
    with TestApp(app) as t:
        for n in range(6):
            t.send(numbers, {"n": n}, key="even" if n % 2 == 0 else "odd")
        t.run_until_idle()
        answers = sorted(t.outputs(totals), key=lambda v: v["n"])
    assert [a["total"] for a in answers] == [0, 1, 2, 4, 6, 9]


def test_a_handler_with_a_state_parameter_gets_the_keys_state_and_may_publish_nothing() -> None:
    app, numbers, totals = summing_app()

    @app.handler(numbers, group="first-seen", output=totals)
    async def first(value: dict[str, int], state: State[bool]) -> dict[str, int] | None:
        if state.get():
            return None
        state.set(True, ttl_s=3600)
        return value

    with TestApp(app) as t:
        for n, key in enumerate(["a", "b", "a", "c", "b"]):
            t.send(numbers, {"n": n}, key=key)
        t.run_until_idle()
        assert sorted(v["n"] for v in t.outputs(totals)) == [0, 1, 3]


def test_state_follows_key_by_and_deletes() -> None:
    app, numbers, totals = summing_app()

    def count_until_three(value: dict[str, int], state: State[int]) -> int:
        seen = (state.get() or 0) + 1
        if seen == 3:
            state.delete()
        else:
            state.set(seen)
        return seen

    (
        app.stream(numbers, group="counter")
        .key_by(lambda v: v["user"])
        .stateful_map(count_until_three, store="seen")
        .to(totals)
    )
    with TestApp(app) as t:
        for _ in range(4):  # state is per source partition: the source key places them
            t.send(numbers, {"user": "ann"}, key="ann")
        t.run_until_idle()
        assert sorted(t.outputs(totals)) == [1, 1, 2, 3]


def test_a_record_without_a_key_stops_the_processor_saying_how_to_give_it_one() -> None:
    app, numbers, totals = summing_app()
    app.stream(numbers, group="summer").stateful_map(lambda v, s: v).to(totals)
    with TestApp(app) as t:
        t.send(numbers, {"n": 1})
        with pytest.raises(ProcessingError, match="a record without a key has no state") as info:
            t.run_until_idle()
    assert isinstance(info.value.__cause__, StateError)
    assert "give records a key" in str(info.value)


def test_a_store_name_that_cannot_name_a_topic_is_refused() -> None:
    app, numbers, _ = summing_app()
    with pytest.raises(ConfigError, match=r"store='a b' must be 1-100 characters"):
        app.stream(numbers, group="g").stateful_map(lambda v, s: v, store="a b")


def test_a_stateful_processor_gets_a_changelog_per_store_partitioned_like_its_source() -> None:
    app, numbers, totals = summing_app()
    app.stream(numbers, group="summer").stateful_map(lambda v, s: v, store="sums").to(totals)
    (processor,) = app.processors
    (changelog,) = processor.changelog_topics(app.name)
    assert (changelog.name, changelog.partitions) == ("sums-summer-sums-changelog", 2)


@pytest.mark.parametrize("is_async", [False, True])
def test_each_batch_uses_the_store_its_partition_has_now(is_async: bool) -> None:
    """Between batches the worker may replace a partition's stores (a batch whose
    transaction failed is rewound and the stores restored without it; a partition is
    revoked and assigned again): the next batch must change the new store, even when it
    starts on the partition the last batch ended on. With the old one kept, its
    changes were never flushed, and the rewound batch counted twice."""
    app, numbers, totals = summing_app()

    def add(value: dict[str, int], state: State[int]) -> int:
        total = (state.get() or 0) + value["n"]
        state.set(total)
        return total

    async def add_async(value: dict[str, int], state: State[int]) -> int:
        return add(value, state)

    app.stream(numbers, group="summer").stateful_map(add_async if is_async else add).to(totals)
    tp = TopicPartition("numbers", 0)
    context = PartitionContext(tp, SYSTEM_CLOCK, stores={"state": MemoryStore("state")})
    contexts = {tp: context}

    def failed(record: Record, exc: Exception) -> None:
        raise exc

    pipeline = app.processors[0].stream.compile(failed, contexts)

    def batch(offset: int, n: int) -> list[tuple[Record, bytes | None, Any]]:
        return [(Record("numbers", 0, offset, b"k", b"", (), 0), b"k", {"n": n})]

    assert [o[1] for o in asyncio.run(pipeline.run(batch(0, 1)))] == [b"1"]
    restored = MemoryStore("state")
    restored.set(b"k", 10)
    context.stores = {"state": restored}
    assert [o[1] for o in asyncio.run(pipeline.run(batch(1, 2)))] == [b"12"]
    assert restored.get(b"k") == 12
