"""The Grafana dashboard and the Prometheus alerts ask only for metrics an App exports.

Every ``spate_*`` name either file mentions must be a sample name of a live
``/metrics`` scrape of a run that processed records (a histogram's ``_bucket``,
``_sum`` and ``_count`` count as exported; its bare name does not).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from metrics_checks import SAMPLE, get
from spate.app import App
from spate.testing.app import TestApp
from spate.testing.nats_server import free_port

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bspate_[a-z_]+\b")


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def dashboard_names() -> set[str]:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "spate.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    return {name for text in strings(dashboard) for name in NAME.findall(text)}


def alert_names() -> set[str]:
    """Names in the ``expr:`` of every rule (a one-line expr or a ``|`` block)."""
    text = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    blocks = re.findall(r"^(\s*)expr:(.*(?:\n\1\s+.*)*)", text, re.MULTILINE)
    assert len(blocks) == text.count("- alert:") >= 3
    return {name for _, expr in blocks for name in NAME.findall(expr)}


async def live_names() -> set[str]:
    port = free_port()
    app = App("shop", metrics_port=port, lag_interval_s=0.05)
    orders = app.topic("orders", partitions=2)

    @app.handler(orders, group="billing", output=app.topic("invoices"))
    def bill(order: dict[str, int]) -> dict[str, int]:
        return order

    async with TestApp(app) as t:  # async: the server answers while the test waits
        for n in range(20):
            t.send(orders, {"n": n}, key=str(n))
        await t.run_until_idle_async()
        deadline = time.monotonic() + 30
        while "spate_consumer_lag_records{" not in (body := await scrape(port)):
            assert time.monotonic() < deadline, "no lag was polled"
            await asyncio.sleep(0.05)
    return {name for name, _, _ in SAMPLE.findall(body)}


async def scrape(port: int) -> str:
    status, body = await asyncio.to_thread(get, port, "/metrics")
    assert status == 200
    return body


async def test_dashboard_and_alerts_use_only_exported_metric_names() -> None:
    exported = await live_names()
    assert not dashboard_names() - exported
    assert not alert_names() - exported
    assert {"spate_consumer_lag_records", "spate_records_consumed_total"} <= alert_names()
