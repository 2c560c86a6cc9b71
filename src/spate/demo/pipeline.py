"""The demo's spate App: parse → statistics and alerts → alert log.

::

    demo-access-logs (text) ──parser──▶ demo-requests (Request JSON, keyed by path)
    demo-requests ──stats──▶ per-status / per-path counts, latency; 5xx alerts ──▶ demo-alerts
    demo-alerts ──alert-log──▶ the live view
"""

from __future__ import annotations

from typing import Any

from spate import App
from spate.demo.analysis import ErrorRateAlert, Request, Stats

LOGS_TOPIC = "demo-access-logs"
REQUESTS_TOPIC = "demo-requests"
ALERTS_TOPIC = "demo-alerts"
PARTITIONS = 4
GROUPS = ("demo-parser", "demo-stats", "demo-alert-log")


def build_app(broker: str, stats: Stats, detector: ErrorRateAlert) -> App:
    """The demo pipeline on ``broker``; counts go to ``stats``, alerts come from ``detector``."""
    app = App("spate-demo", broker=broker)
    logs = app.topic(LOGS_TOPIC, partitions=PARTITIONS, serde="str")
    requests = app.topic(REQUESTS_TOPIC, partitions=PARTITIONS, value_type=Request)
    alerts = app.topic(ALERTS_TOPIC, partitions=1)

    (
        app.stream(logs, group="demo-parser")
        .flat_map(stats.parse)
        .key_by(lambda request: request.path)
        .to(requests)
    )
    (
        app.stream(requests, group="demo-stats")
        .peek(stats.observe)
        .flat_map(detector.observe)
        .key_by(lambda alert: alert["alert"])
        .to(alerts)
    )

    @app.handler(alerts, group="demo-alert-log")
    def log_alert(alert: dict[str, Any]) -> None:
        stats.record_alert(alert)

    return app
