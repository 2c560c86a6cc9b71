"""What every CLI command shares: the --broker option, consoles, option parsing, errors.

The CLI is a thin shell over the public API: each command opens ``spate.connect(url)``
and uses only the broker contract, so it works the same on every adapter.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from spate.errors import ConfigError, SpateError
from spate.observability.logs import error_line

BrokerOption = Annotated[
    str,
    typer.Option(
        "--broker",
        "-b",
        envvar="SPATE_BROKER",
        show_envvar=True,
        help="Broker URL, e.g. local://.spate, memory://, kafka://localhost:9092.",
    ),
]
"""The one broker option every command takes; the default is the embedded broker."""

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILURE = 1
EXIT_USAGE = 2


def exit_code_for(exc: SpateError) -> int:
    """2 for mistakes in what was typed (bad URL, option, file); 1 for everything else."""
    return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE


def fail(exc: SpateError, log_format: str = "text") -> NoReturn:
    """Print ``exc`` as one line on stderr and exit: a user should never see a traceback
    for a mistake they can fix. A run that logs JSON (``log_format``) gets it as JSON."""
    sys.stderr.write(error_line(one_line(exc), log_format))
    sys.stderr.flush()
    raise SystemExit(exit_code_for(exc))


def one_line(exc: SpateError) -> str:
    """``exc``'s message on one line (its name if it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def parse_pairs(items: Sequence[str], option: str) -> list[tuple[str, str]]:
    """``KEY=VALUE`` strings as pairs, in order; a bad item is a ConfigError naming it."""
    pairs: list[tuple[str, str]] = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{option} {item!r} must look like KEY=VALUE")
        pairs.append((name.strip(), value))
    return pairs


def missing_topic_hint(topic: str) -> str:
    """The fix for a missing topic, the same words wherever it is needed."""
    return f"create it with: spate topics create {topic} --partitions N"
