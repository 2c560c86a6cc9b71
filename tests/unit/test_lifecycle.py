"""The Lifecycle every way of running an App goes through: its side services.

A tiny service notes what it sees when it starts and stops; the App around it runs on
the in-memory broker, through TestApp or the Lifecycle itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from spate.app import App
from spate.errors import ConfigError
from spate.runtime.lifecycle import Lifecycle, ServiceContext
from spate.runtime.supervisor import ParentWatch
from spate.testing.app import TestApp

SEEN_AT_START = b"sent by the service"


class Probe:
    """Notes, in ``events``, when it starts and stops and what the run looked like."""

    def __init__(self, events: list[str], name: str = "probe") -> None:
        self.events = events
        self.name = name
        self.context: ServiceContext | None = None

    async def start(self, context: ServiceContext) -> None:
        self.context = context
        stats = context.stats["copy"]
        self.events.append(f"{self.name} start consumed={stats.consumed} assigned={stats.assigned}")

    async def stop(self) -> None:
        assert self.context is not None
        stats = self.context.stats["copy"]
        self.events.append(f"{self.name} stop consumed={stats.consumed} assigned={stats.assigned}")


class FailsToStart:
    async def start(self, context: ServiceContext) -> None:
        raise ConfigError("no port for the probe")

    async def stop(self) -> None:
        raise AssertionError("a service that did not start is not stopped")


class FailsToStop:
    async def start(self, context: ServiceContext) -> None:
        return None

    async def stop(self) -> None:
        raise OSError("the socket went away")


def copying_app(events: list[str], url: str = "memory://") -> App:
    app = App("life", broker=url, fetch_timeout_s=0.02)

    def copy(value: Any) -> Any:
        events.append(f"record {value}")
        return value

    app.stream(app.topic("in", partitions=2), group="copy").map(copy).to(app.topic("out"))
    return app


async def test_services_start_before_the_processors_and_stop_after_they_drained() -> None:
    events: list[str] = []
    app = copying_app(events)
    first, second = Probe(events, "first"), Probe(events, "second")
    async with TestApp(app, services=[first, second]) as test:
        test.send("in", 1, key="a")
        await test.run_until_idle_async()
        assert first.context is not None
        assert first.context.broker is test._started()[0]  # the processors' own broker
        assert first.context.settings.fetch_timeout_s == test.settings.fetch_timeout_s
    assert events == [
        "first start consumed=0 assigned=frozenset()",
        "second start consumed=0 assigned=frozenset()",
        "record 1",
        "second stop consumed=1 assigned=frozenset()",  # partitions released: drained
        "first stop consumed=1 assigned=frozenset()",
    ]


async def test_a_service_that_fails_to_start_stops_the_started_ones_and_runs_nothing() -> None:
    events: list[str] = []
    app = copying_app(events)
    lifecycle = Lifecycle(app, services=[Probe(events), FailsToStart()])
    with pytest.raises(ConfigError, match="no port for the probe"):
        await asyncio.wait_for(lifecycle.run_async(), 10)
    assert events == [
        "probe start consumed=0 assigned=frozenset()",
        "probe stop consumed=0 assigned=frozenset()",
    ]
    assert app.stats["copy"].rebalances == 0  # no processor ever joined its group


async def test_an_orphaned_worker_drains_and_a_service_that_fails_to_stop_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ParentWatch sets the run's stop as a signal would, and the run ends cleanly."""
    events: list[str] = []
    app = copying_app(events)
    not_our_parent = -1
    lifecycle = Lifecycle(app, services=[FailsToStop(), ParentWatch(not_our_parent)])
    with caplog.at_level(logging.INFO, logger="spate"):
        await asyncio.wait_for(lifecycle.run_async(), 10)
    assert "event=parent_gone" in caplog.text
    assert "event=app_stop app=life" in caplog.text
    assert (
        "event=service_stop_failed app=life service=FailsToStop error=OSError: "
        "the socket went away" in caplog.text
    )
