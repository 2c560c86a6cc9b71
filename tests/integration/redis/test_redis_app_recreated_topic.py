"""Effectively-once ids on Redis name the input topic's incarnation and the group, and
an output the publish script drops is counted and logged (issue 9; the scenarios are
shared with NATS in :mod:`effectively_once_app`)."""

from __future__ import annotations

import pytest

from effectively_once_app import EffectivelyOnceApp


class TestRedisEffectivelyOnceApp(EffectivelyOnceApp):
    @pytest.fixture
    def url(self, redis_url: str) -> str:
        return redis_url
