"""Windows on the embedded durable broker (local://, a SQLite file): the scenario of
:mod:`window_checks` under both guarantees (exactly-once: one SQLite transaction), and
a batch read again after its transaction failed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

import spate
from spate import App
from spate.brokers.base import Producer, TransactionalProducer
from spate.errors import BrokerError
from spate.runtime.worker import Worker
from spate.streams import agg, tumbling
from window_checks import T0, check_windows
from worker_processes import read_all


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_windows_on_the_embedded_broker(tmp_path: Path, guarantee: str) -> None:
    check_windows(f"local://{tmp_path / 'broker'}", guarantee)


def test_a_batch_whose_transaction_failed_is_counted_once_when_read_again(
    tmp_path: Path,
) -> None:
    """A commit that fails rewinds the batch and restores the stores without it; the
    window operator must then work on the restored stores, not on what it built from the
    replaced ones (which hold the failed batch's counts)."""
    url = f"local://{tmp_path / 'broker'}"
    app = App(
        "wins",
        state_dir=str(tmp_path / "state"),
        batch_size=5,
        processing_guarantee="exactly-once",
    )
    orders = app.topic("orders", partitions=1)
    counts = app.topic("counts", partitions=1)
    (
        app.stream(orders, group="counter")
        .window(tumbling(seconds=10), event_time=lambda v: v["t"])
        .aggregate(n=agg.count())
        .to(counts)
    )

    async def run() -> None:
        async with spate.connect(url) as broker:
            await app.prepare(broker)
            async with broker.producer() as producer:
                for second in range(40):
                    producer.send("orders", orjson.dumps({"t": T0 + second * 1000}), key=b"a")
                await producer.flush()
            worker = Worker(app.name, app.processors[0].stream, broker, app.settings)
            make_producer = worker._make_producer

            def failing_second_commit(exactly_once: bool) -> Producer:
                producer = make_producer(exactly_once)
                assert isinstance(producer, TransactionalProducer)
                commit = producer.commit_transaction
                batches = 0

                async def commit_or_fail(consumer: Any, through: Any) -> None:
                    nonlocal batches
                    batches += bool(through)  # not a tick's (windows closed by time)
                    if batches == 2 and through:
                        raise BrokerError("injected: the transaction does not commit")
                    await commit(consumer, through)

                producer.commit_transaction = commit_or_fail  # type: ignore[method-assign,assignment]
                return producer

            worker._make_producer = failing_second_commit  # type: ignore[method-assign]
            stop = asyncio.Event()
            running = asyncio.create_task(worker.run(stop))
            async with asyncio.timeout(30):
                while not running.done():
                    lags = await broker.lag("counter", ["orders"])
                    if lags[0].committed == 40:
                        break
                    await asyncio.sleep(0.05)
            stop.set()
            await running
            assert worker.stats.commit_failures == 1

    asyncio.run(run())
    windows = asyncio.run(read_all(url, "counts", 1))
    assert [(orjson.loads(w.value)["start"] - T0, orjson.loads(w.value)["n"]) for w in windows] == [
        (0, 10),
        (10_000, 10),
        (20_000, 10),
    ]
