"""Stores on the embedded broker (local://), in one process: a restart restores from
the local checkpoint, a wiped state directory is rebuilt from the changelog, and a
commit that fails after the changelog was written leaks nothing into the restore."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from failed_commit_checks import (
    PARTITIONS,
    check_a_failed_commit_leaks_nothing_into_the_restore,
    restores,
    run_inputs,
    summing_app,
)
from state_checks import check_answers
from worker_processes import read_all


@pytest.mark.parametrize("backend", ["rocksdb", "sqlite"])
def test_a_restart_resumes_from_the_local_checkpoint_and_a_wiped_directory_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    url = f"local://{tmp_path / 'broker'}"
    state_dir = tmp_path / "state"
    caplog.set_level("INFO", logger="spate.state")

    asyncio.run(run_inputs(summing_app(state_dir, state_backend=backend), url, 0, 200))
    assert all("from=no_local_state" in line for line in restores(caplog))

    asyncio.run(run_inputs(summing_app(state_dir, state_backend=backend), url, 200, 300))
    lines = restores(caplog)
    assert len(lines) == PARTITIONS
    # Stopped cleanly: the local state is the committed one, its checkpoint at the
    # changelog's end: nothing to replay.
    assert all("from=local_checkpoint" in line for line in lines), lines
    assert all(" records=0 " in line for line in lines), lines

    shutil.rmtree(state_dir)
    asyncio.run(run_inputs(summing_app(state_dir, state_backend=backend), url, 300, 400))
    lines = restores(caplog)
    assert all("from=no_local_state" in line for line in lines), lines
    assert sum(int(line.split("records=")[1].split()[0]) for line in lines) > 0

    check_answers(asyncio.run(read_all(url, "results", PARTITIONS)), 400, exactly_once=True)


def test_a_commit_failing_after_the_changelog_was_written_leaks_nothing_into_the_restore(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"local://{tmp_path / 'broker'}"
    check_a_failed_commit_leaks_nothing_into_the_restore(url, tmp_path / "state", caplog)
