"""The metrics server during a real run on Redis Streams."""

from __future__ import annotations

from metrics_checks import check_metrics_during_run


async def test_metrics_on_redis(redis_url: str) -> None:
    await check_metrics_during_run(redis_url)
