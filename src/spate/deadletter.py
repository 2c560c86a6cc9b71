"""Dead letters (DESIGN §7): the topic they go to, the headers that say why, and a
typed view of one read back.

The runtime writes them and ``spate dlq`` reads them; both take the names from here so
the two can never drift apart. Header values are UTF-8 strings on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from spate.errors import ConfigError
from spate.record import Record

# --- names: the topic and the headers ------------------------------------------------

HEADER_ERROR_TYPE = "spate-error-type"
HEADER_ERROR_MESSAGE = "spate-error-message"
HEADER_ERROR_TRACEBACK = "spate-error-traceback"
HEADER_SOURCE_TOPIC = "spate-source-topic"
HEADER_SOURCE_PARTITION = "spate-source-partition"
HEADER_SOURCE_OFFSET = "spate-source-offset"
HEADER_PROCESSOR = "spate-processor"
HEADER_ATTEMPTS = "spate-attempts"
HEADER_FAILED_AT = "spate-failed-at"

HEADERS = (
    HEADER_ERROR_TYPE,
    HEADER_ERROR_MESSAGE,
    HEADER_ERROR_TRACEBACK,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
    HEADER_PROCESSOR,
    HEADER_ATTEMPTS,
    HEADER_FAILED_AT,
)
"""Every header a dead letter carries, in the order the runtime writes them."""


def dead_letter_topic(source: str) -> str:
    """The dead-letter topic of ``source`` when ``dead_letter=True`` names none."""
    return f"{source}.dlq"


# --- reading one back ------------------------------------------------------------------

REQUIRED_HEADERS = (
    HEADER_ERROR_TYPE,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
    HEADER_FAILED_AT,
)
"""Without these a record cannot be listed or replayed; the others may be missing
(an empty message, no traceback) and read as empty."""

ERROR_HEADERS = frozenset(HEADERS)
"""The headers a dead letter adds: a replay drops them and keeps every other one."""


def parse_timestamp(text: str, what: str) -> datetime:
    """An ISO-8601 time as an aware UTC datetime (``Z`` accepted; a time without a zone
    is taken as UTC); ConfigError naming ``what`` if it is not one."""
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{what} {text!r} is not an ISO-8601 time such as 2026-12-04T16:30:00Z"
        ) from None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


@dataclass(frozen=True, kw_only=True, slots=True)
class DeadLetter:
    """A dead-letter record with its headers decoded: why it failed and where from."""

    record: Record
    error_type: str
    error_message: str
    traceback: str
    source_topic: str
    source_partition: int
    source_offset: int
    processor: str
    attempts: int | None
    failed_at: datetime

    @classmethod
    def from_record(cls, record: Record) -> DeadLetter:
        """Decode ``record``'s headers; ConfigError naming the record and the header
        when one is missing or malformed (it is then no dead letter spate wrote)."""
        where = f"record {record.topic}[{record.partition}]@{record.offset}"
        texts = {
            name: value.decode("utf-8", errors="replace")
            for name, value in record.headers
            if name in ERROR_HEADERS
        }
        missing = [name for name in REQUIRED_HEADERS if name not in texts]
        if missing:
            raise ConfigError(
                f"{where} is not a dead letter: it lacks header(s) {', '.join(missing)}; "
                "dead letters are written by processors with dead_letter=True"
            )

        def number(name: str) -> int:
            try:
                return int(texts[name])
            except ValueError:
                raise ConfigError(
                    f"{where} has header {name}={texts[name]!r}; it must be a decimal number"
                ) from None

        return cls(
            record=record,
            error_type=texts[HEADER_ERROR_TYPE],
            error_message=texts.get(HEADER_ERROR_MESSAGE, ""),
            traceback=texts.get(HEADER_ERROR_TRACEBACK, ""),
            source_topic=texts[HEADER_SOURCE_TOPIC],
            source_partition=number(HEADER_SOURCE_PARTITION),
            source_offset=number(HEADER_SOURCE_OFFSET),
            processor=texts.get(HEADER_PROCESSOR, ""),
            attempts=number(HEADER_ATTEMPTS) if HEADER_ATTEMPTS in texts else None,
            failed_at=parse_timestamp(
                texts[HEADER_FAILED_AT], f"{where} header {HEADER_FAILED_AT}"
            ),
        )
