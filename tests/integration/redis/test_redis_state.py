"""Stores on Redis Streams: per-key running sums through three SIGKILLs.

Redis has no transactions: exactly-once is effectively-once there (outputs carry
dedup ids an atomic check-and-add drops), and the changelog restore keeps only
flushes whose source offsets were committed and never re-processed: a commit that
fails after the changelog was written leaks nothing into the restore."""

from __future__ import annotations

from pathlib import Path

import pytest

from failed_commit_checks import SumsNames, check_a_failed_commit_leaks_nothing_into_the_restore
from spate.testing.redis_server import server_versions_for_tests
from state_checks import recovers_through_kills, rescales_three_one_two, state_workers


@pytest.mark.slow
def test_running_sums_are_right_after_three_sigkills_effectively_once(
    tmp_path: Path, redis_url: str
) -> None:
    workers = state_workers(tmp_path, f"{redis_url}?lease_ttl_s=1", app="redisstate")
    recovers_through_kills(workers, 4000, exactly_once=True)


@pytest.mark.slow
@pytest.mark.parametrize("redis_server_url", server_versions_for_tests()[:1], indirect=True)
def test_rescaling_three_then_one_then_two_workers_keeps_the_per_key_sums(
    tmp_path: Path, redis_url: str
) -> None:
    workers = state_workers(
        tmp_path, f"{redis_url}?lease_ttl_s=1", app="redisrescale", windows=False
    )
    # On the newest server only: scripts and lag differ between versions, not what a
    # rescale does with them (the SIGKILL test above covers both), and CI time counts.
    rescales_three_one_two(workers, 1800, exactly_once=True)


def test_a_commit_failing_after_the_changelog_was_written_leaks_nothing_into_the_restore(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, redis_url: str
) -> None:
    check_a_failed_commit_leaks_nothing_into_the_restore(
        redis_url, tmp_path / "state", caplog, names=SumsNames.fresh(), timeout_s=30
    )
