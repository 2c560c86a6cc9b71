"""Event time and watermarks, per partition (DESIGN §8).

A record's *event time* is when the event happened: its timestamp, or what a user
extractor reads from its value (milliseconds since the epoch). Each partition keeps a
:class:`Watermark`: the largest event time seen there minus ``grace``. Anything that
ends at or before the watermark is complete — a window closes, a join buffer can be
pruned — and a record that would still change it is *late*.

Records of one partition arrive in order, but their event times need not: grace is
how long (in event time) an operator waits for stragglers. A partition that receives
nothing would hold its watermark, and every window open on it, forever; after
``idle_timeout_s`` without a record its watermark moves on with the clock instead —
each second of silence advances it a second — so its windows close.

The watermark is kept in the partition's store (:data:`WATERMARK_KEY`), written with
the state it guards, so a restarted or taken-over partition never reopens a window
that was already emitted. In memory it is cached in ``PartitionContext.state``.

:class:`EventTimeOperator` is what every event-time operator (windows, windowed
joins) shares: its batches split per partition, late records counted and dropped or
dead-lettered, and idle partitions' watermarks moved on by ``tick``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from spate.errors import ConfigError, LateRecordError
from spate.partitions import PartitionContext
from spate.record import Record, TopicPartition
from spate.state.store import Store

EventTimeFn = Callable[[Any], int | float]
"""Reads a value's event time, in milliseconds since the epoch."""
Late = Literal["drop", "dead_letter"]
"""What becomes of a late record: dropped, or sent to the dead-letter topic."""
Item = tuple[Record, bytes | None, Any]
"""A batch item: (source record, key, value)."""
Fail = Callable[[Record, Exception], None]
"""Called when a record fails: raise to stop, return to skip it."""

WATERMARK_KEY = "spate.watermark"
"""The store key of the partition's largest event time seen (a str: window and join
keys are tuples, so they never collide with it)."""

DEFAULT_IDLE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class EventTime:
    """How an operator reads event time and how long it waits for late records."""

    grace_s: float = 0.0
    """Event time a window stays open after its end, for out-of-order records."""
    extract: EventTimeFn | None = None
    """The event time of a value in ms; None: the record's timestamp."""
    idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S
    """Wall-clock seconds without a record after which a partition's watermark moves
    with the clock; None: never (an idle partition keeps its windows open)."""
    late: Late = "drop"
    """A late record is counted, then dropped or dead-lettered (``LateRecordError``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.grace_s, int | float) or self.grace_s < 0:
            raise ConfigError(f"grace={self.grace_s!r} must be seconds >= 0 (e.g. grace=5)")
        if self.extract is not None and not callable(self.extract):
            raise ConfigError(
                f"event_time={self.extract!r} must be a function of the value returning "
                "milliseconds since the epoch (or None for the record timestamp)"
            )
        timeout = self.idle_timeout_s
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            raise ConfigError(
                f"idle_timeout_s={timeout!r} must be seconds > 0, or None to never close "
                "the windows of an idle partition"
            )
        if self.late not in ("drop", "dead_letter"):
            raise ConfigError(f"late={self.late!r} must be 'drop' or 'dead_letter'")

    @property
    def grace_ms(self) -> int:
        return round(self.grace_s * 1000)


@dataclass(slots=True)
class Watermark:
    """One partition's event-time progress.

    ``top`` is the largest event time seen (None before the first record); the
    watermark is ``top - grace_ms``. Operators read and raise ``top`` in their batch
    loop (a local variable per batch, written back once), then call :meth:`seen`.
    """

    grace_ms: int
    top: int | None
    idle_timeout_s: float | None
    last_record_s: float
    """Monotonic time of the partition's last record."""
    anchor_s: float
    """Monotonic time ``top`` was last moved by a record or by idleness."""

    @property
    def value(self) -> int | None:
        """The watermark: everything ending at or before it is complete."""
        return None if self.top is None else self.top - self.grace_ms

    def seen(self, top: int | None, now_s: float) -> None:
        """A batch of this partition's records ended with ``top`` the largest event time."""
        if top is not None and (self.top is None or top > self.top):
            self.top = top
        self.last_record_s = self.anchor_s = now_s

    def idle(self, now_s: float) -> bool:
        """Move ``top`` on with the clock if the partition is idle; True if it moved."""
        timeout = self.idle_timeout_s
        if timeout is None or self.top is None or now_s - self.last_record_s < timeout:
            return False
        step_ms = int((now_s - self.anchor_s) * 1000)
        if step_ms <= 0:
            return False
        self.top += step_ms
        self.anchor_s = now_s
        return True

    def save(self, store: Store) -> None:
        """Write ``top`` into ``store``, so a restart keeps what closed closed."""
        if self.top is not None:
            store.set(WATERMARK_KEY, self.top)


