"""``on_error="dead_letter"``: failed records go to a dead-letter topic (DESIGN §7).

The policy keeps a batch's dead letters in an :class:`~spate.runtime.outbox.Outbox`
whose pre-commit hook (:mod:`spate.runtime.checkpoint`) sends them through the
batch's producer before the offsets are committed: under exactly-once inside the
batch's transaction (a batch that aborts drops its dead letters with its outputs),
under at-least-once acknowledged before the offsets. A dead letter is the failed
record's key and value bytes with the headers of :mod:`spate.deadletter` saying why;
then processing moves on. A record that came through retry topics names its first
source and counts every attempt made on the way (:func:`spate.runtime.retrytopics.origin`).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import spate.deadletter as deadletter
from spate.clock import Clock
from spate.errors import ConfigError
from spate.record import Headers, Record
from spate.runtime.errors import OnError
from spate.runtime.outbox import Outbox
from spate.runtime.retrytopics import origin
from spate.runtime.stats import ProcessorStats


def _text(value: str) -> bytes:
    return value.encode("utf-8", "replace")


def dead_letter_headers(
    record: Record, exc: BaseException, processor: str, attempts: int, failed_at_ms: int
) -> Headers:
    """The DESIGN §7 headers of ``record``'s dead letter, every value a UTF-8 string;
    a record from a retry topic is named by where it first came from."""
    failed_at = datetime.fromtimestamp(failed_at_ms / 1000, UTC)
    topic, partition, offset, attempts_before = origin(record)
    return (
        (deadletter.HEADER_ERROR_TYPE, _text(type(exc).__qualname__)),
        (deadletter.HEADER_ERROR_MESSAGE, _text(str(exc))),
        (deadletter.HEADER_ERROR_TRACEBACK, _text("".join(traceback.format_exception(exc)))),
        (deadletter.HEADER_SOURCE_TOPIC, _text(topic)),
        (deadletter.HEADER_SOURCE_PARTITION, _text(str(partition))),
        (deadletter.HEADER_SOURCE_OFFSET, _text(str(offset))),
        (deadletter.HEADER_PROCESSOR, _text(processor)),
        (deadletter.HEADER_ATTEMPTS, _text(str(attempts_before + attempts))),
        (deadletter.HEADER_FAILED_AT, _text(failed_at.isoformat(timespec="milliseconds"))),
    )


class DeadLetterPolicy:
    """Every failed record becomes a dead letter; nothing stops the processor.

    ``topics`` maps each source topic to its dead-letter topic; ``attempts`` says how
    many calls the record that just failed had (see ``Retrier.take_attempts``); bytes
    that did not decode were never retried (one attempt). The dead letters go out
    through :attr:`outbox`, whose ``write`` is the worker's pre-commit hook.
    """

    def __init__(
        self,
        processor: str,
        topics: Mapping[str, str],
        stats: ProcessorStats,
        clock: Clock,
        attempts: Callable[[], int] = lambda: 1,
    ) -> None:
        self.processor = processor
        self.topics = dict(topics)
        self.stats = stats
        self.clock = clock
        self.attempts = attempts
        self.failed = 0
        self.outbox = Outbox(processor, "dead_letters", logging.WARNING, self._written)

    def _add(self, record: Record, exc: Exception, attempts: int) -> None:
        self.failed += 1
        headers = dead_letter_headers(record, exc, self.processor, attempts, self.clock.time_ms())
        self.outbox.add(self.topics[record.topic], record, headers)

    def record_failed(self, record: Record, exc: Exception) -> None:
        self._add(record, exc, self.attempts())

    def decode_failed(self, record: Record, exc: Exception) -> None:
        self._add(record, exc, 1)

    def discard(self) -> None:
        self.outbox.discard()

    def _written(self, count: int) -> None:
        self.stats.dead_letters += count


def resolve_on_error(
    processor: str,
    sources: Sequence[str],
    on_error: OnError | None,
    dead_letter: bool | str | None,
) -> tuple[OnError, dict[str, str]]:
    """A processor's ``on_error`` and dead-letter topic per source topic, from what the
    user wrote: ``dead_letter=`` implies ``on_error="dead_letter"`` and the reverse
    (with the default ``<source>.dlq`` topics); without either, ``"stop"``."""
    if dead_letter is None or dead_letter is False:
        if on_error != "dead_letter":
            return on_error or "stop", {}
        dead_letter = True
    elif on_error not in (None, "dead_letter"):
        raise ConfigError(
            f"processor {processor!r}: on_error={on_error!r} contradicts dead_letter="
            f"{dead_letter!r} (failed records go to the dead-letter topic); drop one of them"
        )
    if dead_letter is True:
        return "dead_letter", {s: deadletter.dead_letter_topic(s) for s in sources}
    if not isinstance(dead_letter, str) or not dead_letter:
        raise ConfigError(
            f"processor {processor!r}: dead_letter={dead_letter!r} must be True (the topic "
            "'<source>.dlq') or a topic name"
        )
    if dead_letter in sources:
        raise ConfigError(
            f"processor {processor!r}: dead_letter={dead_letter!r} is one of its own source "
            "topics, which would feed failures back in; name another topic"
        )
    return "dead_letter", dict.fromkeys(sources, dead_letter)
