"""The worker processes of ``spate run --workers N``: their command and their entry point.

The parent (:func:`spate.runtime.supervisor.run_workers`) starts each worker as a
fresh interpreter running ``python -m spate.cli.worker MODULE:APP SETTINGS_JSON``, so
a worker never inherits the parent's state. A worker loads the App itself and runs
it like ``app.run()`` does, through a :class:`~spate.runtime.lifecycle.Lifecycle`,
with one side service more: it drains and exits when its parent disappears.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import orjson

from spate.cli.common import one_line
from spate.cli.loader import load_app
from spate.config import Settings
from spate.errors import ConfigError, SpateError
from spate.observability.logs import error_line
from spate.runtime.lifecycle import Lifecycle
from spate.runtime.supervisor import ParentWatch


def worker_commands(target: str, overrides: dict[str, Any], settings: Settings) -> list[list[str]]:
    """The command of each of ``settings.workers`` processes running ``target``.

    With an ``instance_id`` worker *i* is ``<instance_id>-<i>``: stable across restarts
    of ``spate run``, unique among its workers. With a ``metrics_port`` worker *i*
    listens on ``metrics_port + i`` (0: each on a free port of its own)."""

    last_port = (settings.metrics_port or 0) + settings.workers - 1
    if settings.metrics_port and last_port > 65535:
        raise ConfigError(
            f"metrics_port={settings.metrics_port} with workers={settings.workers}: worker "
            f"{settings.workers - 1} would listen on {last_port}, above 65535; choose a lower "
            "--metrics-port"
        )

    def command(index: int) -> list[str]:
        passed = {**overrides, "workers": 1}
        if settings.instance_id is not None:
            passed["instance_id"] = f"{settings.instance_id}-{index}"
        if settings.metrics_port is not None:
            passed["metrics_port"] = settings.metrics_port and settings.metrics_port + index
        return [sys.executable, "-m", "spate.cli.worker", target, orjson.dumps(passed).decode()]

    return [command(i) for i in range(settings.workers)]


def main(argv: list[str]) -> int:
    """Run one App in this process until signalled (or orphaned); the exit code."""
    parent = os.getppid()
    target, settings_json = argv
    settings = orjson.loads(settings_json)
    log_format: str = settings.get("log_format") or "text"
    try:
        app = load_app(target)
        app.configure(**settings)
        log_format = app.settings.log_format
        Lifecycle(app, services=[ParentWatch(parent)]).run()
    except SpateError as exc:
        sys.stderr.write(error_line(f"worker {os.getpid()}: {one_line(exc)}", log_format))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
