"""Every window shape against a brute-force reference, on random records.

The reference reads the definitions of :mod:`spate.streams.windows` literally, one
record at a time per partition, with no batching, no store and no index: a record's
watermark is the largest event time before it in its partition minus grace; a window
takes a record while it is open, and everything formed is emitted once the clock has
closed it at the end. The operator under test runs the same records in random batches
(partitions interleaved), with its state in stores, and a final idle tick.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from operator_runs import run_in_batches
from spate.clock import ManualClock
from spate.partitions import PartitionContext
from spate.record import Record, TopicPartition
from spate.state.store import MemoryStore
from spate.streams import agg
from spate.streams.eventtime import EventTime
from spate.streams.windows import (
    Window,
    WindowOperator,
    WindowSpec,
    hopping,
    session,
    sliding,
    tumbling,
)

Row = tuple[int, str, int, int]
"""(partition, key, event time ms, value)."""

AGGREGATIONS = {
    "n": agg.count(),
    "total": agg.sum(lambda o: o["v"]),
    "low": agg.min(lambda o: o["v"]),
    "high": agg.max(lambda o: o["v"]),
    "avg": agg.mean(lambda o: o["v"]),
    "first": agg.first(lambda o: o["v"]),
    "last": agg.last(lambda o: o["v"]),
    "all": agg.collect(lambda o: o["v"]),
}


def summary(contents: list[tuple[int, int]]) -> dict[str, Any]:
    """The aggregations of a window's (event time, value) in arrival order."""
    values = [v for _, v in contents]
    earliest = min(ts for ts, _ in contents)
    latest = max(ts for ts, _ in contents)
    return {
        "n": len(values),
        "total": sum(values),
        "low": min(values),
        "high": max(values),
        "avg": sum(values) / len(values),
        "first": next(v for ts, v in contents if ts == earliest),
        "last": [v for ts, v in contents if ts == latest][-1],
        "all": sorted(values),
    }


def reference(window: Window, grace: int, rows: list[Row]) -> tuple[list[dict[str, Any]], int]:
    """Every window's output and the late count, by the definitions."""
    size, advance = window.size_ms, window.advance_ms
    outputs: list[dict[str, Any]] = []
    late = 0
    for partition in sorted({row[0] for row in rows}):
        top: int | None = None
        fixed: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
        accepted: list[tuple[str, int, int]] = []
        sessions: list[dict[str, Any]] = []
        for p, key, ts, value in rows:
            if p != partition:
                continue
            mark = None if top is None else top - grace
            if window.kind in ("tumbling", "hopping"):
                starts = [s for s in range(ts - size - advance, ts + 1) if s % advance == 0]
                starts = [s for s in starts if s <= ts < s + size]
                open_starts = [s for s in starts if mark is None or s + size > mark]
                late += not open_starts
                for s in open_starts:
                    fixed[(key, s)].append((ts, value))
            elif window.kind == "sliding":
                if mark is not None and ts < mark:
                    late += 1
                else:
                    accepted.append((key, ts, value))
            else:
                for one in sessions:
                    one["closed"] = one["closed"] or (mark is not None and one["end"] <= mark)
                meets = [
                    one
                    for one in sessions
                    if one["key"] == key
                    and not one["closed"]
                    and ts < one["end"]
                    and ts + size > one["start"]
                ]
                if not meets and mark is not None and ts + size <= mark:
                    late += 1
                else:
                    for one in meets:
                        sessions.remove(one)
                    sessions.append(
                        {
                            "key": key,
                            "start": min([ts, *(one["start"] for one in meets)]),
                            "end": max([ts + size, *(one["end"] for one in meets)]),
                            "contents": [c for one in meets for c in one["contents"]]
                            + [(ts, value)],
                            "closed": False,
                        }
                    )
            top = ts if top is None else max(top, ts)
        for (key, start), contents in fixed.items():
            outputs.append({"key": key, "start": start, "end": start + size, **summary(contents)})
        for key, end in {(k, t) for k, t, _ in accepted}:
            contents = [(t, v) for k, t, v in accepted if k == key and end - size < t <= end]
            outputs.append({"key": key, "start": end - size, "end": end, **summary(contents)})
        for one in sessions:
            outputs.append(
                {
                    "key": one["key"],
                    "start": one["start"],
                    "end": one["end"],
                    **summary(one["contents"]),
                }
            )
    return outputs, late


