"""A processor rides out transient broker errors (an outage) and stops on others.

The real memory:// broker, whose consumers fail their next few fetches the way an
adapter reports an outage; the worker's clock records the backoff instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest

import spate
from spate.brokers.base import Broker, Consumer, Producer
from spate.clock import ManualClock
from spate.config import Settings
from spate.errors import ConnectError, PublishError, SpateError
from spate.record import Record
from spate.runtime.stats import ProcessorStats
from spate.runtime.worker import Worker
from spate.streams.stream import Stream
from spate.topic import Topic

RECORDS = 50


class Flaky:
    """The broker's own consumers and producers, whose next ``fetches`` fetches and
    ``flushes`` flushes raise ``error``."""

    def __init__(self, broker: Broker, error: SpateError, *, fetches: int, flushes: int) -> None:
        self.make_consumer = broker.consumer
        self.make_producer = broker.producer
        self.error = error
        self.fetches = fetches
        self.flushes = flushes
        self.consumers = 0

    def consumer(self, *args: Any, **kwargs: Any) -> Consumer:
        consumer = self.make_consumer(*args, **kwargs)
        fetch = consumer.fetch
        self.consumers += 1

        async def failing_fetch(max_records: int, timeout_s: float) -> list[Record]:
            if self.fetches:
                self.fetches -= 1
                raise self.error
            return await fetch(max_records, timeout_s)

        consumer.fetch = failing_fetch  # type: ignore[method-assign]
        return consumer

    def producer(self, **kwargs: Any) -> Producer:
        producer: Producer = self.make_producer(**kwargs)
        flush = producer.flush

        async def failing_flush(timeout_s: float | None = None) -> None:
            if self.flushes:
                self.flushes -= 1
                raise self.error
            await flush(timeout_s)

        producer.flush = failing_flush  # type: ignore[method-assign]
        return producer


class RecordingClock(ManualClock):
    """Records each wait and returns at once."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.advance(seconds)


async def run_worker(
    error: SpateError, *, fetches: int = 0, flushes: int = 0
) -> tuple[Worker, Flaky, list[bytes]]:
    """Run a copying processor until it committed all RECORDS inputs; its outputs."""
    async with spate.connect(f"memory://{uuid.uuid4().hex}") as broker:
        for name in ("in", "out"):
            await broker.create_topic(name, 2)
        async with broker.producer() as producer:
            for i in range(RECORDS):
                producer.send("in", b"%d" % i, key=b"k%d" % i)
            await producer.flush()
        stream = Stream([Topic.of("in", partitions=2, serde="raw")], "g", "copy")
        stream.to(Topic.of("out", partitions=2, serde="raw"))
        flaky = Flaky(broker, error, fetches=fetches, flushes=flushes)
        broker.consumer = flaky.consumer  # type: ignore[method-assign]
        broker.producer = flaky.producer  # type: ignore[method-assign, assignment]
        worker = Worker(
            "app",
            stream,
            broker,
            Settings(broker="memory://", fetch_timeout_s=0.05),
            stats=ProcessorStats(processor="copy", group="g"),
            clock=RecordingClock(),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            async with asyncio.timeout(10):
                while not task.done():
                    committed = sum(r.committed or 0 for r in await broker.lag("g", ["in"]))
                    if committed == RECORDS:
                        break
                    await asyncio.wait([task], timeout=0.01)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.shield(task), 10)
        async with flaky.make_consumer(["out"], "reader") as reader:
            outputs = [r.value for r in await reader.fetch(10 * RECORDS, 1.0)]
        return worker, flaky, outputs


async def test_fetches_failing_with_a_transient_error_are_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="spate.runtime"):
        worker, flaky, outputs = await run_worker(ConnectError("broker restarting"), fetches=4)
    assert sorted(outputs) == sorted(b"%d" % i for i in range(RECORDS))
    assert worker.stats.connected
    assert flaky.consumers == 5, "a new consumer after each failure"
    assert isinstance(worker.clock, RecordingClock)
    assert len(worker.clock.waits) == 4
    assert worker.clock.waits == sorted(worker.clock.waits), "the waits grow"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("event=broker_unavailable" in m for m in messages) == 1
    assert sum("event=broker_available" in m for m in messages) == 1


async def test_an_error_waiting_cannot_cure_stops_the_processor() -> None:
    with pytest.raises(ConnectError, match="credentials"):
        await run_worker(ConnectError("refused the credentials", transient=False), fetches=1)


async def test_a_flush_failing_in_an_outage_is_replayed_not_lost() -> None:
    """The batch whose outputs were not acknowledged is never committed: the next
    consumer reads it again from the committed offsets (at-least-once)."""
    no_ack = PublishError("no acknowledgement within 60s", transient=True)
    worker, flaky, outputs = await run_worker(no_ack, flushes=2)
    assert set(outputs) == {b"%d" % i for i in range(RECORDS)}
    assert worker.stats.connected
    assert flaky.consumers == 3
