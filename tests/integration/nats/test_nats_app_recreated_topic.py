"""Effectively-once ids on NATS name the input topic's incarnation and the group, and
a PubAck marked ``duplicate`` is counted and logged (issue 9; the scenarios are shared
with Redis in :mod:`effectively_once_app`)."""

from __future__ import annotations

import pytest

from effectively_once_app import EffectivelyOnceApp


class TestNatsEffectivelyOnceApp(EffectivelyOnceApp):
    @pytest.fixture
    def url(self, nats_url: str) -> str:
        return nats_url
