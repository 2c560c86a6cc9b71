"""Every operator behaves the same with a plain and an async function, errors included.

Each operator's stage is built from one definition for both kinds of function, so
these tests run each operator both ways on the same batch and compare everything the
runtime sees: what is published, with which key, from which record, the side effects,
and what the error policy was told.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from spate.errors import ProcessingError
from spate.record import Record
from spate.runtime.errors import SkipPolicy, StopPolicy
from spate.streams.stages import Batch, Output
from spate.streams.stream import Stream
from spate.topic import Topic

source = Topic.of("numbers", partitions=2)
sink = Topic.of("out")

Published = list[tuple[str, bytes, bytes | None, int]]


def batch_of(values: list[Any]) -> Batch:
    return [
        (Record(topic="numbers", partition=0, offset=i, key=b"k", value=b""), b"k", v)
        for i, v in enumerate(values)
    ]


def published(outputs: list[Output]) -> Published:
    return [(topic, value, key, src.offset) for topic, value, key, src in outputs]


def as_async(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    async def call(value: Any) -> Any:
        await asyncio.sleep(0)
        return fn(value)

    return call


def raising_at(bad: int, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call(value: Any) -> Any:
        if value == bad:
            raise ValueError(f"no {bad}")
        return fn(value)

    return call


def twice_then_fail(value: int) -> Any:
    """A generator that raises halfway for 3: its record is dropped whole."""
    yield value
    if value == 3:
        raise ValueError("halfway")
    yield value + 100


# operator name -> (how to add it to a stream given a function, the function)
OPERATORS: dict[
    str, tuple[Callable[[Stream[Any], Callable[[Any], Any]], Stream[Any]], Callable[..., Any]]
]
OPERATORS = {
    "map": (Stream.map, lambda v: v * 10),
    "filter": (Stream.filter, lambda v: v % 2 == 0),
    "flat_map": (Stream.flat_map, lambda v: [v] * (v % 3)),
    "flat_map generator": (Stream.flat_map, twice_then_fail),
    "key_by": (Stream.key_by, lambda v: f"user-{v % 2}"),
    "key_by unencodable": (Stream.key_by, lambda v: {v} if v == 4 else v),
    "peek": (Stream.peek, lambda v: None),
    "emit": (Stream._emit, lambda v: None if v == 1 else [v, -v] if v == 2 else str(v)),
}


def run_both(
    add: Callable[[Stream[Any], Callable[[Any], Any]], Stream[Any]],
    fn: Callable[[Any], Any],
    values: list[Any],
    policy: Callable[[], SkipPolicy | StopPolicy],
) -> tuple[Any, Any]:
    """(plain run, async run): each either (published, calls, skipped) or the error."""
    outcomes: list[tuple[Any, ...]] = []
    for wrap in (lambda f: f, as_async):
        calls: list[Any] = []

        def recorded(value: Any, calls: list[Any] = calls) -> Any:
            calls.append(value)
            return fn(value)

        errors = policy()
        stream = add(Stream([source], "g", "p"), wrap(recorded))
        pipeline = stream.to(sink).compile(errors.record_failed)
        assert pipeline.is_async == (wrap is as_async)
        try:
            outputs = asyncio.run(pipeline.run(batch_of(values)))
        except ProcessingError as exc:
            outcomes.append((str(exc), type(exc.__cause__), calls))
            continue
        skipped = errors.failed if isinstance(errors, SkipPolicy) else 0
        outcomes.append((published(outputs), calls, skipped))
    return outcomes[0], outcomes[1]


@pytest.mark.parametrize("name", list(OPERATORS))
def test_plain_and_async_functions_give_the_same_outputs(name: str) -> None:
    add, fn = OPERATORS[name]
    plain, in_async = run_both(add, fn, [0, 1, 2, 3, 5], lambda: SkipPolicy("p"))
    assert plain == in_async
    assert plain[0], "every operator here publishes something"


@pytest.mark.parametrize("name", list(OPERATORS))
def test_a_raising_function_is_skipped_alike(name: str) -> None:
    add, fn = OPERATORS[name]
    plain, in_async = run_both(add, raising_at(2, fn), [0, 1, 2, 3, 4], lambda: SkipPolicy("p"))
    assert plain == in_async
    outputs, calls, skipped = plain
    assert calls == [0, 1, 2, 3, 4]  # each record's function ran exactly once
    assert 2 not in {offset for *_, offset in outputs}
    assert skipped >= 1


@pytest.mark.parametrize("name", list(OPERATORS))
def test_a_raising_function_stops_alike_at_its_record(name: str) -> None:
    add, fn = OPERATORS[name]
    plain, in_async = run_both(add, raising_at(2, fn), [0, 1, 2, 3], lambda: StopPolicy("p"))
    assert plain == in_async
    message, cause, calls = plain
    assert "offset=2" in message
    assert cause is ValueError
    assert calls == [0, 1, 2]  # nothing after the failing record ran


def test_failures_inside_an_operator_drop_only_their_record() -> None:
    """A generator raising halfway, a key that cannot be encoded and a truth test that
    raises are each that record's failure, with a plain or an async function."""

    class NoTruth:
        def __bool__(self) -> bool:
            raise TypeError("ambiguous")

    cases: list[tuple[str, list[Any], list[int]]] = [
        ("flat_map generator", [1, 3, 5], [0, 0, 2, 2]),
        ("key_by unencodable", [3, 4, 5], [0, 2]),
    ]
    for name, values, offsets in cases:
        add, fn = OPERATORS[name]
        plain, in_async = run_both(add, fn, values, lambda: SkipPolicy("p"))
        assert plain == in_async
        assert [offset for *_, offset in plain[0]] == offsets
        assert plain[2] == 1
    plain, in_async = run_both(
        Stream.filter, lambda v: NoTruth() if v == 1 else True, [0, 1, 2], lambda: SkipPolicy("p")
    )
    assert plain == in_async
    assert [offset for *_, offset in plain[0]] == [0, 2]


def test_foreach_calls_every_value_and_publishes_nothing_either_way() -> None:
    for wrap in (lambda f: f, as_async):
        seen: list[int] = []
        skip = SkipPolicy("p")
        stream = Stream([source], "g", "p").foreach(wrap(raising_at(1, seen.append)))
        outputs = asyncio.run(stream.compile(skip.record_failed).run(batch_of([0, 1, 2])))
        assert (outputs, seen, skip.failed) == ([], [0, 2], 1)
