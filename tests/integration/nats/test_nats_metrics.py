"""The metrics server during a real run on NATS JetStream."""

from __future__ import annotations

from metrics_checks import check_metrics_during_run


async def test_metrics_on_nats(nats_url: str) -> None:
    await check_metrics_during_run(nats_url)
