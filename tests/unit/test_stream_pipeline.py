"""The compiled Stream pipeline on its own: operators, keys, async detection, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from spate.errors import ConfigError, ProcessingError
from spate.record import Record
from spate.runtime.errors import SkipPolicy, StopPolicy
from spate.streams.stages import Batch, Output, is_async_callable
from spate.streams.stream import Stream
from spate.topic import Topic

orders = Topic.of("orders", partitions=2)
out_a = Topic.of("out-a")
out_b = Topic.of("out-b")
out_c = Topic.of("out-c", serde="str")
out_d = Topic.of("out-d")


def triples(outputs: list[Output]) -> list[tuple[str, bytes, bytes | None]]:
    """What the runtime would publish: (topic, value, key)."""
    return [(topic, value, key) for topic, value, key, _source in outputs]


def batch_of(*values: Any, key: bytes | None = b"k") -> Batch:
    return [
        (Record(topic="orders", partition=0, offset=i, key=key, value=b""), key, v)
        for i, v in enumerate(values)
    ]


def fail_stop(record: Record, exc: Exception) -> None:
    StopPolicy("p").record_failed(record, exc)


def test_operators_chain_in_order_and_keep_the_source_key() -> None:
    seen: list[int] = []
    stream = (
        Stream([orders], "g", "p")
        .filter(lambda v: v["amount"] >= 10)
        .map(lambda v: {**v, "big": True})
        .peek(lambda v: seen.append(v["amount"]))
        .flat_map(lambda v: [v, {"copy": v["amount"]}])
        .to(out_a)
    )
    pipeline = stream.compile(fail_stop)
    assert not pipeline.is_async
    published = pipeline.run_sync(batch_of({"amount": 5}, {"amount": 12}, {"amount": 30}))
    assert [source.offset for _, _, _, source in published] == [1, 1, 2, 2]
    assert seen == [12, 30]
    assert triples(published) == [
        ("out-a", b'{"amount":12,"big":true}', b"k"),
        ("out-a", b'{"copy":12}', b"k"),
        ("out-a", b'{"amount":30,"big":true}', b"k"),
        ("out-a", b'{"copy":30}', b"k"),
    ]


def test_key_by_sets_the_output_key_with_encode_key() -> None:
    pipeline = Stream([orders], "g", "p").key_by(lambda v: v["user"]).to(out_a).compile(fail_stop)
    published = pipeline.run_sync(batch_of({"user": "ann"}, {"user": 7}, {"user": None}))
    assert [key for _, _, key in triples(published)] == [b"ann", b"7", None]


def test_route_sends_each_value_to_the_first_match_or_the_default() -> None:
    stream = Stream([orders], "g", "p").route(
        (lambda v: v > 10, out_a), (lambda v: v > 5, out_b), default=out_d
    )
    assert {t.name for t in stream.output_topics} == {"out-a", "out-b", "out-d"}
    published = stream.compile(fail_stop).run_sync(batch_of(20, 7, 1))
    assert len(published) == 3
    assert [(t, v) for t, v, _ in triples(published)] == [
        ("out-a", b"20"),
        ("out-b", b"7"),
        ("out-d", b"1"),
    ]


def test_route_without_default_drops_unmatched_values() -> None:
    pipeline = Stream([orders], "g", "p").route((lambda v: v > 10, out_a)).compile(fail_stop)
    published = pipeline.run_sync(batch_of(1, 11))
    assert triples(published) == [("out-a", b"11", b"k")]


def test_foreach_is_terminal_and_publishes_nothing() -> None:
    seen: list[Any] = []
    stream = Stream([orders], "g", "p").foreach(seen.append)
    assert stream.compile(fail_stop).run_sync(batch_of(1, 2)) == []
    assert seen == [1, 2]
    with pytest.raises(ConfigError, match=r"already ends in \.foreach\(\)"):
        stream.map(str)


def test_handler_results_none_value_or_list() -> None:
    results = {1: None, 2: "two", 3: ["a", "b"], 4: ("tuple", "is one value")}
    pipeline = Stream([orders], "g", "p")._emit(results.__getitem__).to(out_a).compile(fail_stop)
    published = pipeline.run_sync(batch_of(1, 2, 3, 4))
    assert [v for _, v, _ in triples(published)] == [
        b'"two"',
        b'"a"',
        b'"b"',
        b'["tuple","is one value"]',
    ]


def test_stream_without_terminal_publishes_nothing() -> None:
    seen: list[Any] = []
    pipeline = Stream([orders], "g", "p").peek(seen.append).compile(fail_stop)
    assert pipeline.run_sync(batch_of(1)) == []
    assert seen == [1]


async def test_async_functions_are_detected_once_and_awaited() -> None:
    calls: list[str] = []

    async def enrich(v: int) -> int:
        await asyncio.sleep(0)
        calls.append("enrich")
        return v * 10

    async def is_big(v: int) -> bool:
        return v >= 20

    class AsyncKey:
        async def __call__(self, v: int) -> str:
            return f"k{v}"

    assert is_async_callable(enrich)
    assert is_async_callable(AsyncKey())
    assert not is_async_callable(lambda v: v)
    pipeline = (
        Stream([orders], "g", "p")
        .map(enrich)
        .filter(is_big)
        .key_by(AsyncKey())
        .map(lambda v: v + 1)
        .to(out_a)
        .compile(fail_stop)
    )
    assert pipeline.is_async
    assert [s.is_async for s in pipeline.stages] == [True, True, True, False, False]
    published = await pipeline.run(batch_of(1, 2, 3))
    assert calls == ["enrich"] * 3
    assert triples(published) == [("out-a", b"21", b"k20"), ("out-a", b"31", b"k30")]


def test_stop_policy_names_the_record_and_keeps_the_cause() -> None:
    def explode(v: int) -> int:
        if v == 2:
            raise ValueError("bad value")
        return v

    pipeline = Stream([orders], "g", "p").map(explode).to(out_a).compile(fail_stop)
    with pytest.raises(ProcessingError, match="partition=0 offset=1") as info:
        pipeline.run_sync(batch_of(1, 2, 3))
    assert isinstance(info.value.__cause__, ValueError)


def test_skip_policy_drops_only_failing_records_and_counts_them() -> None:
    policy = SkipPolicy("p")
    side_effects: list[int] = []
    pipeline = (
        Stream([orders], "g", "p")
        .peek(side_effects.append)
        .map(lambda v: 10 // v)
        .to(out_a)
        .compile(policy.record_failed)
    )
    published = pipeline.run_sync(batch_of(1, 0, 2))
    assert [v for _, v, _ in triples(published)] == [b"10", b"5"]
    assert len(published) == 2
    assert policy.failed == 1
    assert side_effects == [1, 0, 2]  # side effects ran exactly once per record


def test_unencodable_output_goes_to_the_policy() -> None:
    policy = SkipPolicy("p")
    pipeline = Stream([orders], "g", "p").to(out_c).compile(policy.record_failed)
    published = pipeline.run_sync(batch_of("ok", 5))
    assert triples(published) == [("out-c", b"ok", b"k")]
    assert policy.failed == 1


def test_bad_declarations_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="needs a Topic"):
        Stream([orders], "g", "p").to("out")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a function"):
        Stream([orders], "g", "p").map(42)  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match=r"\(predicate, topic\) pairs"):
        Stream([orders], "g", "p").route(out_a)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least one source topic"):
        Stream([], "g", "p")


def test_a_value_the_serde_cannot_encode_goes_to_the_policy_with_the_serde_error() -> None:
    """The fast encoder (orjson) fails the whole value; the serde's own encode then
    names the problem, and only that record is skipped, in to() and in route()."""
    skip = SkipPolicy("p")
    good, bad = {"n": 1}, {"n": {2}}  # a set is not JSON
    to = Stream([orders], "g", "p").to(out_a).compile(skip.record_failed)
    assert triples(to.run_sync(batch_of(good, bad, good))) == [("out-a", b'{"n":1}', b"k")] * 2
    routed = Stream([orders], "g", "p").route((lambda v: True, out_b)).compile(skip.record_failed)
    assert triples(routed.run_sync(batch_of(bad, good))) == [("out-b", b'{"n":1}', b"k")]
    assert skip.failed == 2
    with pytest.raises(ProcessingError, match="cannot encode dict as JSON"):
        Stream([orders], "g", "p").to(out_a).compile(fail_stop).run_sync(batch_of(bad))
