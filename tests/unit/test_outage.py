"""Backoff and outage bookkeeping (spate.outage), on a manual clock: no sleeping."""

from __future__ import annotations

import logging

import pytest

from spate.clock import ManualClock
from spate.errors import ConnectError
from spate.outage import CAP_S, Outage, backoff_s


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    waits = [backoff_s(attempt, 0.0, base_s=0.1, cap_s=5.0) for attempt in range(10)]
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0])
    assert backoff_s(10_000, 0.0) == CAP_S


def test_jitter_takes_at_most_its_share_of_each_wait() -> None:
    full = backoff_s(3, 0.0, base_s=1.0, cap_s=60.0, jitter=0.5)
    assert full == 8.0
    assert backoff_s(3, 0.999, base_s=1.0, cap_s=60.0, jitter=0.5) == pytest.approx(4.004)
    assert backoff_s(3, 0.5, base_s=1.0, cap_s=60.0, jitter=0.0) == full


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    outage = Outage(logging.getLogger("spate.test"), "processor=p", clock=clock, draw=lambda: 0.0)
    outage.recovered()
    assert outage.available
    with caplog.at_level(logging.INFO, logger="spate.test"):
        waits = [outage.failed(ConnectError("refused")) for _ in range(5)]
        clock.advance(40.0)
        assert not outage.available
        outage.recovered()
        outage.recovered()
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "event=broker_unavailable processor=p error=ConnectError: refused",
        "event=broker_available processor=p down_s=40.0 attempts=5",
    ]
    assert outage.available
    assert outage.failures == 0
    assert outage.failed(ConnectError("again")) == pytest.approx(0.1)
