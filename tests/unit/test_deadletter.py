"""The dead-letter header names the runtime and the ``spate dlq`` commands share."""

from __future__ import annotations

from spate import deadletter


def test_default_topic_is_the_source_with_dlq_suffix() -> None:
    assert deadletter.dead_letter_topic("orders") == "orders.dlq"


def test_header_names_are_those_of_design_section_7() -> None:
    assert deadletter.HEADERS == (
        "spate-error-type",
        "spate-error-message",
        "spate-error-traceback",
        "spate-source-topic",
        "spate-source-partition",
        "spate-source-offset",
        "spate-processor",
        "spate-attempts",
        "spate-failed-at",
    )
