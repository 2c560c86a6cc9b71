"""The Grafana dashboard and the alert rules show what issue 12 asks of them: each
panel and rule is there and queries the metric that answers its question (that those
metrics exist in a live ``/metrics`` is tests/integration/test_deploy_metric_names.py)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PANELS = {
    "Throughput (records/s)": ["rate(spate_records_consumed_total", "spate_records_produced_total"],
    "Consumer lag per partition (records)": ["spate_consumer_lag_records", "partition)"],
    "Batch processing time": [
        "histogram_quantile(0.5,",
        "histogram_quantile(0.99,",
        "spate_batch_duration_seconds_bucket",
    ],
    "Errors and dead letters (records/s)": [
        "rate(spate_processing_errors_total",
        "rate(spate_dead_letters_total",
    ],
    "Partitions per worker": ["spate_assigned_partitions", "instance)"],
    "Rebalances and lost partitions": ["spate_rebalances_total"],
}
"""Panel title -> what its queries must contain."""

ALERTS = {
    "SpateLagGrowing": ["spate_consumer_lag_records", "deriv("],
    "SpatePartitionStalled": ["spate_consumer_lag_records", "rate(spate_records_consumed_total"],
    "SpateErrorRate": ["rate(spate_processing_errors_total", "rate(spate_records_consumed_total"],
}
"""Alert -> what its rule must contain."""


def test_the_dashboard_has_a_panel_for_each_question() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "spate.json").read_text())
    queries = {
        panel["title"]: " ".join(t["expr"] for t in panel["targets"])
        for panel in dashboard["panels"]
    }
    for title, parts in PANELS.items():
        assert title in queries, f"no panel {title!r}"
        for part in parts:
            assert part in queries[title], (title, part, queries[title])


def test_the_alert_rules_watch_lag_stalls_and_errors() -> None:
    text = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    rules = {block.split("\n", 1)[0].strip(): block for block in text.split("- alert:")[1:]}
    for name, parts in ALERTS.items():
        assert name in rules, f"no alert {name!r}"
        for part in [*parts, "severity:", "summary:"]:
            assert part in rules[name], (name, part)