def watermark(context: PartitionContext, store: Store, event_time: EventTime) -> Watermark:
    """The partition's watermark kept with ``store``: loaded from the store on the first
    use after assignment, cached in the context for the rest of the ownership."""
    cache_key = f"spate.watermark:{store.name}"
    found: Watermark | None = context.state.get(cache_key)
    if found is None:
        now_s = context.clock.monotonic()
        found = Watermark(
            event_time.grace_ms, store.get(WATERMARK_KEY), event_time.idle_timeout_s, now_s, now_s
        )
        context.state[cache_key] = found
    return found


class Timed(Protocol):
    """An operator's bookkeeping of one partition: at least its watermark and store."""

    watermark: Watermark
    store: Store


P = TypeVar("P", bound=Timed)


class EventTimeOperator(ABC, Generic[P]):
    """An operator over event time, as a stage sees it: ``run(batch)``, ``tick(now_s)``
    and ``late`` (how many late records so far; the worker copies it into the
    processor's stats).

    ``run`` hands each partition's run of the batch to :meth:`_run_partition`, which
    adds the records, raises the watermark, calls :meth:`_close` and reports what was
    late to :meth:`_late`. ``tick`` moves idle partitions' watermarks on with the clock
    and closes what that passed. :meth:`_partition` keeps a partition's bookkeeping
    (``P``: its watermark, its store and what the operator caches), rebuilt from the
    store on first use after an assignment.
    """

    def __init__(
        self,
        timing: EventTime,
        store_name: str,
        partitions: Mapping[TopicPartition, PartitionContext],
        fail: Fail,
        closed: str,
    ) -> None:
        self.timing = timing
        self.store_name = store_name
        self.partitions = partitions
        self.fail = fail
        self.late = 0
        """Late records so far."""
        self.user_code = True
        """It calls the user's functions (see ``Stage.user_code``); an operator that
        calls none of them says so."""
        self._late_message = (
            f"record for {closed} (grace {timing.grace_ms} ms): its event time is behind "
            "the watermark"
        )

    def run(self, batch: list[Item]) -> list[Item]:
        out: list[Item] = []
        start = 0
        n = len(batch)
        while start < n:
            first = batch[start][0]
            topic, number = first.topic, first.partition
            end = start + 1
            while end < n and batch[end][0].partition == number and batch[end][0].topic == topic:
                end += 1
            self._run_partition(TopicPartition(topic, number), batch[start:end], out)
            start = end
        return out

    def tick(self, now_s: float) -> list[Item]:
        """Idle partitions' watermarks move with the clock: emit what that closed."""
        out: list[Item] = []
        for tp, context in self.partitions.items():
            part = self._partition(context)
            if part.watermark.idle(now_s):
                part.watermark.save(part.store)
                self._close(tp, part, out)
        return out

    def _late(self, records: list[Record]) -> None:
        """Count late records; dead-letter them with ``late="dead_letter"``."""
        self.late += len(records)
        if self.timing.late == "dead_letter":
            for record in records:
                self.fail(record, LateRecordError(self._late_message))

    @abstractmethod
    def _run_partition(self, tp: TopicPartition, items: list[Item], out: list[Item]) -> None:
        """Add one partition's records of a batch (in order); append what they emit."""

    @abstractmethod
    def _close(self, tp: TopicPartition, part: P, out: list[Item]) -> None:
        """Emit and forget what the partition's watermark has passed."""

    @abstractmethod
    def _partition(self, context: PartitionContext) -> P:
        """The partition's bookkeeping, rebuilt from its store on first use."""


def seconds_to_ms(field: str, seconds: float) -> int:
    """A positive duration given in seconds, in ms; a clear error naming ``field`` if not."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ConfigError(f"{field}={seconds!r} must be a number of seconds > 0")
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ConfigError(f"{field}={seconds!r} is under a millisecond; use at least 0.001")
    return ms
