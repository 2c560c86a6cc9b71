"""group_by, stream-table and windowed stream-stream joins on the embedded broker
(local://, a SQLite file), against expected outputs (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from join_checks import SCENARIOS, check_group_by


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_joins_on_local(tmp_path: Path, scenario: str) -> None:
    await SCENARIOS[scenario]("l", f"local://{tmp_path}/broker")


async def test_group_by_at_least_once_on_local(tmp_path: Path) -> None:
    await check_group_by("l", f"local://{tmp_path}/broker")
