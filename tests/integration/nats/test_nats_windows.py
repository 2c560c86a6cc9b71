"""Windows on NATS JetStream: the scenario of :mod:`window_checks` on a real server,
at-least-once and effectively-once (outputs of windows carry deterministic ids)."""

from __future__ import annotations

import pytest

from window_checks import check_windows


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_windows_on_nats(nats_url: str, guarantee: str) -> None:
    check_windows(nats_url, guarantee)
