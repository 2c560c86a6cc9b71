"""Windows over event time: tumbling, hopping, sliding and session (DESIGN §8).

``stream.window(tumbling(seconds=60), grace=5).aggregate(n=agg.count())`` groups the
stream's items by their current key (the record key, or what ``key_by`` set) and by
window, and emits one dict per window: ``{"key", "start", "end", <aggregates>}``,
``start``/``end`` in milliseconds of event time, keyed like its records.

* **tumbling(seconds)**: back-to-back windows ``[start, start + size)``.
* **hopping(seconds, every)**: windows of ``size`` starting every ``every`` seconds;
  a record is in each window that covers it.
* **sliding(seconds)**: one window per distinct event time ``t`` of a key's records:
  the records in ``(t - size, t]`` — "the last ``size`` up to this record".
* **session(gap)**: a key's records less than ``gap`` apart; a session is
  ``[first, last + gap)`` and merges with another when a record bridges them.

A window is *closed* once the partition's watermark (:mod:`spate.streams.eventtime`)
has passed the last millisecond it covers; with ``emit="final"`` (the default) it is
emitted then, once. With ``emit="update"`` each window a batch changed is emitted at
the end of that batch. A record is **late** when nothing it would change is open any
more: every window that covers it has closed (tumbling, hopping), its own sliding
window has (its event time is below the watermark), or its session would end at or
before the watermark. A hopping record whose older windows closed still counts in its
open ones. Late records are counted (``ProcessorStats.late_records``) and dropped, or
sent to the dead-letter topic with ``late="dead_letter"`` (the shared machinery of
:class:`~spate.streams.eventtime.EventTimeOperator`).

All window state lives in the partition's store: a window's accumulators under
``(key, start)`` (sliding windows: a key's recent records under ``(key,)``), and the
watermark. What is in memory (which windows close when) is a cache rebuilt from the
store on first use after an assignment, so a restored store resumes exactly. Work is
per batch: each window a batch touches is read from the store once, changed in place
and written back with the batch's others in one bulk call; the windows that close are
read and deleted in one call each.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from spate.errors import ConfigError
from spate.partitions import PartitionContext
from spate.record import Record, TopicPartition
from spate.state.store import Store
from spate.streams.aggregations import (
    Aggregator,
    compiled,
    initial,
    merged,
    output,
    update_code,
    updater,
)
from spate.streams.eventtime import (
    EventTime,
    EventTimeOperator,
    Fail,
    Item,
    Watermark,
    seconds_to_ms,
    watermark,
)

WindowKind = Literal["tumbling", "hopping", "sliding", "session"]
Emit = Literal["final", "update"]


@dataclass(frozen=True, slots=True)
class Window:
    """A window shape, in milliseconds of event time (build one with the functions below)."""

    kind: WindowKind
    size_ms: int
    """The window's length; a session's gap."""
    advance_ms: int
    """How far apart windows start (hopping); the size for the others."""

    def __str__(self) -> str:
        return f"{self.kind}({self.size_ms} ms)"


def tumbling(*, seconds: float) -> Window:
    """Back-to-back windows of ``seconds``."""
    size = seconds_to_ms("tumbling(seconds)", seconds)
    return Window("tumbling", size, size)


def hopping(*, seconds: float, every: float) -> Window:
    """Windows of ``seconds`` starting every ``every`` seconds (overlapping when
    ``every < seconds``)."""
    size = seconds_to_ms("hopping(seconds)", seconds)
    advance = seconds_to_ms("hopping(every)", every)
    if advance > size:
        raise ConfigError(
            f"hopping(seconds={seconds}, every={every}): every must be at most seconds "
            "(windows that leave gaps drop records); use tumbling() for every == seconds"
        )
    return Window("hopping", size, advance)


def sliding(*, seconds: float) -> Window:
    """For each record, the window of the ``seconds`` up to and including it."""
    size = seconds_to_ms("sliding(seconds)", seconds)
    return Window("sliding", size, size)


def session(*, gap: float) -> Window:
    """A key's activity: records less than ``gap`` seconds apart."""
    size = seconds_to_ms("session(gap)", gap)
    return Window("session", size, size)


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowSpec:
    """Everything ``.window(...).aggregate(...)`` said, checked."""

    window: Window
    event_time: EventTime
    emit: Emit = "final"
    names: tuple[str, ...]
    aggregators: tuple[Aggregator, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.window, Window):
            raise ConfigError(
                f".window({self.window!r}) needs tumbling(...), hopping(...), sliding(...) "
                "or session(...) from spate.streams"
            )
        if self.emit not in ("final", "update"):
            raise ConfigError(f".window(emit={self.emit!r}) must be 'final' or 'update'")
        if self.window.kind == "session":
            unmergeable = [
                name
                for name, a in zip(self.names, self.aggregators, strict=True)
                if a.merge is None
            ]
            if unmergeable:
                raise ConfigError(
                    f"session windows merge, so aggregation(s) {', '.join(unmergeable)} "
                    "need a merge: agg.reducer(..., merge=fn)"
                )


