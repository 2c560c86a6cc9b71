"""Stores on Redis Streams: per-key running sums through three SIGKILLs.

Redis has no transactions: exactly-once is effectively-once there (outputs carry
dedup ids an atomic check-and-add drops), and the changelog restore keeps only
flushes whose source offsets were committed and never re-processed."""

from __future__ import annotations

from pathlib import Path

import pytest

from state_checks import recovers_through_kills, state_workers

pytestmark = pytest.mark.slow


def test_running_sums_are_right_after_three_sigkills_effectively_once(
    tmp_path: Path, redis_url: str
) -> None:
    workers = state_workers(tmp_path, f"{redis_url}?lease_ttl_s=1", app="redisstate")
    recovers_through_kills(workers, 4000, exactly_once=True)
