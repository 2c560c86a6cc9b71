"""Every log line spate writes is ``event=name key=value ...``, so logs can be parsed.

The check reads the source: a call ``log.<level>(message, ...)`` or
``logger.<level>(message, ...)`` (and ``.log(level, message, ...)``) whose message is
written in the code — a string or an f-string — must start with ``event=``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import spate

SRC = Path(spate.__file__).resolve().parent
LOGGERS = {"log", "logger", "logging"}
LEVELS = {"debug", "info", "warning", "warn", "error", "exception", "critical"}


def message_of(call: ast.Call) -> ast.expr | None:
    func = call.func
    if not (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in LOGGERS
    ):
        return None
    position = 1 if func.attr == "log" else 0 if func.attr in LEVELS else None
    if position is None or len(call.args) <= position:
        return None
    return call.args[position]


def breaks_the_style(message: ast.expr) -> bool:
    if isinstance(message, ast.JoinedStr):
        return True  # an f-string formats before the level check, and in no fixed form
    return (
        isinstance(message, ast.Constant)
        and isinstance(message.value, str)
        and not message.value.startswith("event=")
    )


def test_every_log_call_writes_an_event_line() -> None:
    offenders = [
        f"{path.relative_to(SRC.parent)}:{node.lineno}"
        for path in sorted(SRC.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and (message := message_of(node)) is not None
        and breaks_the_style(message)
    ]
    assert not offenders, f"log calls not in the event=name key=value form: {offenders}"
