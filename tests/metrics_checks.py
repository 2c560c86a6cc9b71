"""One check of the metrics server during a real run, shared by every broker's tests.

An App copies N records from a two-partition topic while the test scrapes its
``/metrics``, ``/healthz`` and ``/readyz`` over HTTP (urllib, in a thread: the server
lives on the run's event loop). A probe service, started after the metrics server
and before the first processor, asks ``/readyz`` at the one moment it must say no.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import spate
from spate.app import App
from spate.runtime.lifecycle import Lifecycle, ServiceContext
from spate.testing.nats_server import free_port

RECORDS = 60
DEADLINE_S = 60.0
SAMPLE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", re.MULTILINE)
DESIGN_NAMES = (
    "spate_records_consumed_total",
    "spate_records_produced_total",
    "spate_processing_errors_total",
    "spate_dead_letters_total",
    "spate_retries_total",
    "spate_batch_duration_seconds",
    "spate_batch_size_records",
    "spate_consumer_lag_records",
    "spate_assigned_partitions",
    "spate_rebalances_total",
    "spate_commit_duration_seconds",
    "spate_end_to_end_latency_seconds",
    "spate_state_restore_records_total",
)
"""The metrics DESIGN §9 names (a histogram by its bare name)."""


def get(port: int, path: str) -> tuple[int, str]:
    """Status and body of ``GET path`` (an HTTP error status is an answer too)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def ready(port: int) -> bool | None:
    """Whether /readyz says ready; None while nothing listens yet."""
    try:
        return get(port, "/readyz") == (200, "ready\n")
    except urllib.error.URLError:
        return None


def metric_values(text: str, name: str) -> list[float]:
    """Values of every series of ``name`` in a Prometheus text body."""
    return [float(value) for metric, _, value in SAMPLE.findall(text) if metric == name]


def exported_names(text: str) -> set[str]:
    """The metric names with a sample in a Prometheus text body, a histogram by its bare
    name (from its ``_count`` series)."""
    return {metric.removesuffix("_count") for metric, _, _ in SAMPLE.findall(text)}


class ReadyProbe:
    """Asks /healthz and /readyz before any processor runs: there is nothing assigned."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.before: list[tuple[int, str]] = []

    async def start(self, context: ServiceContext) -> None:
        for path in ("/healthz", "/readyz"):
            self.before.append(await asyncio.to_thread(get, self.port, path))

    async def stop(self) -> None:
        pass


async def wait_for(port: int, condition: Any, what: str, path: str = "/metrics") -> str:
    """The first body of ``path`` ``condition`` accepts; /healthz must answer each time."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        assert await asyncio.to_thread(get, port, "/healthz") == (200, "ok\n")
        status, body = await asyncio.to_thread(get, port, path)
        assert status == 200
        if condition(body):
            return body
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{body}"
        await asyncio.sleep(0.05)


async def check_metrics_during_run(broker_url: str, **broker_options: Any) -> None:
    """Run a copying App on ``broker_url`` with a metrics port; check what it shows."""
    port, suffix = free_port(), uuid.uuid4().hex[:8]
    app = App(
        "obs",
        broker=broker_url,
        metrics_port=port,
        lag_interval_s=0.05,
        fetch_timeout_s=0.05,
        broker_options=broker_options,
    )
    source = app.topic(f"in{suffix}", partitions=2)
    copies = app.topic(f"out{suffix}")
    app.handler(source, group=f"g{suffix}", output=copies)(lambda value: value)
    probe = ReadyProbe(port)
    stop = asyncio.Event()
    run = asyncio.create_task(Lifecycle(app, services=[probe]).run_async(stop))
    try:
        await _check(port, probe, broker_url, source.name, broker_options)
    finally:
        stop.set()
        await run


async def _check(
    port: int, probe: ReadyProbe, broker_url: str, topic: str, options: dict[str, Any]
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while await asyncio.to_thread(ready, port) is not True:
        assert time.monotonic() < deadline, "never ready"
        await asyncio.sleep(0.05)
    assert probe.before[0] == (200, "ok\n")
    status, reasons = probe.before[1]
    assert status == 503
    assert "not running" in reasons
    async with spate.connect(broker_url, **options) as broker, broker.producer() as producer:
        for i in range(RECORDS):
            producer.send(topic, b'{"n": %d}' % i, key=b"k%d" % i)
        await producer.flush()

    def drained(body: str) -> bool:
        lags = metric_values(body, "spate_consumer_lag_records")
        return (
            metric_values(body, "spate_records_consumed_total") == [RECORDS]
            and metric_values(body, "spate_records_produced_total") == [RECORDS]
            and len(lags) == 2
            and not any(lags)
            # the poller may see a commit before the committing coroutine resumes
            and metric_values(body, "spate_commit_duration_seconds_count")[0] >= 1
        )

    body = await wait_for(port, drained, f"{RECORDS} records consumed, produced and committed")
    assert not set(DESIGN_NAMES) - exported_names(body)
    assert metric_values(body, "spate_rebalances_total")[0] >= 1
    assert metric_values(body, "spate_processor_up") == [1]
    # nothing restores in a run without state, and the series is there before any does
    assert metric_values(body, "spate_state_restoring_partitions") == [0]
    assert metric_values(body, "spate_state_restore_records_total") == [0]
    assert metric_values(body, "spate_batch_duration_seconds_count")[0] >= 1
    assert metric_values(body, "spate_end_to_end_latency_seconds_count")[0] >= 1
    assert metric_values(body, "spate_batch_size_records_sum") == [RECORDS]
    assert sum(metric_values(body, "spate_assigned_partitions")) == 2
    assert await asyncio.to_thread(get, port, "/readyz") == (200, "ready\n")

    def polled_after_the_commit(text: str) -> bool:
        """The lag poller's last answer came after the last commit: a caught-up
        processor commits at once, so the gauges above may still show a poll from
        before the records were written (no commit, nothing to lag behind)."""
        (processor,) = json.loads(text)["processors"]
        return sum(p["committed"] or 0 for p in processor["partitions"]) == RECORDS

    text = await wait_for(port, polled_after_the_commit, "a lag poll after the commit", "/status")
    document = json.loads(text)
    assert (document["app"], document["ready"]) == ("obs", True)
    (processor,) = document["processors"]
    assert (processor["consumed"], processor["produced"], processor["errors"]) == (RECORDS,) * 2 + (
        0,
    )
    assert processor["restoring"] == 0
    partitions = [
        (p["partition"], p["assigned"], p["restoring"], p["lag"]) for p in processor["partitions"]
    ]
    assert partitions == [(0, True, False, 0), (1, True, False, 0)]
    assert sum(p["committed"] for p in processor["partitions"]) == RECORDS
