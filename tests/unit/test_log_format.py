"""The JSON log formatter: every ``key=value`` of an ``event=`` line becomes a field.

Values come from the message template and its arguments, so a value with spaces (an
error's text) or with ``a=b`` inside it stays one field.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from spate.config import Settings, load_settings
from spate.errors import ConfigError
from spate.observability.logs import JsonFormatter, formatter, parse_line


def json_line(msg: str, *args: object, exc: BaseException | None = None) -> dict[str, Any]:
    record = logging.LogRecord(
        "spate.app",
        logging.WARNING,
        __file__,
        1,
        msg,
        args,
        (type(exc), exc, exc.__traceback__) if exc is not None else None,
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = orjson.loads(line)
    return parsed


def test_fields_are_typed_and_in_order() -> None:
    line = json_line(
        "event=app_start app=%s processors=%s pid=%d ratio=%.2f instance=%s",
        "shop",
        "a,b",
        42,
        0.5,
        "-",
    )
    assert line.pop("time").endswith("Z")
    assert line == {
        "level": "WARNING",
        "logger": "spate.app",
        "event": "app_start",
        "app": "shop",
        "processors": "a,b",
        "pid": 42,
        "ratio": 0.5,
        "instance": "-",
    }


def test_an_error_with_spaces_and_equals_signs_stays_one_field() -> None:
    line = json_line(
        "event=processor_failed processor=%s error=%s: %s",
        "copy",
        "TopicNotFoundError",
        "topic 'x' does not exist; create it with partitions=4",
    )
    assert line["processor"] == "copy"
    assert line["error"] == (
        "TopicNotFoundError: topic 'x' does not exist; create it with partitions=4"
    )
    assert "partitions" not in line


def test_words_of_the_template_after_a_value_belong_to_it() -> None:
    line = json_line(
        "event=broker_unavailable group=%s error=%s; librdkafka keeps retrying retry=%s",
        "g",
        "timed out",
        "next",
    )
    assert line["error"] == "timed out; librdkafka keeps retrying"
    assert line["retry"] == "next"


def test_an_exception_adds_error_and_traceback() -> None:
    try:
        raise ValueError("bad order 7")
    except ValueError as exc:
        line = json_line("event=handler_failed processor=%s", "copy", exc=exc)
    assert line["error"] == "ValueError: bad order 7"
    assert line["traceback"].startswith("Traceback")
    assert "bad order 7" in line["traceback"]


def test_a_line_not_in_the_event_style_is_kept_whole() -> None:
    assert json_line("Task was destroyed but it is pending! %s", "x")["message"] == (
        "Task was destroyed but it is pending! x"
    )


def test_arguments_that_do_not_fit_the_template_fall_back_to_the_rendered_line() -> None:
    assert parse_line("event=x a=1 error=Boom: 100% broken") == {
        "event": "x",
        "a": 1,
        "error": "Boom: 100% broken",
    }
    record = logging.LogRecord("spate", logging.INFO, __file__, 1, "event=x a=%(a)s", None, None)
    record.args = {"a": "1 2"}  # a mapping, as logging allows: rendered, then split
    assert orjson.loads(JsonFormatter().format(record))["a"] == "1 2"


def test_text_stays_the_plain_line() -> None:
    record = logging.LogRecord(
        "spate.app", logging.INFO, __file__, 1, "event=x a=%s", ("b c",), None
    )
    assert formatter("text").format(record).endswith(" INFO spate.app event=x a=b c")


def test_log_format_is_validated_and_read_from_the_environment() -> None:
    assert load_settings(environ={"SPATE_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(
        ConfigError, match=r"log_format='yaml' is not valid; use one of 'text', 'json'"
    ):
        Settings(log_format="yaml")  # type: ignore[arg-type]
