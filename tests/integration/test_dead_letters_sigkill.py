"""Dead letters under exactly-once on the embedded broker survive SIGKILLs without
duplicates, with and without retry topics: dead letters and retry moves are in the
transaction of their batch's offsets, so a batch a killed worker did not commit leaves
none behind, and its successor writes them once (issue 11). Real worker processes of
:mod:`worker_processes`' App; the scenario is :mod:`dead_letter_kills`."""

from __future__ import annotations

from pathlib import Path

import pytest

from dead_letter_kills import kill_while_setting_aside
from worker_processes import Workers

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("via", [(), (0.2, 0.2)], ids=["in-place", "retry-topics"])
def test_kill_9_neither_loses_nor_duplicates_a_dead_letter_under_exactly_once(
    tmp_path: Path, via: tuple[float, ...]
) -> None:
    workers = Workers(
        tmp_path,
        # a 2 s lease ttl: a killed worker's partitions move on sooner than at 10 s
        f"local://{tmp_path / 'broker'}?lease_ttl_s=2",
        app="dlq",
        partitions=2,
        guarantee="exactly-once",
        delay_s=0.0002,
        batch=100,
    )
    kill_while_setting_aside(workers, 5_000, 50, via)
