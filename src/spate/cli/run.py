"""``spate run MODULE:APP``: run an App's processors until SIGINT/SIGTERM.

Flags override what the App's code and the ``SPATE_*`` environment set. With one
worker (``--workers``, else ``SPATE_WORKERS`` or the App's ``workers``, else 1) the
App runs in this process; with more, this process supervises that many worker
processes (see :mod:`spate.runtime.supervisor` and :mod:`spate.cli.worker`).
"""

from __future__ import annotations

import traceback
from typing import Annotated

import typer

from spate.app import App
from spate.cli.common import fail
from spate.cli.loader import load_app
from spate.cli.worker import worker_commands
from spate.errors import SpateError
from spate.runtime.lifecycle import configure_logging
from spate.runtime.supervisor import run_workers


def run_command(
    target: Annotated[str, typer.Argument(help="The App to run, as MODULE:ATTRIBUTE (shop:app).")],
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker",
            "-b",
            envvar="SPATE_BROKER",
            show_envvar=True,
            help="Broker URL; default: the App's, else local://.spate.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            envvar="SPATE_WORKERS",
            show_envvar=True,
            help="Worker processes in the group; default: the App's workers, else 1.",
        ),
    ] = None,
    guarantee: Annotated[
        str | None,
        typer.Option("--guarantee", "-g", help="at-least-once or exactly-once."),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            envvar="SPATE_LOG_FORMAT",
            show_envvar=True,
            help="text (time level logger event=... key=value) or json (one object a line).",
        ),
    ] = None,
    instance_id: Annotated[
        str | None,
        typer.Option(
            "--instance-id",
            envvar="SPATE_INSTANCE_ID",
            show_envvar=True,
            help="Stable name of this process across restarts (Kafka: transactional and "
            "static member id); with --workers N each worker is NAME-i.",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            envvar="SPATE_METRICS_PORT",
            show_envvar=True,
            help="Serve /metrics, /healthz, /readyz and /status on this port (off unless "
            "given); with --workers N worker i listens on PORT+i.",
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(
            "--metrics-host",
            envvar="SPATE_METRICS_HOST",
            show_envvar=True,
            help="Address the metrics server binds; default 127.0.0.1.",
        ),
    ] = None,
    show_traceback: Annotated[
        bool,
        typer.Option(
            "--traceback",
            help="On an error, print the whole traceback (and its causes) before the "
            "one-line message.",
        ),
    ] = False,
) -> None:
    """Run an App: every processor, until Ctrl-C/SIGTERM, then drain and exit 0."""
    overrides = {
        "broker": broker,
        "processing_guarantee": guarantee,
        "log_level": log_level.upper() if log_level else None,
        "log_format": log_format.lower() if log_format else None,
        "instance_id": instance_id,
        "metrics_host": metrics_host,
    }
    app: App | None = None
    try:
        app = load_app(target)
        app.configure(**overrides, workers=workers, metrics_port=metrics_port)
        if app.settings.workers == 1:
            app.run()
            return
        configure_logging(app.settings.log_level, app.settings.log_format)
        passed_on = {k: v for k, v in overrides.items() if v is not None}
        commands = worker_commands(target, passed_on, app.settings)
    except SpateError as exc:
        if show_traceback:
            traceback.print_exception(exc)
        fail(exc, app.settings.log_format if app is not None else overrides["log_format"] or "text")
    code = run_workers(target, commands)
    if code:
        raise typer.Exit(code)
