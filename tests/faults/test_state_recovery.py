"""Stores survive SIGKILLs and rescaling on the embedded broker (local://).

Worker processes of the running-sum App (:mod:`state_checks`) share a local://
broker with a short lease ttl; each answer carries its key's running sum, which must
be the sum of an uninterrupted run whatever was killed, replayed or moved.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

import pytest

from hand_over_checks import LEASE_TTL_S, hands_over_within_the_deadline
from state_checks import (
    check_answers,
    recovers_through_kills,
    rescales_three_one_two,
    state_workers,
)
from worker_processes import Workers, produce, wait_until

pytestmark = pytest.mark.slow


def workers_on_local(
    folder: Path, guarantee: str, *, delay_s: float = 0.002, windows: bool = False
) -> Workers:
    url = f"local://{folder / 'broker'}?lease_ttl_s=1.0"
    return state_workers(
        folder, url, app="sums", guarantee=guarantee, delay_s=delay_s, batch=25, windows=windows
    )


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_running_sums_are_right_after_three_sigkills(tmp_path: Path, guarantee: str) -> None:
    workers = workers_on_local(tmp_path, guarantee, windows=True)
    recovers_through_kills(workers, 4000, exactly_once=guarantee == "exactly-once")


def test_a_wiped_state_directory_is_rebuilt_from_the_changelog(tmp_path: Path) -> None:
    workers = workers_on_local(tmp_path, "exactly-once", delay_s=0)
    try:
        workers.produce(500)
        first = workers.start()
        wait_until(lambda: workers.committed() >= 500, 30, "500 committed")
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        shutil.rmtree(tmp_path / ".spate" / "state")
        asyncio.run(produce(workers.url, workers.inputs, 500, 800))
        second = workers.start()
        wait_until(lambda: workers.committed() >= 800, 30, "800 committed")
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        workers.stop_all()
    assert workers.log_of(second).count("from=no_local_state") == 4
    check_answers(workers.answers(), 800, exactly_once=True)


def test_rescaling_three_then_one_then_two_workers_keeps_the_per_key_sums(
    tmp_path: Path,
) -> None:
    rescales_three_one_two(workers_on_local(tmp_path, "at-least-once"), 1800)


def test_a_busy_worker_flushes_and_hands_over_revoked_state_within_the_deadline(
    tmp_path: Path,
) -> None:
    url = f"local://{tmp_path / 'broker'}?lease_ttl_s={LEASE_TTL_S}"
    hands_over_within_the_deadline(tmp_path, url)
