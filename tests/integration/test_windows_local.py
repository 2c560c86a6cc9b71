"""Windows on the embedded durable broker (local://, a SQLite file): the scenario of
:mod:`window_checks` under both guarantees (exactly-once: one SQLite transaction)."""

from __future__ import annotations

from pathlib import Path

import pytest

from window_checks import check_windows


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_windows_on_the_embedded_broker(tmp_path: Path, guarantee: str) -> None:
    check_windows(f"local://{tmp_path / 'broker'}", guarantee)
