"""The dead-letter parser, the time arguments of ``spate dlq`` and the replay headers:
pure functions, tested without a broker or a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spate import deadletter as dl
from spate.cli.dlq import HEADER_REPLAYED_FROM, matches, render_bytes, replay_headers
from spate.cli.when import parse_time
from spate.errors import ConfigError
from spate.record import Record

NOW = datetime(2026, 12, 4, 16, 30, tzinfo=UTC)


def letter_record(**overrides: str | None) -> Record:
    texts: dict[str, str | None] = {
        dl.HEADER_ERROR_TYPE: "builtins.ValueError",
        dl.HEADER_ERROR_MESSAGE: "bad amount",
        dl.HEADER_ERROR_TRACEBACK: "Traceback ...",
        dl.HEADER_SOURCE_TOPIC: "orders",
        dl.HEADER_SOURCE_PARTITION: "2",
        dl.HEADER_SOURCE_OFFSET: "41",
        dl.HEADER_PROCESSOR: "billing",
        dl.HEADER_ATTEMPTS: "3",
        dl.HEADER_FAILED_AT: "2026-12-04T16:30:00.123Z",
    }
    texts.update(overrides)
    headers = (("trace-id", b"abc"), *((k, v.encode()) for k, v in texts.items() if v is not None))
    return Record("orders.dlq", 0, 7, b"k", b'{"n": 1}', headers)


def test_dead_letter_topic_and_header_names() -> None:
    assert dl.dead_letter_topic("orders") == "orders.dlq"
    assert dl.HEADER_FAILED_AT == "spate-failed-at"
    assert len(dl.ERROR_HEADERS) == 9


def test_from_record_decodes_every_header() -> None:
    letter = dl.DeadLetter.from_record(letter_record())
    assert (letter.error_type, letter.error_message, letter.processor) == (
        "builtins.ValueError",
        "bad amount",
        "billing",
    )
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("orders", 2, 41)
    assert letter.attempts == 3
    assert letter.failed_at == datetime(2026, 12, 4, 16, 30, 0, 123000, tzinfo=UTC)


def test_optional_headers_may_be_missing() -> None:
    letter = dl.DeadLetter.from_record(
        letter_record(
            **{dl.HEADER_ERROR_TRACEBACK: None, dl.HEADER_ATTEMPTS: None, dl.HEADER_PROCESSOR: None}
        )
    )
    assert (letter.traceback, letter.attempts, letter.processor) == ("", None, "")


def test_a_record_without_the_headers_is_named() -> None:
    with pytest.raises(
        ConfigError, match=r"orders.dlq\[0\]@7 is not a dead letter.*spate-failed-at"
    ):
        dl.DeadLetter.from_record(letter_record(**{dl.HEADER_FAILED_AT: None}))


@pytest.mark.parametrize(
    ("header", "text"),
    [(dl.HEADER_SOURCE_OFFSET, "forty"), (dl.HEADER_FAILED_AT, "yesterday")],
)
def test_malformed_headers_are_named(header: str, text: str) -> None:
    with pytest.raises(ConfigError, match=header):
        dl.DeadLetter.from_record(letter_record(**{header: text}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("15m", NOW - timedelta(minutes=15)),
        ("1h", NOW - timedelta(hours=1)),
        ("2d", NOW - timedelta(days=2)),
        ("1w", NOW - timedelta(weeks=1)),
        ("2026-12-01T00:00:00Z", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T02:00:00+02:00", datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW, "--before") == expected


@pytest.mark.parametrize("text", ["", "soon", "1y", "-1h", "h"])
def test_parse_time_names_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match=r"--before .* neither an age"):
        parse_time(text, NOW, "--before")


def test_replay_keeps_own_headers_and_says_where_from() -> None:
    headers = replay_headers(dl.DeadLetter.from_record(letter_record()))
    assert headers == (("trace-id", b"abc"), (HEADER_REPLAYED_FROM, b"orders.dlq/0/7"))


def test_where_matches_the_full_or_short_error_type() -> None:
    letter = dl.DeadLetter.from_record(letter_record())
    assert matches(letter, None)
    assert matches(letter, "ValueError")
    assert matches(letter, "builtins.ValueError")
    assert not matches(letter, "KeyError")


def test_render_bytes_json_text_or_hex() -> None:
    assert render_bytes(b'{"a":1}') == '{\n  "a": 1\n}'
    assert render_bytes("héllo".encode()) == "héllo"
    assert render_bytes(b"\xff\x00") == "(hex) ff00"


def test_header_names_are_those_of_design_section_7_in_write_order() -> None:
    assert dl.HEADERS == (
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
    assert frozenset(dl.HEADERS) == dl.ERROR_HEADERS
