"""The collector threshold while processors run: raised, shared, restored."""

from __future__ import annotations

import gc

import pytest

from spate.config import Settings
from spate.errors import ConfigError
from spate.runtime.garbage import young_threshold_at_least


def test_threshold_is_raised_shared_and_restored() -> None:
    before = gc.get_threshold()
    with young_threshold_at_least(before[0] + 5000):
        assert gc.get_threshold() == (before[0] + 5000, *before[1:])
        with young_threshold_at_least(before[0] + 1):  # never lowered by a second run
            assert gc.get_threshold()[0] == before[0] + 5000
        assert gc.get_threshold()[0] == before[0] + 5000  # the first run still goes on
    assert gc.get_threshold() == before


def test_zero_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()
    with young_threshold_at_least(0):
        assert gc.get_threshold() == before
    assert gc.get_threshold() == before


def test_a_negative_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match="gc_threshold=-1"):
        Settings(gc_threshold=-1)
