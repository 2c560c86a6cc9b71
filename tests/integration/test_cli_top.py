"""``spate top --once`` against a live App's ``/status``: the real command, over HTTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from cli_helpers import one_line_error, spate
from metrics_checks import DEADLINE_S, ready
from spate.app import App
from spate.runtime.lifecycle import Lifecycle
from spate.testing.nats_server import free_port


async def test_top_shows_the_processors_and_partitions_of_a_live_app(tmp_path: Path) -> None:
    port, suffix = free_port(), uuid.uuid4().hex[:8]
    app = App("shop", broker=f"local://{tmp_path / 'log'}", metrics_port=port, fetch_timeout_s=0.05)
    orders = app.topic(f"orders{suffix}", partitions=2)
    app.handler(orders, group="billing", output=app.topic(f"invoices{suffix}"))(lambda v: v)
    stop = asyncio.Event()
    run = asyncio.create_task(Lifecycle(app).run_async(stop))
    try:
        deadline = time.monotonic() + DEADLINE_S
        while await asyncio.to_thread(ready, port) is not True:
            assert time.monotonic() < deadline, "never ready"
            await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        result = await asyncio.to_thread(spate, "top", "--once", url, broker=None)
    finally:
        stop.set()
        await run
    assert result.returncode == 0, result.stderr
    out = result.stdout
    partitions = (f"orders{suffix}[0]", f"orders{suffix}[1]")
    for fragment in ("shop", "ready", "<lambda>", "billing", url, *partitions):
        assert fragment in out, out


def test_top_names_an_unreachable_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    one_line_error(spate("top", "--once", url, broker=None), 1, f"{url}/status")
