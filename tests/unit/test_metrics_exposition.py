"""The Prometheus text of an App's processors: names, labels, counters, histograms.

A real App runs on the in-memory broker through TestApp, so the numbers are those
the runtime recorded, per batch, in its ProcessorStats.
"""

from __future__ import annotations

import re
from typing import Any

from metrics_checks import DESIGN_NAMES
from spate.app import App
from spate.brokers.base import PartitionLag
from spate.observability.metrics import render
from spate.record import TopicPartition
from spate.runtime.stats import Histogram
from spate.testing.app import TestApp
from spate.topic import Topic

SAMPLE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$")


def samples(text: str) -> dict[tuple[str, str], float]:
    """(name, labels) -> value of every sample line of an exposition."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        out[(match[1], match[2] or "")] = float(match[3])
    return out


def make_app() -> tuple[App, Topic[Any]]:
    app = App("shop", broker="memory://unused")
    orders = app.topic("orders", partitions=2)
    invoices = app.topic("invoices")

    @app.handler(orders, group="billing", output=invoices)
    def bill(order: dict[str, int]) -> dict[str, int] | None:
        return {"total": order["amount"]} if order["amount"] else None

    return app, orders


def test_every_design_name_is_exposed_with_its_type_and_labels() -> None:
    app, orders = make_app()
    with TestApp(app) as t:
        for amount in range(10):
            t.send(orders, {"amount": amount}, key=str(amount))
        t.run_until_idle()
        text = render("shop", app.stats)
    for name in DESIGN_NAMES:
        assert f"# TYPE {name} " in text, name
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    assert all(kind == "counter" for name, kind in types.items() if name.endswith("_total"))
    assert types["spate_batch_duration_seconds"] == "histogram"
    assert types["spate_consumer_lag_records"] == "gauge"
    values = samples(text)
    processor = 'app="shop",processor="bill"'
    assert values[("spate_records_consumed_total", processor)] == 10
    assert values[("spate_records_produced_total", processor)] == 9
    assert values[("spate_dead_letters_total", processor)] == 0
    batches = values[("spate_batch_duration_seconds_count", processor)]
    assert batches >= 1
    assert values[("spate_batch_duration_seconds_bucket", processor + ',le="+Inf"')] == batches
    assert values[("spate_batch_size_records_sum", processor)] == 10
    assert values[("spate_end_to_end_latency_seconds_count", processor)] == batches
    assert values[("spate_commit_duration_seconds_count", processor)] >= 1


def test_histogram_buckets_are_cumulative_and_end_with_inf() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    app, _ = make_app()
    stats = app.stats["bill"]
    stats.batch_duration = histogram
    values = samples(render("shop", app.stats))
    labels = 'app="shop",processor="bill"'
    name = "spate_batch_duration_seconds"
    assert values[(f"{name}_bucket", labels + ',le="0.1"')] == 2  # le: bound included
    assert values[(f"{name}_bucket", labels + ',le="1.0"')] == 3
    assert values[(f"{name}_bucket", labels + ',le="+Inf"')] == 4
    assert values[(f"{name}_count", labels)] == 4
    assert values[(f"{name}_sum", labels)] == 3.65


def test_lag_and_partitions_are_labelled_by_topic_and_partition() -> None:
    app, _ = make_app()
    stats = app.stats["bill"]
    stats.assigned = frozenset({TopicPartition("orders", 0), TopicPartition("orders", 1)})
    stats.lag = {
        TopicPartition("orders", 1): PartitionLag(
            topic="orders", partition=1, committed=3, end_offset=10, lag=7
        )
    }
    values = samples(render('sh"op', app.stats))
    base = 'app="sh\\"op",processor="bill",topic="orders"'
    assert values[("spate_assigned_partitions", base)] == 2
    assert values[("spate_consumer_lag_records", base + ',partition="1"')] == 7
