"""The metrics server during a real run on the embedded brokers (local://, memory://)."""

from __future__ import annotations

from pathlib import Path

from metrics_checks import check_metrics_during_run


async def test_metrics_on_the_local_broker(tmp_path: Path) -> None:
    await check_metrics_during_run(f"local://{tmp_path / 'log'}")


async def test_metrics_on_the_memory_broker() -> None:
    await check_metrics_during_run("memory://metrics")
