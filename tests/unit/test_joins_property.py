"""Windowed stream-stream joins against a brute-force reference, on random records.

The reference reads the definitions of :mod:`spate.streams.joins` literally, one
record at a time per partition, with no batching, no store and no index: a record's
watermark is the largest event time before it in its partition minus grace; a record
is late when its window ``[t - within, t + within]`` closed (``t + within`` below the
watermark); otherwise it meets every earlier record of the other side with its key,
at most ``within`` apart, whose own window is still open; everything left at the end
closes (a left join emits its left records that met nobody with None). The operator
under test runs the same records in random batches (partitions interleaved, each
side's records at its event time or at a timestamp an extractor ignores), with its
state in stores, restarts that keep only the stores, and a final idle tick.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import example, given, settings
from hypothesis import strategies as st

from operator_runs import run_in_batches
from spate.clock import ManualClock
from spate.partitions import PartitionContext
from spate.record import Record, TopicPartition
from spate.serde import serde_for
from spate.state.store import MemoryStore
from spate.streams.eventtime import EventTime, Item
from spate.streams.joins import LEFT, RIGHT, JoinOperator, JoinSerde, WindowJoin

Row = tuple[int, int, str, int]
"""(partition, side, key, event time ms); a record's id is its index."""


def reference(
    rows: list[Row], within: int, grace: int, left_join: bool
) -> tuple[Counter[tuple[int, int | None]], int]:
    """Every (left id, right id or None) emitted, and the late count, by the definitions."""
    pairs: Counter[tuple[int, int | None]] = Counter()
    late = 0
    for partition in {row[0] for row in rows}:
        top: int | None = None
        accepted: list[tuple[int, int, str, int]] = []  # (id, side, key, time)
        matched: set[int] = set()
        for n, (p, side, key, ts) in enumerate(rows):
            if p != partition:
                continue
            mark = None if top is None else top - grace
            if mark is not None and ts + within < mark:
                late += 1
                continue
            for m, other_side, other_key, other_ts in accepted:
                if (
                    other_side != side
                    and other_key == key
                    and abs(other_ts - ts) <= within
                    and (mark is None or other_ts + within >= mark)
                ):
                    pairs[(n, m) if side == LEFT else (m, n)] += 1
                    matched.update((n, m))
            accepted.append((n, side, key, ts))
            top = ts if top is None else max(top, ts)
        if left_join:
            for n, side, _, _ in accepted:
                if side == LEFT and n not in matched:
                    pairs[(n, None)] += 1
    return pairs, late


def run_operator(
    rows: list[Row],
    within: int,
    grace: int,
    left_join: bool,
    cuts: list[int],
    restarts: int,
    by_value: bool,
) -> tuple[Counter[tuple[int, int | None]], int]:
    """The operator on ``rows`` cut into batches at ``cuts``; after each of the first
    ``restarts`` batches the partitions are assigned anew with the same stores."""
    clock = ManualClock(start_ms=0)
    contexts = {}
    for partition in (0, 1):
        tp = TopicPartition("join", partition)
        contexts[tp] = PartitionContext(tp, clock, stores={"join": MemoryStore("join")})
    timing = EventTime(
        grace_s=grace / 1000, idle_timeout_s=1, extract=(lambda v: v["t"]) if by_value else None
    )
    spec = WindowJoin.of(
        "s", within / 1000, "left" if left_join else "inner", lambda a, b: (a, b), event_time=timing
    )
    serde = JoinSerde(serde_for(), serde_for())

    def fail(record: Record, exc: Exception) -> None:
        raise exc

    operator = JoinOperator(spec, serde, contexts, fail)
    items: list[Item] = []
    for n, (p, side, key, ts) in enumerate(rows):
        value = {"id": n, "t": ts}
        # the hop frames each value with its event time (the timestamp, or the extractor's)
        source = Record("side", 0, n, None, b"", (), 7 if by_value else ts)
        framed = spec.frame(side)(source, value)
        data = serde.encode(framed)
        record = Record("join", p, n, key.encode(), data, (), 0)
        items.append((record, key.encode(), serde.decode(data)))
    out = run_in_batches(operator, contexts, clock, items, cuts, restarts)
    pairs: Counter[tuple[int, int | None]] = Counter()
    for _, _, (left, right) in out:
        pairs[(left["id"], None if right is None else right["id"])] += 1
    return pairs, operator.late


@settings(max_examples=400, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 1),
            st.sampled_from([LEFT, RIGHT]),
            st.sampled_from("ab"),
            st.integers(0, 120),
        ),
        max_size=50,
    ),
    within=st.integers(0, 30),
    grace=st.integers(0, 30),
    left_join=st.booleans(),
    cuts=st.lists(st.integers(0, 50), max_size=8),
    restarts=st.integers(0, 3),
    by_value=st.booleans(),
)
@example(  # a partner closed by an earlier record of the same batch meets nothing more
    rows=[(0, RIGHT, "a", 86), (0, LEFT, "a", 110), (0, LEFT, "a", 95)],
    within=10,
    grace=10,
    left_join=True,
    cuts=[],
    restarts=0,
    by_value=False,
)
def test_window_joins_match_the_reference(
    rows: list[Row],
    within: int,
    grace: int,
    left_join: bool,
    cuts: list[int],
    restarts: int,
    by_value: bool,
) -> None:
    cuts = [cut for cut in cuts if cut <= len(rows)]
    expected = reference(rows, within, grace, left_join)
    assert run_operator(rows, within, grace, left_join, cuts, restarts, by_value) == expected