@dataclass(slots=True)
class _Partition:
    """One partition's window bookkeeping: its store, its watermark, and the cache of
    which windows close when (rebuilt from the store)."""

    store: Store
    watermark: Watermark
    closing: dict[int, set[tuple[Any, int]]] = field(default_factory=dict)
    """Per close time (the watermark at which they close), the windows ``(key, n)``:
    ``n`` is the start, or a sliding window's end."""
    times: list[int] = field(default_factory=list)
    """The keys of ``closing`` as a heap."""
    sessions: dict[Any, dict[int, int]] = field(default_factory=dict)
    """Session windows: per key, each open session's start and end."""

    def opens(self, close_at: int, window: tuple[Any, int]) -> None:
        self.closing_at(close_at).add(window)

    def closing_at(self, close_at: int) -> set[tuple[Any, int]]:
        """The windows that close at ``close_at`` (a new, empty set at first)."""
        found = self.closing.get(close_at)
        if found is None:
            found = self.closing[close_at] = set()
            heapq.heappush(self.times, close_at)
        return found

    def due(self, watermark: int) -> list[tuple[Any, int]]:
        """Every window whose close time the watermark reached, by close time then key
        (the same order on every run, so replayed outputs get the same dedup ids),
        forgotten here (the caller emits and deletes them)."""
        due: list[tuple[Any, int]] = []
        times = self.times
        while times and times[0] <= watermark:
            at = heapq.heappop(times)
            windows = self.closing.pop(at, ())
            # Windows that close together differ by key (same key, same close: the same
            # window), so the key orders them.
            try:
                due.extend(sorted(windows, key=_first))
            except TypeError:  # a None key among bytes ones
                due.extend(sorted(windows, key=_window_order))
        return due


_first = operator.itemgetter(0)


@dataclass(slots=True)
class _Run:
    """One partition's share of a batch, as the functions that add records see it."""

    part: _Partition
    items: list[Item]
    times: list[int]
    """The items' event times (none for tumbling windows on record timestamps)."""
    touched: dict[Any, Any] = field(default_factory=dict)
    """Each window the records changed, its state (None: delete it), written back once."""
    late: list[Record] = field(default_factory=list)
    early: list[tuple[Any, int, list[Any]]] = field(default_factory=list)
    """Sessions closed before a record whose merged session took their start: (key,
    start, state), emitted at the batch's end before the windows it closes."""


def _window_order(window: tuple[Any, int]) -> tuple[bytes, int]:
    key, n = window
    return (b"" if key is None else key, n)


