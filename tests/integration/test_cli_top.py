"""``spate top --once`` against a live App's ``/status``: the real command, over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from cli_helpers import SHOP, SPATE, one_line_error, spate
from metrics_checks import DEADLINE_S, get, ready
from spate.app import App
from spate.runtime.lifecycle import Lifecycle
from spate.testing.nats_server import free_port
from worker_processes import wait_until


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


def answers(port: int) -> bool:
    try:
        get(port, "/healthz")
    except OSError:  # refused, or reset by a worker dying mid-answer
        return False
    return True


def test_top_shows_a_killed_worker_as_unreachable_and_the_other_as_before(tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text(SHOP)
    port, stderr = free_port(), tmp_path / "stderr"
    command = [*SPATE, "run", "shop:app", "--workers", "2", "--metrics-port", str(port)]
    with stderr.open("wb") as sink:
        run = subprocess.Popen(
            [*command, "--broker", f"local://{tmp_path / 'broker'}"], cwd=tmp_path, stderr=sink
        )
    try:
        wait_until(lambda: (ready(port), ready(port + 1)) == (True, True), 30, "both ready")
        started = next(line for line in stderr.read_text().splitlines() if "pids=" in line)
        second = int(started.split("pids=")[1].split(",")[1])  # worker 1 listens on port + 1
        os.kill(second, signal.SIGKILL)
        wait_until(lambda: not answers(port + 1), 30, "worker 1 gone")
        urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
        result = spate("top", "--once", *urls, broker=None)
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in result.stdout.splitlines()]
    assert [urls[1], "?", "unreachable", "-", "-"] in cells
    assert [urls[0], "shop", "ready"] in [row[:3] for row in cells]
    assert ["bill", "billing", "1/2"] in [row[:3] for row in cells]  # one of two runs it
    assert "orders[" in result.stdout


def test_top_names_an_unreachable_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    one_line_error(spate("top", "--once", url, broker=None), 1, f"{url}/status")
