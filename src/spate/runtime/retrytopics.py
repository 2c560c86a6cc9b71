"""Non-blocking delayed retries: ``Retry(via_topics=[1, 10, 60])`` (issue 11).

A record still failing after its retries in place is not waited for where it is: it
moves to the next retry topic ``<source>.retry.<n>`` with a header saying when it is
due, and its partition flows on at once. Each retry topic has a processor of its own
(the same user functions, group ``<group>.retry.<n>``) that waits until a batch is due,
then runs it again; a record failing there moves on to the next level, and after the
last one goes to the processor's ``on_error`` policy (its dead-letter topic, usually).

Everything a later attempt needs travels in the record's headers, never in a worker's
memory, so a restart or another member picks it up where it was: where the record
first came from (``spate-source-topic/-partition/-offset``, the dead letter names it,
and a replay goes back there), how many calls it had so far (``spate-attempts``), the
last error, and ``spate-retry-not-before`` (epoch milliseconds). The move is written by
a pre-commit hook (:mod:`spate.runtime.outbox`), so it commits with the batch that
moved the record: under exactly-once in its transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

import spate.deadletter as deadletter
from spate.clock import Clock
from spate.record import Headers, Record
from spate.runtime.errors import ErrorPolicy
from spate.runtime.outbox import Outbox
from spate.runtime.stats import ProcessorStats

HEADER_NOT_BEFORE = "spate-retry-not-before"
"""When a record in a retry topic is due: epoch milliseconds, a decimal string."""

_CARRIED = frozenset(
    {
        HEADER_NOT_BEFORE,
        deadletter.HEADER_SOURCE_TOPIC,
        deadletter.HEADER_SOURCE_PARTITION,
        deadletter.HEADER_SOURCE_OFFSET,
        deadletter.HEADER_ATTEMPTS,
        deadletter.HEADER_ERROR_TYPE,
        deadletter.HEADER_ERROR_MESSAGE,
    }
)
"""The headers a move writes anew; the record's other headers travel unchanged."""

Route = tuple[str, float]
"""(the retry topic a failed record moves to, seconds until it is due there)."""


def retry_topic(source: str, level: int) -> str:
    """The retry topic of ``source`` for the ``level``-th delay (from 1)."""
    return f"{source}.retry.{level}"


def origin(record: Record) -> tuple[str, int, int, int]:
    """(topic, partition, offset) the record first came from, and the calls it had
    before this processor's: its own coordinates and 0 unless it came through a retry
    topic (which says so with ``spate-retry-not-before``)."""
    found = {name: value for name, value in record.headers if name in _CARRIED}
    if HEADER_NOT_BEFORE not in found:
        return record.topic, record.partition, record.offset, 0
    try:
        return (
            found[deadletter.HEADER_SOURCE_TOPIC].decode(),
            int(found[deadletter.HEADER_SOURCE_PARTITION]),
            int(found[deadletter.HEADER_SOURCE_OFFSET]),
            int(found.get(deadletter.HEADER_ATTEMPTS, b"0")),
        )
    except (KeyError, ValueError):  # not written by spate: name the record itself
        return record.topic, record.partition, record.offset, 0


def due_ms(records: Iterable[Record]) -> int:
    """The latest ``spate-retry-not-before`` of a batch (0 if none has one)."""
    latest = 0
    for record in records:
        for name, value in record.headers:
            if name == HEADER_NOT_BEFORE:
                latest = max(latest, int(value))
    return latest


class RetryTopicPolicy:
    """Moves a failed record to its route's retry topic; hands it to ``fallback``
    (the processor's ``on_error`` policy) where there is no further route.

    ``routes`` maps a source topic to where its failed records go next; ``attempts``
    says how many calls the failed record just had (``Retrier.take_attempts``).
    Undecodable bytes never retry: they go to ``fallback`` at once.
    """

    def __init__(
        self,
        processor: str,
        routes: Mapping[str, Route],
        fallback: ErrorPolicy,
        stats: ProcessorStats,
        clock: Clock,
        attempts: Callable[[], int],
    ) -> None:
        self.routes = dict(routes)
        self.fallback = fallback
        self.stats, self.clock, self.attempts = stats, clock, attempts
        self.outbox = Outbox(processor, "retry_scheduled", logging.INFO, self._moved)

    @property
    def failed(self) -> int:
        """Records that failed for good (a move to a retry topic is no failure yet)."""
        return self.fallback.failed

    def record_failed(self, record: Record, exc: Exception) -> None:
        route = self.routes.get(record.topic)
        if route is None:
            self.fallback.record_failed(record, exc)
            return
        topic, delay_s = route
        source, partition, offset, before = origin(record)
        own = tuple((name, value) for name, value in record.headers if name not in _CARRIED)
        moved: Headers = (
            *own,
            (deadletter.HEADER_SOURCE_TOPIC, source.encode()),
            (deadletter.HEADER_SOURCE_PARTITION, b"%d" % partition),
            (deadletter.HEADER_SOURCE_OFFSET, b"%d" % offset),
            (deadletter.HEADER_ATTEMPTS, b"%d" % (before + self.attempts())),
            (deadletter.HEADER_ERROR_TYPE, type(exc).__qualname__.encode()),
            (deadletter.HEADER_ERROR_MESSAGE, str(exc).encode("utf-8", "replace")),
            (HEADER_NOT_BEFORE, b"%d" % (self.clock.time_ms() + round(delay_s * 1000))),
        )
        self.outbox.add(topic, record, moved)

    def decode_failed(self, record: Record, exc: Exception) -> None:
        self.fallback.decode_failed(record, exc)

    def discard(self) -> None:
        self.outbox.discard()
        self.fallback.discard()

    def _moved(self, count: int) -> None:
        self.stats.delayed_retries += count
