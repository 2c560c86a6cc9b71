"""What a processor does when a record fails (DESIGN §7).

A processor has one :class:`ErrorPolicy`. The compiled pipeline calls
:meth:`ErrorPolicy.record_failed` for a record whose user code raised, and the worker
calls :meth:`ErrorPolicy.decode_failed` for bytes its topic's serde cannot decode.
A policy either raises (the processor stops with that error) or returns (the record
is dropped and processing moves on). Policies count every failed record, the one that
stops the processor included, so a stopped processor never reports ``errors=0``; the
worker copies the count into the processor's stats once per batch (or once when it
stops).

Retries wrap the user functions before compiling (:mod:`spate.runtime.retrying`), so
a policy sees a record only once its attempts are over; the dead-letter policy
(:mod:`spate.runtime.deadletters`) returns after keeping the record for the batch's
pre-commit hook, so the dead letter commits with the batch.
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol

from spate.errors import ConfigError, DeserializationError, ProcessingError
from spate.record import Record

OnError = Literal["stop", "skip", "dead_letter"]

log = logging.getLogger("spate.runtime")


class ErrorPolicy(Protocol):
    """Decides, per failed record, between stopping the processor and moving on."""

    @property
    def failed(self) -> int:
        """Records that failed so far: dropped, or the one that stopped the processor."""
        ...

    def record_failed(self, record: Record, exc: Exception) -> None:
        """User code raised for ``record``: raise to stop, return to drop the record."""
        ...

    def decode_failed(self, record: Record, exc: Exception) -> None:
        """``record``'s bytes did not decode: raise to stop, return to drop the record."""
        ...

    def discard(self) -> None:
        """The batch will not be committed: forget what was kept for its end."""
        ...


def _location(record: Record) -> str:
    return f"topic={record.topic!r} partition={record.partition} offset={record.offset}"


class StopPolicy:
    """``on_error="stop"``: the first failure stops the processor, naming the record.

    The failed batch is not committed, so the record is read again after a fix.
    """

    def __init__(self, processor: str) -> None:
        self.processor = processor
        self.failed = 0

    def discard(self) -> None:
        return None

    def record_failed(self, record: Record, exc: Exception) -> None:
        self.failed += 1
        raise ProcessingError(
            f"processor {self.processor!r} stopped: {type(exc).__name__}: {exc} "
            f"(record at {_location(record)}; use dead_letter=True to set failing records aside, "
            "or on_error='skip' to drop them)"
        ) from exc

    def decode_failed(self, record: Record, exc: Exception) -> None:
        self.failed += 1
        raise DeserializationError(
            str(exc), topic=record.topic, partition=record.partition, offset=record.offset
        ) from exc


class SkipPolicy(StopPolicy):
    """``on_error="skip"``: log the failure, count it and move on.

    Bytes that do not decode still stop the processor: skipping them silently would
    hide a producer bug (the dead-letter topic will take them instead).
    """

    def record_failed(self, record: Record, exc: Exception) -> None:
        self.failed += 1
        log.warning(
            "event=record_skipped processor=%s %s error=%s: %s",
            self.processor,
            _location(record),
            type(exc).__name__,
            exc,
        )


def error_policy(on_error: str, processor: str) -> ErrorPolicy:
    """The policy for an ``on_error`` setting."""
    if on_error == "stop":
        return StopPolicy(processor)
    if on_error == "skip":
        return SkipPolicy(processor)
    if on_error == "dead_letter":
        raise ConfigError(
            f"processor {processor!r}: on_error='dead_letter' needs a dead-letter topic; "
            "pass dead_letter=True (or a topic name) instead"
        )
    raise ConfigError(
        f"processor {processor!r}: on_error={on_error!r} is not valid; use 'stop', 'skip' "
        "or 'dead_letter'"
    )
