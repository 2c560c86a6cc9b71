"""Effectively-once ids on NATS name the input topic's incarnation and the group, and
a PubAck marked ``duplicate`` is counted and logged (issue 9; the scenarios are shared
with Redis in :mod:`effectively_once_app`)."""

from __future__ import annotations

import pytest

from effectively_once_app import (
    a_replayed_batch_s_dropped_outputs_are_counted_and_logged,
    every_record_of_a_recreated_input_is_answered,
)


async def test_every_record_of_a_recreated_input_is_answered(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await every_record_of_a_recreated_input_is_answered(nats_url, caplog)


async def test_a_replayed_batch_s_dropped_outputs_are_counted_and_logged(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await a_replayed_batch_s_dropped_outputs_are_counted_and_logged(nats_url, caplog)