def run_operator(
    window: Window,
    grace: int,
    rows: list[Row],
    cuts: list[int],
    emit: str,
    restarts: int = 0,
    by_value: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """The operator on ``rows`` cut into batches at ``cuts``; after each of the first
    ``restarts`` batches the partitions are assigned anew with the same stores (what
    the cache held must come back from the store); ``by_value``: event times come from
    an extractor, not the record timestamps."""
    clock = ManualClock(start_ms=0)
    contexts = {}
    for partition in (0, 1):
        tp = TopicPartition("orders", partition)
        contexts[tp] = PartitionContext(tp, clock, stores={"window-0": MemoryStore("window-0")})
    spec = WindowSpec(
        window=window,
        event_time=EventTime(
            grace_s=grace / 1000,
            idle_timeout_s=1,
            extract=(lambda o: o["t"]) if by_value else None,
        ),
        emit=emit,  # type: ignore[arg-type]
        names=tuple(AGGREGATIONS),
        aggregators=tuple(AGGREGATIONS.values()),
    )

    def fail(record: Record, exc: Exception) -> None:
        raise exc

    operator = WindowOperator(spec, "window-0", contexts, fail)
    items: list[tuple[Record, bytes | None, Any]] = [
        (
            Record("orders", p, offset, key.encode(), b"", (), 0 if by_value else ts),
            key.encode(),
            {"v": value, "t": ts},
        )
        for offset, (p, key, ts, value) in enumerate(rows)
    ]
    out = run_in_batches(operator, contexts, clock, items, cuts, restarts)
    values = [value for _, _, value in out]
    if emit == "update":
        values = last_updates(window, [(source.partition, value) for source, _, value in out])
    for value in values:
        value["all"] = sorted(value["all"])
    return values, operator.late


def last_updates(window: Window, out: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each window's last update: a later one of the same window (a session: one that
    covers it, as it grew or merged) replaces it."""
    kept: list[dict[str, Any]] = []
    for index, (partition, value) in enumerate(out):
        later = [v for p, v in out[index + 1 :] if p == partition and v["key"] == value["key"]]
        if window.kind == "session":
            replaced = any(v["start"] <= value["start"] and value["end"] <= v["end"] for v in later)
        else:
            replaced = any((v["start"], v["end"]) == (value["start"], value["end"]) for v in later)
        if not replaced:
            kept.append(value)
    return kept


def ordered(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(outputs, key=lambda o: repr(sorted(o.items())))


rows_strategy = st.lists(
    st.tuples(
        st.integers(0, 1),
        st.sampled_from("abc"),
        st.integers(0, 120),
        st.integers(-50, 50),
    ),
    max_size=60,
)
windows_strategy = st.one_of(
    st.integers(1, 40).map(lambda size: tumbling(seconds=size / 1000)),
    st.tuples(st.integers(1, 40), st.integers(1, 40)).map(
        lambda p: hopping(seconds=max(p) / 1000, every=min(p) / 1000)
    ),
    st.integers(1, 40).map(lambda size: sliding(seconds=size / 1000)),
    st.integers(1, 40).map(lambda gap: session(gap=gap / 1000)),
)


@settings(max_examples=400, deadline=None)
@given(
    window=windows_strategy,
    grace=st.integers(0, 30),
    rows=rows_strategy,
    cuts=st.lists(st.integers(0, 60), max_size=8),
    emit=st.sampled_from(["final", "update"]),
    restarts=st.integers(0, 3),
    by_value=st.booleans(),
)
@example(  # a session closes, then a merged one starts where it started
    window=session(gap=0.002),
    grace=1,
    rows=[(0, "a", 50, 0), (0, "a", 53, 0), (0, "a", 51, 0), (0, "a", 50, 0)],
    cuts=[],
    emit="final",
    restarts=0,
    by_value=False,
)
def test_every_window_shape_matches_the_reference(
    window: Window,
    grace: int,
    rows: list[Row],
    cuts: list[int],
    emit: str,
    restarts: int,
    by_value: bool,
) -> None:
    # Updates of sessions are not told apart by their windows: a session can start
    # where one closed before it; the final results of sessions are checked.
    assume(not (window.kind == "session" and emit == "update"))
    cuts = [cut for cut in cuts if cut <= len(rows)]
    expected, expected_late = reference(window, grace, rows)
    got, late = run_operator(window, grace, rows, cuts, emit, restarts, by_value)
    assert ordered(got) == ordered(expected)
    assert late == expected_late
