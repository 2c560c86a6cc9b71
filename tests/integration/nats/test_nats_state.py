"""Stores on NATS JetStream: per-key running sums through three SIGKILLs.

NATS has no transactions: exactly-once is effectively-once there (outputs carry
dedup ids the stream's duplicate window drops); under either guarantee the changelog
restore keeps only flushes whose source offsets were committed and never
re-processed, so every answer's sum is right (at-least-once may answer twice). A commit that fails
after the changelog was written leaks nothing into the restore, and a busy worker
hands revoked state over within the revoke deadline."""

from __future__ import annotations

from pathlib import Path

import pytest

from failed_commit_checks import SumsNames, check_a_failed_commit_leaks_nothing_into_the_restore
from hand_over_checks import LEASE_TTL_S, hands_over_within_the_deadline
from state_checks import recovers_through_kills, rescales_three_one_two, state_workers


@pytest.mark.slow
@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_running_sums_are_right_after_three_sigkills(
    tmp_path: Path, nats_url: str, guarantee: str
) -> None:
    url = f"{nats_url}?lease_ttl_s=1.0"
    workers = state_workers(tmp_path, url, app="natsstate", guarantee=guarantee)
    recovers_through_kills(workers, 4000, exactly_once=guarantee == "exactly-once")


@pytest.mark.slow
def test_rescaling_three_then_one_then_two_workers_keeps_the_per_key_sums(
    tmp_path: Path, nats_url: str
) -> None:
    url = f"{nats_url}?lease_ttl_s=1.0"
    workers = state_workers(tmp_path, url, app="natsrescale", windows=False)
    rescales_three_one_two(workers, 1800, exactly_once=True)


def test_a_commit_failing_after_the_changelog_was_written_leaks_nothing_into_the_restore(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, nats_url: str
) -> None:
    check_a_failed_commit_leaks_nothing_into_the_restore(
        nats_url, tmp_path / "state", caplog, names=SumsNames.fresh(), timeout_s=30
    )


@pytest.mark.slow
def test_a_busy_worker_flushes_and_hands_over_revoked_state_within_the_deadline(
    tmp_path: Path, nats_url: str
) -> None:
    hands_over_within_the_deadline(tmp_path, f"{nats_url}?lease_ttl_s={LEASE_TTL_S}")
