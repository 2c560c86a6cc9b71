"""The ``spate`` command: one typer app, one module per command group.

This is the boundary where a :class:`~spate.errors.SpateError` becomes one line on
stderr and an exit code (2: something typed was wrong, 1: anything else) instead of
a traceback.
"""

from __future__ import annotations

import typer

from spate import __version__
from spate.cli import bench, dlq, groups, topics
from spate.cli.common import fail
from spate.cli.consume import consume
from spate.cli.demo import demo
from spate.cli.produce import produce
from spate.cli.run import run_command
from spate.cli.top import top
from spate.errors import SpateError

app = typer.Typer(
    name="spate",
    help="Real-time stream services on Kafka, NATS, Redis or an embedded broker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("demo")(demo)
app.command("run")(run_command)
app.command("produce")(produce)
app.command("consume")(consume)
app.command("top")(top)
app.add_typer(topics.app, name="topics")
app.add_typer(groups.app, name="groups")
app.add_typer(bench.app, name="bench")
app.add_typer(dlq.app, name="dlq")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Real-time stream services on Kafka, NATS, Redis or an embedded broker."""


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SpateError as exc:
        fail(exc)
