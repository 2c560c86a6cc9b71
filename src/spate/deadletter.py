"""The dead-letter record's format, shared by the runtime that writes dead letters and
the ``spate dlq`` commands that read them (DESIGN §7).

A dead letter keeps the failed record's key and value bytes unchanged and says why in
headers whose values are strings: partition, offset and attempts in decimal, the time
of failure in ISO-8601 UTC. The names live here once so writer and readers agree.
"""

from __future__ import annotations

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
"""Every header a dead letter carries, in this order."""


def dead_letter_topic(source: str) -> str:
    """The default dead-letter topic of records read from ``source``."""
    return f"{source}.dlq"
