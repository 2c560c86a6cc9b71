"""group_by, stream-table and windowed stream-stream joins on Redis Streams (every
Redis version the fixture finds), against expected outputs (issue 13)."""

from __future__ import annotations

import pytest

from join_checks import SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_joins_on_redis(redis_url: str, scenario: str) -> None:
    await SCENARIOS[scenario]("r", redis_url)  # the fixture empties the database