def _text(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", "replace")


class WindowOperator(EventTimeOperator[_Partition]):
    """A compiled ``.window(...).aggregate(...)``: a stage's ``run`` and ``tick``.

    ``run(batch)`` adds the batch's records to their windows and returns the items of
    the windows it closed (or, with ``emit="update"``, changed); ``tick(now_s)`` moves
    idle partitions' watermarks on and returns the windows that closed.
    """

    def __init__(
        self,
        spec: WindowSpec,
        store_name: str,
        partitions: Mapping[TopicPartition, PartitionContext],
        fail: Fail,
    ) -> None:
        super().__init__(
            spec.event_time, store_name, partitions, fail, f"a closed {spec.window} window"
        )
        self.spec = spec
        self.user_code = spec.event_time.extract is not None or any(
            a.user_code for a in spec.aggregators
        )
        self._update = updater(spec.aggregators)
        self._fresh = initial(spec.aggregators)
        self._output = output(spec.names, spec.aggregators)
        self._tumbling = _tumbling_loop(spec)
        self._grace = spec.event_time.grace_ms
        self._extract = spec.event_time.extract
        self._cache_key = f"spate.window:{store_name}"
        self._add = {
            "tumbling": self._add_tumbling,
            "hopping": self._add_fixed,
            "sliding": self._add_sliding,
            "session": self._add_session,
        }[spec.window.kind]

    # --- per batch ------------------------------------------------------------------

    def _run_partition(self, tp: TopicPartition, items: list[Item], out: list[Item]) -> None:
        context = self.partitions[tp]
        part = self._partition(context)
        items, times = self._event_times(items)
        run = _Run(part, items, times)
        touched, late = run.touched, run.late
        top = part.watermark.top
        low = self._add(run, -(2**63) if top is None else top)
        if items:
            top = low
        store = part.store
        if None in touched.values():  # session windows merged away
            store.delete_many([window for window, state in touched.items() if state is None])
            store.set_many(
                {window: state for window, state in touched.items() if state is not None}
            )
        else:
            store.set_many(touched)
        part.watermark.seen(top, context.clock.monotonic())
        part.watermark.save(store)
        for key, start, state in run.early:
            end = state[0]
            out.append((_source(tp, end), key, self._output(_text(key), start, end, state)))
        if self.spec.emit == "update":
            self._emit_updates(tp, part, touched, out)
        self._close(tp, part, out)
        if late:
            self._late(late)

    def _event_times(self, items: list[Item]) -> tuple[list[Item], list[int]]:
        """The items' event times; an extractor that raises fails its record only.
        (Tumbling windows read record timestamps themselves: W2's hot loop.)"""
        extract = self._extract
        if extract is None:
            if self.spec.window.kind == "tumbling":
                return items, []
            return items, [source.timestamp_ms for source, _, _ in items]
        try:
            return items, [int(extract(value)) for _, _, value in items]
        except Exception:
            pass  # find the failing records one by one (extractors have no side effects)
        kept: list[Item] = []
        times: list[int] = []
        for item in items:
            try:
                times.append(int(extract(item[2])))
            except Exception as exc:
                self.fail(item[0], exc)
                continue
            kept.append(item)
        return kept, times

    def _load(self, part: _Partition, window: tuple[Any, int], end: int, close_at: int) -> Any:
        stored = part.store.get(window)
        if stored is None:
            part.opens(close_at, window)
            return self._fresh(end)
        return stored

    # --- adding records, per window shape: each returns the largest event time seen --

    def _add_tumbling(self, run: _Run, low: int) -> int:
        """Tumbling windows: one per record, in the loop compiled for this operator."""
        return self._tumbling(
            run.items,
            None if self._extract is None else iter(run.times),
            run.touched,
            run.late,
            run.part.store.get,
            run.part.closing_at,
            low,
            self._grace,
            self.spec.window.size_ms,
            self._fresh,
            self.fail,
        )

    def _add_fixed(self, run: _Run, low: int) -> int:
        """Hopping windows: each record in every window that covers it and is open."""
        size, advance, grace = self.spec.window.size_ms, self.spec.window.advance_ms, self._grace
        update, fail, load = self._update, self.fail, self._load
        part, touched, late = run.part, run.touched, run.late
        for (source, key, value), ts in zip(run.items, run.times, strict=True):
            if ts > low:
                low = ts
            closed = low - grace
            start = ts - ts % advance
            if start + size <= closed:
                late.append(source)
                continue
            try:
                while start > ts - size:
                    end = start + size
                    if end <= closed:
                        break
                    window = (key, start)
                    state = touched.get(window)
                    if state is None:
                        state = touched[window] = load(part, window, end, end)
                    update(state, value, ts)
                    start -= advance
            except Exception as exc:
                fail(source, exc)
        return low

    def _add_sliding(self, run: _Run, low: int) -> int:
        """A key's recent records, and the ends of its windows still open, under ``(key,)``."""
        grace = self._grace
        part, touched, late = run.part, run.touched, run.late
        store = part.store
        for (source, key, value), ts in zip(run.items, run.times, strict=True):
            if ts < low - grace:
                late.append(source)
                continue
            if ts > low:
                low = ts
            slot = (key,)
            state = touched.get(slot)
            if state is None:
                stored = store.get(slot)
                state = touched[slot] = (
                    [[], []]
                    if stored is None
                    else [
                        list(stored[0]),
                        list(stored[1]),
                    ]
                )
            ends, entries = state
            entries.append([ts, value])
            if ts not in ends:
                ends.append(ts)
                part.opens(ts + 1, (key, ts))
        return low

    def _add_session(self, run: _Run, low: int) -> int:
        """Each record's session ``[ts, ts + gap)``, merged with the open ones it meets."""
        gap, grace = self.spec.window.size_ms, self._grace
        aggregators, update, fail = self.spec.aggregators, self._update, self.fail
        part, touched, late = run.part, run.touched, run.late
        store = part.store
        fresh, get = self._fresh, store.get
        for (source, key, value), ts in zip(run.items, run.times, strict=True):
            closed = low - grace
            if ts > low:
                low = ts
            sessions = part.sessions.setdefault(key, {})
            meets = sorted(s for s, e in sessions.items() if e > closed and ts < e and ts + gap > s)
            if not meets and ts + gap <= closed:
                late.append(source)
                continue
            try:
                state = fresh(ts + gap)
                update(state, value, ts)
            except Exception as exc:
                fail(source, exc)
                continue
            start = ts
            if len(meets) == 1 and meets[0] <= ts:
                start = meets[0]
                window = (key, start)
                found = touched.get(window)
                if found is None:
                    found = touched[window] = get(window)
                self._forget_session(part, key, start, found[0])
                found[:] = merged(aggregators, found, state)
                state = found
            elif meets:
                pieces = []
                for s in meets:
                    window = (key, s)
                    found = touched.get(window)
                    if found is None:
                        found = get(window)
                    touched[window] = None
                    self._forget_session(part, key, s, found[0])
                    pieces.append((s, found))
                pieces.append((ts, state))
                pieces.sort(key=lambda piece: piece[0])
                start = pieces[0][0]
                state = pieces[0][1]
                for _, piece in pieces[1:]:
                    state = merged(aggregators, state, piece)
            if start in sessions:
                # A session that closed before this record (not emitted yet: that is at
                # the batch's end) starts where the merged one does: emit it now.
                window = (key, start)
                done = touched.get(window) or get(window)
                self._forget_session(part, key, start, done[0])
                run.early.append((key, start, done))
            touched[(key, start)] = state
            sessions[start] = state[0]
            part.opens(state[0], (key, start))
        return low

    def _forget_session(self, part: _Partition, key: Any, start: int, end: int) -> None:
        part.sessions[key].pop(start, None)
        windows = part.closing.get(end)
        if windows is not None:
            windows.discard((key, start))

    # --- emitting -------------------------------------------------------------------

    def _fold(self, entries: list[list[Any]], start: int, end: int) -> list[Any]:
        """A sliding window's state from a key's records in ``(start, end]``."""
        state = self._fresh(end)
        update = self._update
        for ts, value in entries:
            if start < ts <= end:
                update(state, value, ts)
        return state

    def _emit_updates(
        self, tp: TopicPartition, part: _Partition, touched: dict[Any, Any], out: list[Item]
    ) -> None:
        """``emit="update"``: each window this batch changed, as it is now."""
        size = self.spec.window.size_ms
        rows: list[tuple[int, bytes | None, int, list[Any]]] = []
        for window, state in touched.items():
            if state is None:
                continue
            if self.spec.window.kind == "sliding":
                key = window[0]
                for end in state[0]:
                    rows.append((end, key, end - size, self._fold(state[1], end - size, end)))
            else:
                key, start = window
                rows.append((state[0], key, start, state))
        rows.sort(key=lambda row: (row[0], b"" if row[1] is None else row[1], row[2]))
        emit = self._output
        for end, key, start, state in rows:
            out.append((_source(tp, end), key, emit(_text(key), start, end, state)))

    def _close(self, tp: TopicPartition, part: _Partition, out: list[Item]) -> None:
        """Emit (``emit="final"``) and delete every window the watermark passed."""
        watermark_now = part.watermark.value
        if watermark_now is None:
            return
        due = part.due(watermark_now)
        if not due:
            return
        store = part.store
        final = self.spec.emit == "final"
        if self.spec.window.kind == "sliding":
            self._close_sliding(tp, part, due, out, watermark_now)
            return
        sessions = part.sessions if self.spec.window.kind == "session" else None
        emit, append = self._output, out.append
        states = store.get_many(due)
        store.delete_many(due)
        source = _source(tp, 0)
        for window, state in zip(due, states, strict=True):
            if state is None:
                continue  # merged into another session meanwhile
            key, start = window
            if sessions is not None:
                sessions.get(key, {}).pop(start, None)
            if final:
                end = state[0]
                if source.timestamp_ms != end:
                    source = _source(tp, end)
                text = None if key is None else key.decode("utf-8", "replace")
                append((source, key, emit(text, start, end, state)))

    def _close_sliding(
        self,
        tp: TopicPartition,
        part: _Partition,
        due: list[tuple[Any, int]],
        out: list[Item],
        watermark_now: int,
    ) -> None:
        size = self.spec.window.size_ms
        store = part.store
        keys: dict[Any, list[Any]] = {}
        for key, end in due:
            state = keys.get(key)
            if state is None:
                state = keys[key] = loaded_sliding(store.get((key,)))
            state[0].remove(end)
            if self.spec.emit == "final":
                window = self._fold(state[1], end - size, end)
                out.append(
                    (_source(tp, end), key, self._output(_text(key), end - size, end, window))
                )
        for key, (ends, entries) in keys.items():
            kept = [entry for entry in entries if entry[0] > watermark_now - size]
            if ends or kept:
                store.set((key,), [ends, kept])
            else:
                store.delete((key,))

    # --- state ----------------------------------------------------------------------

    def _partition(self, context: PartitionContext) -> _Partition:
        """The partition's bookkeeping, rebuilt from its store on first use."""
        found: _Partition | None = context.state.get(self._cache_key)
        if found is not None:
            return found
        store = context.store(self.store_name)
        part = _Partition(store, watermark(context, store, self.spec.event_time))
        sliding_kind = self.spec.window.kind == "sliding"
        for stored_key, value in store.items():
            if not isinstance(stored_key, tuple):
                continue  # the watermark
            if sliding_kind:
                for end in value[0]:
                    part.opens(end + 1, (stored_key[0], end))
                continue
            key, start = stored_key
            part.opens(value[0], (key, start))
            if self.spec.window.kind == "session":
                part.sessions.setdefault(key, {})[start] = value[0]
        context.state[self._cache_key] = part
        return part


_TUMBLING = """\
def tumbling(items, stamps, touched, late, get, closing_at, low, grace, size, fresh, fail):
    bucket_end = None
    bucket = None
    for source, key, value in items:
        ts = {ts}
        if ts > low:
            low = ts
        start = ts - ts % size
        end = start + size
        if end <= low - grace:
            late.append(source)
            continue
        window = (key, start)
        state = touched.get(window)
        if state is None:
            if end != bucket_end:
                bucket_end = end
                bucket = closing_at(end)
            if window in bucket:
                state = get(window)
            else:
                state = {fresh}
                bucket.add(window)
            touched[window] = state
        try:
{update}
        except Exception as exc:
            fail(source, exc)
    return low
"""


def _tumbling_loop(spec: WindowSpec) -> Callable[..., int]:
    """The tumbling window's batch loop with the aggregators' statements inlined (W2's
    hot path: no call per record but what the user's functions cost). The index of open
    windows is complete, so a window that is not in it is not in the store either.

    ``tumbling(items, stamps, touched, late, get, closing_at, low, grace, size, fresh,
    fail)`` returns the largest event time seen (``low`` is the one before)."""
    lines, namespace = update_code(spec.aggregators)
    fresh = "fresh(end)"
    if not any(a.mutable for a in spec.aggregators):
        namespace["template"] = [a.initializer() for a in spec.aggregators]
        fresh = "[end, *template]"
    source = _TUMBLING.format(
        ts="source.timestamp_ms" if spec.event_time.extract is None else "next(stamps)",
        fresh=fresh,
        update="".join(f"            {line}\n" for line in lines).rstrip("\n"),
    )
    loop: Callable[..., int] = compiled("tumbling", source, namespace)
    return loop


def loaded_sliding(stored: Any) -> list[Any]:
    """A sliding key's (ends, records) from the store, safe to change."""
    return [list(stored[0]), list(stored[1])]


def _source(tp: TopicPartition, end: int) -> Record:
    """The record a window's output is attributed to: its partition, and as offset the
    window's end negated — the same for every window closing at that end, so outputs
    of one close share it and replays of it get the same ids (effectively-once)."""
    return Record(tp.topic, tp.partition, -end, None, b"", (), end)
