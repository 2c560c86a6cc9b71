"""Stores on NATS JetStream: per-key running sums through three SIGKILLs.

NATS has no transactions: exactly-once is effectively-once there (outputs carry
dedup ids the stream's duplicate window drops); under either guarantee the changelog
restore keeps only flushes whose source offsets were committed and never
re-processed, so every answer's sum is right (at-least-once may answer twice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from state_checks import recovers_through_kills, rescales_three_one_two, state_workers

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_running_sums_are_right_after_three_sigkills(
    tmp_path: Path, nats_url: str, guarantee: str
) -> None:
    url = f"{nats_url}?lease_ttl_s=1.0"
    workers = state_workers(tmp_path, url, app="natsstate", guarantee=guarantee)
    recovers_through_kills(workers, 4000, exactly_once=guarantee == "exactly-once")


def test_rescaling_three_then_one_then_two_workers_keeps_the_per_key_sums(
    tmp_path: Path, nats_url: str
) -> None:
    url = f"{nats_url}?lease_ttl_s=1.0"
    workers = state_workers(tmp_path, url, app="natsrescale", windows=False)
    rescales_three_one_two(workers, 1800, exactly_once=True)
