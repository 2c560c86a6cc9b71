"""``spate run --workers N``: N worker processes forming one group per processor.

The parent starts each worker as a fresh interpreter running this module's hidden
entry point (``python -m spate.runtime.supervisor MODULE:APP SETTINGS_JSON``), so a
worker never inherits the parent's state. Workers run in their own session: a
terminal's Ctrl-C reaches only the parent, which forwards one SIGTERM to each worker
— a worker seeing two signals would force-exit instead of draining.

* first SIGINT/SIGTERM to the parent: forward SIGTERM, wait for the workers to drain,
  exit 0 if every worker did;
* a second one: SIGKILL the workers and exit at once;
* a worker that dies on its own is logged and not replaced: its partitions move to
  the others when its leases expire (or the broker's group protocol notices);
* a worker whose parent disappears drains and exits, so no orphan keeps running.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import orjson

from spate.errors import ConfigError, SpateError

if TYPE_CHECKING:
    from spate.app import App

log = logging.getLogger("spate.supervisor")

PARENT_CHECK_S = 0.5


def load_app(target: str) -> App:
    """The App named by ``MODULE:ATTRIBUTE`` (``shop:app``; a ``.py`` path also works)."""
    from spate.app import App

    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"app {target!r} must look like MODULE:APP, e.g. shop:app")
    if module_name.endswith(".py"):
        path = Path(module_name)
        sys.path.insert(0, str(path.parent.resolve()))
        module_name = path.stem
    elif "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except SpateError:
        raise  # the module's own App(...) said what is wrong, in one line already
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == module_name:
            raise ConfigError(
                f"app {target!r}: no module {module_name!r} (run from the folder that holds it)"
            ) from exc
        reason = exc.msg if isinstance(exc, SyntaxError) else exc
        raise ConfigError(
            f"cannot import {module_name!r} ({type(exc).__name__}: {reason}) at "
            f"{_failed_at(exc)}; spate run --traceback shows the whole traceback"
        ) from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise ConfigError(
            f"app {target!r}: {module_name}.{attribute} is {type(app).__name__}, not a spate App"
        )
    return app


def _failed_at(exc: Exception) -> str:
    """``file:line`` of the innermost frame of user code (or of the library it called)
    that raised: importlib's and spate's own frames say nothing to the user."""
    if isinstance(exc, SyntaxError):  # raised before any frame of the file ran
        return f"{_shown(exc.filename or '?')}:{exc.lineno}"
    internal = {__file__, importlib.__file__}
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<") and frame.filename not in internal
    ]
    if not frames:
        return "?"
    return f"{_shown(frames[-1].filename)}:{frames[-1].lineno}"


def _shown(filename: str) -> str:
    """A path below the current directory relative to it, others as they are."""
    relative = os.path.relpath(filename)
    return filename if relative.startswith("..") else relative


def run_workers(target: str, overrides: dict[str, Any], workers: int) -> int:
    """Start ``workers`` processes running ``target`` and supervise them; the exit code.

    With an ``instance_id`` (flag, App or ``SPATE_INSTANCE_ID``) worker *i* is
    ``<instance_id>-<i>``: stable across restarts of this command, unique among its
    workers."""
    app = load_app(target)  # fail here, once, on a bad target rather than in every worker
    app.configure(**overrides)
    base = app.settings.instance_id

    def command(index: int) -> list[str]:
        settings = {**overrides, "workers": 1}
        if base is not None:
            settings["instance_id"] = f"{base}-{index}"
        args = [sys.executable, "-m", "spate.runtime.supervisor", target]
        return [*args, orjson.dumps(settings).decode()]

    children = [subprocess.Popen(command(i), start_new_session=True) for i in range(workers)]
    log.info(
        "event=workers_started target=%s workers=%d pids=%s",
        target,
        workers,
        ",".join(str(c.pid) for c in children),
    )
    signals_seen = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        forward = signal.SIGTERM if signals_seen == 1 else signal.SIGKILL
        log.info(
            "event=%s signal=%s",
            "draining" if signals_seen == 1 else "forced_exit",
            signal.Signals(signum).name,
        )
        for child in children:
            if child.poll() is None:
                child.send_signal(forward)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes: dict[int, int] = {}
        while len(codes) < len(children):
            for child in children:
                if child.pid in codes:
                    continue
                code = child.poll()
                if code is not None:
                    codes[child.pid] = code
                    if code != 0 and signals_seen == 0:
                        log.warning("event=worker_died pid=%d exit_code=%d", child.pid, code)
            time.sleep(0.05)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if signals_seen > 1:
        return 128 + signal.SIGKILL
    return 0 if all(code == 0 for code in codes.values()) else 1


async def _watch_parent(stop: asyncio.Event, parent: int) -> None:
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("event=parent_gone pid=%d", os.getpid())
            stop.set()
            return
        await asyncio.sleep(PARENT_CHECK_S)


async def _worker_main(app: App, parent: int) -> None:
    from spate.app import install_stop_signals

    stop = asyncio.Event()
    install_stop_signals(stop)
    watcher = asyncio.create_task(_watch_parent(stop, parent))
    try:
        await app.run_async(stop)
    finally:
        watcher.cancel()


def worker_entry(argv: list[str]) -> int:
    """The hidden worker command: run one App in this process until signalled."""
    from spate.app import configure_logging

    parent = os.getppid()
    target, settings_json = argv
    try:
        app = load_app(target)
        app.configure(**orjson.loads(settings_json))
        configure_logging(app.settings.log_level)
        asyncio.run(_worker_main(app, parent))
    except SpateError as exc:
        sys.stderr.write(f"error: worker {os.getpid()}: {' '.join(str(exc).split())}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(worker_entry(sys.argv[1:]))
