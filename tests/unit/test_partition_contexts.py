"""The worker keeps one PartitionContext per owned partition (spate.partitions): made
on assignment, dropped on revocation and loss, reachable from the pipeline per
record's partition. The real memory:// broker, whose consumers hold leases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

import spate
from spate.brokers.base import Broker
from spate.clock import ManualClock
from spate.config import Settings
from spate.record import Record, TopicPartition
from spate.runtime.delivery import Delivery
from spate.runtime.worker import Worker
from spate.streams.stages import Pipeline
from spate.streams.stream import Stream
from spate.topic import Topic

IN = [TopicPartition("in", 0), TopicPartition("in", 1)]


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    async with spate.connect(f"memory://{uuid.uuid4().hex}") as b:
        await b.create_topic("in", 2)
        async with b.producer() as producer:
            for i in range(20):
                producer.send("in", b"%d" % i, key=b"k%d" % i)
            await producer.flush()
        yield b


def copying_worker(broker: Broker) -> Worker:
    stream = Stream([Topic.of("in", partitions=2, serde="raw")], "g", "copy")
    stream.peek(lambda value: None)
    settings = Settings(broker="memory://", fetch_timeout_s=0.05)
    return Worker("app", stream, broker, settings, clock=ManualClock())


async def until(condition: Callable[[], bool], running: list[asyncio.Task[None]]) -> None:
    """Wait for ``condition``, failing at once if a worker stopped meanwhile."""
    async with asyncio.timeout(20):
        while not condition():
            done, _ = await asyncio.wait(running, timeout=0.02)
            for task in done:
                task.result()


async def test_contexts_follow_assignment_and_revocation(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = copying_worker(broker), copying_worker(broker)
    unowned: list[set[tuple[str, int]]] = []
    process = Worker._process

    async def checking(
        self: Worker, records: list[Record], pipeline: Pipeline, delivery: Delivery
    ) -> None:
        assert pipeline.partitions is self.partitions
        owned = {(tp.topic, tp.partition) for tp in pipeline.partitions}
        unowned.append({(r.topic, r.partition) for r in records} - owned)
        await process(self, records, pipeline, delivery)

    monkeypatch.setattr(Worker, "_process", checking)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    running = [asyncio.create_task(first.run(stop_first))]
    try:
        await until(lambda: set(first.partitions) == set(IN), running)
        for tp, context in first.partitions.items():
            assert context.tp == tp
            assert context.clock is first.clock
            assert context.epoch is not None, "memory:// consumers hold leases"
            assert context.state == {}
        running.append(asyncio.create_task(second.run(stop_second)))
        await until(lambda: len(first.partitions) == len(second.partitions) == 1, running)
        assert set(first.partitions) | set(second.partitions) == set(IN)
        assert set(first.partitions) == first.stats.assigned
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.gather(*running)
    assert first.partitions == second.partitions == {}
    assert unowned
    assert not any(unowned), "every record's partition has its context"


async def test_a_lost_partition_drops_its_context_at_once(broker: Broker) -> None:
    worker = copying_worker(broker)
    await worker.on_assigned(IN)
    kept = worker.partitions[IN[1]]
    await worker.on_lost([IN[0]])
    assert worker.partitions == {IN[1]: kept}
    await worker.on_revoked([IN[1]])
    assert worker.partitions == {}
