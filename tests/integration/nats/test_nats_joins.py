"""group_by, stream-table and windowed stream-stream joins on NATS JetStream, against
expected outputs (issue 13)."""

from __future__ import annotations

import uuid

import pytest

from join_checks import SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_joins_on_nats(nats_url: str, scenario: str) -> None:
    await SCENARIOS[scenario](uuid.uuid4().hex[:8], nats_url)
