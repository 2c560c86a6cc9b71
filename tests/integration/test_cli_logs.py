"""``spate run``'s log lines for machines: ``--log-format json`` and the stall watchdog.

The real command on the embedded broker, its stderr read as it is: every line of a
JSON run must parse, and a handler that blocks must make the watchdog's line appear.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import orjson

from cli_helpers import SPATE, spate
from worker_processes import create_topics, positions, produce, wait_until

SHOP = """
import time
from pathlib import Path

from spate import App

app = App("shop")
orders = app.topic("orders", partitions=2)


@app.handler(orders, group="billing", output=app.topic("invoices"))
def bill(order):
    while not Path("release").exists():  # the test holds the handler here
        time.sleep(0.02)
    return order
"""


POISONED_SHOP = """
import warnings

from spate import App

app = App("shop")
orders = app.topic("orders", partitions=2)


@app.handler(orders, group="billing", output=app.topic("invoices"))
def bill(order):
    warnings.warn("orders without a currency are deprecated")
    if order["n"] == POISON:
        raise ValueError("a poisoned order")
    return order


POISON = 99
"""


def start_shop(
    tmp_path: Path, stderr: Path, *args: str, module: str = SHOP, **env: str
) -> subprocess.Popen[bytes]:
    url = f"local://{tmp_path / 'broker'}"
    asyncio.run(create_topics(url, 2, "orders"))
    asyncio.run(produce(url, "orders", 0, 20))
    (tmp_path / "shop.py").write_text(module)
    with stderr.open("wb") as sink:
        return subprocess.Popen(
            [*SPATE, "run", "shop:app", "--broker", url, *args],
            cwd=tmp_path,
            stderr=sink,
            env={**os.environ, **env},
        )


def stop(run: subprocess.Popen[bytes]) -> None:
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=30) == 0


def test_every_line_of_a_json_run_is_an_object_with_the_fields(tmp_path: Path) -> None:
    (tmp_path / "release").touch()
    stderr = tmp_path / "stderr"
    run = start_shop(tmp_path, stderr, "--log-format", "json")
    try:
        url = f"local://{tmp_path / 'broker'}"
        wait_until(
            lambda: sum(asyncio.run(positions(url, "billing", "orders")).values()) == 20,
            30,
            "the 20 orders committed",
        )
    finally:
        stop(run)
    lines = [orjson.loads(line) for line in stderr.read_text().splitlines()]
    for line in lines:
        assert {"time", "level", "logger", "event"} <= line.keys(), line
    start = next(line for line in lines if line["event"] == "app_start")
    assert start["app"] == "shop"
    assert start["processors"] == "bill"
    assert isinstance(start["pid"], int)
    assert lines[-1]["event"] == "app_stop"


def test_with_two_workers_every_line_is_json_up_to_their_last_error(tmp_path: Path) -> None:
    """The supervisor's lines, each worker's, a Python warning, and the line each worker
    ends with when a poisoned record stops it: all JSON objects."""
    stderr = tmp_path / "stderr"
    run = start_shop(
        tmp_path, stderr, "--workers", "2", "--log-format", "json", module=POISONED_SHOP
    )
    url = f"local://{tmp_path / 'broker'}"
    try:
        wait_until(
            lambda: sum(asyncio.run(positions(url, "billing", "orders")).values()) == 20,
            30,
            "the 20 orders committed",
        )
        asyncio.run(produce(url, "orders", 99, 100))  # stops whichever worker holds it
        assert run.wait(timeout=60) == 1
    finally:
        if run.poll() is None:
            stop(run)
    lines = [orjson.loads(line) for line in stderr.read_text().splitlines()]
    for line in lines:
        assert {"time", "level", "logger"} <= line.keys(), line
    events = [(line["logger"], line.get("event")) for line in lines]
    assert events[0] == ("spate.supervisor", "workers_started")
    assert events.count(("spate.supervisor", "worker_died")) == 2
    workers = {line["pid"] for line in lines if line.get("event") == "app_start"}
    assert len(workers) == 2
    warned = [line for line in lines if line["logger"] == "py.warnings"]
    assert warned
    assert "UserWarning: orders without a currency" in warned[0]["message"]
    stops = [line for line in lines if line.get("event") == "stop"]
    assert [s["duplicates"] for s in stops] == [0, 0]
    assert all(s["error"].startswith("ProcessingError: processor 'bill'") for s in stops)
    errors = [line for line in lines if line.get("event") == "error"]
    assert sorted(e["error"].split(":")[0] for e in errors) == sorted(
        f"worker {p}" for p in workers
    )
    assert all("a poisoned order" in e["error"] and e["level"] == "ERROR" for e in errors)


def test_a_json_run_that_cannot_start_says_why_in_json() -> None:
    result = spate("run", "nowhere:app", "--workers", "2", "--log-format", "json", broker=None)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    error = orjson.loads(line)
    assert (error["level"], error["event"]) == ("ERROR", "error")
    assert error["error"].startswith("app 'nowhere:app': no module 'nowhere'")


def test_the_watchdog_logs_a_blocked_partition_and_its_recovery(tmp_path: Path) -> None:
    stderr = tmp_path / "stderr"
    run = start_shop(tmp_path, stderr, SPATE_STALL_TIMEOUT_S="0.5", SPATE_LAG_INTERVAL_S="0.1")
    try:
        wait_until(lambda: "event=partition_stalled" in stderr.read_text(), 30, "a stall")
        (tmp_path / "release").touch()
        wait_until(lambda: "event=partition_resumed" in stderr.read_text(), 30, "the recovery")
    finally:
        (tmp_path / "release").touch()
        stop(run)
    stalls = [line for line in stderr.read_text().splitlines() if "partition_stalled" in line]
    assert (
        " WARNING spate.observability event=partition_stalled app=shop processor=bill "
        in (stalls[0])
    )
    assert "topic=orders" in stalls[0]
    assert len(stalls) == len({line.split(" partition=")[1].split()[0] for line in stalls})
