"""Log lines as text or as JSON objects (``--log-format``).

Every spate log call is written ``event=name key=%s ...`` (tests/unit/test_log_style.py
holds the code to it), so the JSON formatter can split a line into fields without
any change to the calls. It splits the *message template*, not the rendered line: a
value such as ``error=TopicNotFoundError: topic 'x' does not exist`` may hold spaces
and even ``a=b`` text, and only the template knows where it ends. In the template, a
space-separated token starting ``name=`` opens a field; any other token belongs to the
field before it (``error=%s: %s``, ``error=%s; librdkafka keeps retrying``). Each field
is rendered with the arguments its own placeholders take, in order.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_FIELD = re.compile(r"([a-z_][a-z0-9_]*)=(.*)", re.DOTALL)
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%]")
_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?")


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` (``text`` or ``json``, as Settings validated it)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def error_line(message: str, log_format: str) -> str:
    """The line a command ends with when it fails: ``error: message`` for a person to
    read, or with ``log_format="json"`` one object like the run's log lines
    (``event=error``), so that a pipeline reading every line as JSON meets none it
    cannot parse. Written without logging, which may not be configured yet."""
    if log_format != "json":
        return f"error: {message}\n"
    record = logging.LogRecord(
        "spate.cli", logging.ERROR, __file__, 0, "event=error error=%s", (message,), None
    )
    return JsonFormatter().format(record) + "\n"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, then the message's
    ``key=value`` fields (``event`` first), and ``error``/``traceback`` for an exception.

    A message not in the ``event=`` style (another library's) is kept whole as
    ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
        }
        line.update(message_fields(record))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line.setdefault("error", f"{type(exc).__name__}: {exc}")
            line["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["traceback"] = record.exc_text
        return orjson.dumps(line).decode()


def message_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of ``record``'s message: from its template and arguments when they
    match, else from the rendered line (one token per value)."""
    template, args = record.msg, record.args
    if isinstance(template, str) and template.startswith("event=") and isinstance(args, tuple):
        fields = _fields_of_template(template, args)
        if fields is not None:
            return fields
    return parse_line(record.getMessage())


def parse_line(message: str) -> dict[str, Any]:
    """Fields of an already rendered ``event=name key=value`` line; not in that style,
    the whole line as ``message``."""
    if not message.startswith("event="):
        return {"message": message}
    return _fields_of_template(message.replace("%", "%%"), ()) or {"message": message}


def _fields_of_template(template: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
    """Each field rendered with its own arguments; None if the arguments do not fit."""
    pieces: list[list[str]] = []
    for token in template.split(" "):
        match = _FIELD.fullmatch(token)
        if match:
            pieces.append([match[1], match[2]])
        elif pieces:
            pieces[-1][1] += " " + token
    fields: dict[str, Any] = {}
    used = 0
    try:
        for name, value_template in pieces:
            wanted = sum(1 for p in _PLACEHOLDER.findall(value_template) if p != "%%")
            value = value_template % tuple(args[used : used + wanted])
            used += wanted
            fields[name] = _typed(value)
    except (TypeError, ValueError, KeyError):
        return None
    return fields if used == len(args) else None


def _typed(value: str) -> str | int | float:
    """Numbers as numbers, so a log query can compare them; anything else as written."""
    if _INT.fullmatch(value):
        return int(value)
    if _FLOAT.fullmatch(value):
        return float(value)
    return value


def _iso_utc(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
