"""``spate run --workers N``: a parent process supervising N worker processes.

The parent starts each worker's command (the CLI says what it is: see
:mod:`spate.cli.worker`). Workers run in their own session: a terminal's Ctrl-C
reaches only the parent, which forwards one SIGTERM to each worker — a worker seeing
two signals would force-exit instead of draining.

* first SIGINT/SIGTERM to the parent: forward SIGTERM, wait for the workers to drain,
  exit 0 if every worker did (one that the SIGTERM ended while it was still starting
  had nothing to drain);
* a second one: SIGKILL the workers and exit at once;
* a worker that dies on its own is logged and not replaced: its partitions move to
  the others when its leases expire (or the broker's group protocol notices);
* a worker whose parent disappears drains and exits (:class:`ParentWatch`), so no
  orphan keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType

from spate.runtime.lifecycle import ServiceContext

log = logging.getLogger("spate.supervisor")

PARENT_CHECK_S = 0.5


def run_workers(target: str, commands: Sequence[Sequence[str]]) -> int:
    """Start a worker process per command and supervise them; the exit code.

    ``target`` names what the workers run, for the log. The signal handlers come
    first: a SIGTERM while the workers are being started must not end this process
    by itself and leave them running."""
    children: list[subprocess.Popen[bytes]] = []
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
        for command in commands:
            if signals_seen:
                break  # stopped while starting: start no more
            children.append(subprocess.Popen(command, start_new_session=True))
        log.info(
            "event=workers_started target=%s workers=%d pids=%s",
            target,
            len(children),
            ",".join(str(c.pid) for c in children),
        )
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
    # A worker the forwarded SIGTERM ended by itself was still starting (its Lifecycle
    # installs the handler that drains before any processor runs): nothing to drain.
    drained = (0, -signal.SIGTERM) if signals_seen else (0,)
    return 0 if all(code in drained for code in codes.values()) else 1


class ParentWatch:
    """A worker's side service: when its parent process is gone, stop the run (the
    processors drain and the worker exits) rather than live on as an orphan."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self._task: asyncio.Task[None] | None = None

    async def start(self, context: ServiceContext) -> None:
        self._task = asyncio.create_task(self._watch(context.stop), name="spate:parent-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if os.getppid() != self.parent:
                log.warning("event=parent_gone pid=%d", os.getpid())
                stop.set()
                return
            await asyncio.sleep(PARENT_CHECK_S)
