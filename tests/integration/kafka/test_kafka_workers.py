"""Worker processes of a real App on Apache Kafka: SIGKILL takeover (at-least-once),
exactly-once through repeated SIGKILLs, and a SIGSTOPped zombie.

Workers are the processes ``spate run`` starts (:mod:`worker_processes`);
librdkafka properties reach them through the broker URL's query. Short session and
transaction timeouts (the test broker allows them) keep each takeover to seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import orjson
import pytest

import worker_processes
from dead_letter_kills import kill_while_setting_aside
from spate.brokers.kafka import KafkaBroker
from spate.record import Record
from spate.testing.kafka_server import ServerProcess
from worker_processes import duplicated

pytestmark = pytest.mark.slow

GROUP_QUERY = (
    "session.timeout.ms=2000&heartbeat.interval.ms=300&max.poll.interval.ms=3000"
    "&transaction.timeout.ms=6000"
)
SLOW_QUERY = "session.timeout.ms=30000&heartbeat.interval.ms=1000&transaction.timeout.ms=30000"
"""Timeouts a restarted instance must not wait out."""


class Workers(worker_processes.Workers):
    """Worker processes of the copy App on the test Kafka, names of their own."""

    def __init__(
        self,
        folder: Path,
        server: ServerProcess,
        guarantee: str,
        partitions: int,
        batch: int,
        delay_s: float,
    ) -> None:
        super().__init__(
            folder,
            f"{server.url}?{GROUP_QUERY}",
            app="kafkaworkers",
            partitions=partitions,
            guarantee=guarantee,
            delay_s=delay_s,
            batch=batch,
        )


@pytest.fixture
async def make_workers(
    tmp_path: Path, kafka_server: ServerProcess
) -> AsyncIterator[Callable[..., Workers]]:
    made: list[Workers] = []

    def make(
        guarantee: str, *, partitions: int = 4, batch: int = 500, delay_s: float = 0.0
    ) -> Workers:
        workers = Workers(tmp_path, kafka_server, guarantee, partitions, batch, delay_s)
        made.append(workers)
        return workers

    yield make
    for workers in made:
        workers.stop_all()


async def produce_inputs(broker: KafkaBroker, workers: Workers, count: int) -> None:
    await broker.create_topic(workers.inputs, workers.partitions)
    await broker.create_topic(workers.outputs, workers.partitions)
    async with broker.producer() as producer:
        for n in range(count):
            producer.send(workers.inputs, orjson.dumps({"n": n}), key=b"k%d" % (n % 40))
        await producer.flush(60)


async def committed(broker: KafkaBroker, workers: Workers) -> int:
    return sum(entry.committed or 0 for entry in await broker.lag(workers.group, [workers.inputs]))


async def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await condition():  # type: ignore[misc]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


class Reader:
    """A read_committed reader of the output topic, running beside the workers."""

    def __init__(self, broker: KafkaBroker, topic: str) -> None:
        self.records: list[Record] = []
        self._broker = broker
        self._topic = topic
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        """One partition reader each (no group), fetched in turn."""
        partitions = (await self._broker.describe_topic(self._topic)).partitions
        async with contextlib.AsyncExitStack() as stack:
            readers = [
                await stack.enter_async_context(self._broker.reader(self._topic, p))
                for p in range(partitions)
            ]
            while not self._stop.is_set():
                for reader in readers:
                    self.records.extend(await reader.fetch(5000, 0.05))

    async def read_until(self, count: int, timeout_s: float) -> list[int]:
        await wait_for(self._has(count), timeout_s, f"{count} outputs")
        await asyncio.sleep(1.0)
        self._stop.set()
        await self._task
        return [orjson.loads(r.value)["n"] for r in self.records]

    def _has(self, count: int) -> Callable[[], object]:
        async def check() -> bool:
            if self._task.done():
                self._task.result()
            return len(self.records) >= count

        return check


async def test_at_least_once_survives_a_sigkill(
    kafka: KafkaBroker, make_workers: Callable[..., Workers]
) -> None:
    count = 50_000
    workers = make_workers("at-least-once")
    await produce_inputs(kafka, workers, count)
    first, second = workers.start(), workers.start()
    await wait_for(lambda: _above(kafka, workers, count // 5), 60, "20% progress")
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    await wait_for(lambda: _above(kafka, workers, count), 90, "every input committed")
    reader = Reader(kafka, workers.outputs)
    outputs = await reader.read_until(count, 60)
    assert set(outputs) == set(range(count)), workers.logs()[-3000:]
    second.send_signal(signal.SIGTERM)
    assert second.wait(20) == 0


@pytest.mark.parametrize("partitions", [4, 1])
async def test_exactly_once_through_three_sigkills_per_worker(
    kafka: KafkaBroker, make_workers: Callable[..., Workers], partitions: int
) -> None:
    """Two workers copy the inputs in transactions; each is SIGKILLed and restarted
    three times after 20% progress. A read_committed reader running throughout and
    one reading at the end both see every input exactly once (in order with one
    partition). The records take a sleep each, or the workers would copy them all
    within their first commit interval."""
    count = 30_000
    workers = make_workers("exactly-once", partitions=partitions, delay_s=0.0001)
    await produce_inputs(kafka, workers, count)
    live = [workers.start(), workers.start()]
    concurrent = Reader(kafka, workers.outputs)
    kills_at: list[int] = []
    for kill in range(6):
        threshold = count * (20 + 8 * kill) // 100
        await wait_for(partial(_above, kafka, workers, threshold), 90, f"{threshold} done")
        victim = live[kill % 2]
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        kills_at.append(await committed(kafka, workers))
        live[kill % 2] = workers.start()
    assert kills_at[-1] < count, f"every kill must land mid-stream: {kills_at}"
    await wait_for(lambda: _above(kafka, workers, count), 120, "every input committed")
    print(f"committed at the kills: {kills_at}")
    during = await concurrent.read_until(count, 60)
    after = await Reader(kafka, workers.outputs).read_until(count, 60)
    for seen in (during, after):
        duplicates = list(duplicated(Counter(seen)))
        assert not duplicates, f"{len(duplicates)} duplicates, e.g. {duplicates[:5]}"
        assert set(seen) == set(range(count))
        if partitions == 1:
            assert seen == list(range(count))
    for proc in live:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


async def _above(broker: KafkaBroker, workers: Workers, threshold: int) -> bool:
    return await committed(broker, workers) >= threshold


async def test_a_paused_zombie_cannot_commit_or_publish_its_stale_batch(
    kafka: KafkaBroker, make_workers: Callable[..., Workers]
) -> None:
    """SIGSTOP one exactly-once worker mid-batch for longer than max.poll.interval.ms
    (and the transaction timeout); the other takes its partitions over. Resumed, the
    zombie's stale transaction is refused: no output is duplicated, none is lost."""
    count = 6_000
    workers = make_workers("exactly-once", batch=100, delay_s=0.001)
    await produce_inputs(kafka, workers, count)
    zombie, survivor = workers.start(), workers.start()
    await wait_for(lambda: _above(kafka, workers, count // 5), 60, "20% progress")
    zombie.send_signal(signal.SIGSTOP)
    stopped_at = await committed(kafka, workers)
    await asyncio.sleep(8)
    assert await committed(kafka, workers) > stopped_at, "the survivor took over"
    zombie.send_signal(signal.SIGCONT)
    await wait_for(lambda: _above(kafka, workers, count), 90, "every input committed")
    outputs = await Reader(kafka, workers.outputs).read_until(count, 60)
    duplicates = list(duplicated(Counter(outputs)))
    assert not duplicates, f"{len(duplicates)} duplicates, e.g. {duplicates[:5]}"
    assert set(outputs) == set(range(count))
    zombie_log = workers.logs()
    assert "event=transaction_aborted" in zombie_log or "event=lost" in zombie_log
    for proc in (zombie, survivor):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


async def test_bytes_that_are_not_json_stop_spate_run_naming_the_record(
    kafka: KafkaBroker, make_workers: Callable[..., Workers]
) -> None:
    """As on the embedded broker: the processor stops with an error naming topic,
    partition and offset, and never commits past the bad record."""
    workers = make_workers("at-least-once")
    await produce_inputs(kafka, workers, 8)
    async with kafka.producer() as producer:
        producer.send(workers.inputs, b"\xffnot json", partition=3)
    bad_offset = next(
        entry.end_offset - 1
        for entry in await kafka.lag(workers.group, [workers.inputs])
        if entry.partition == 3
    )
    run = workers.spate_run()
    _, stderr = await asyncio.to_thread(run.communicate, timeout=30)
    assert run.returncode == 1, stderr.decode()
    last_line = stderr.decode().strip().splitlines()[-1]
    assert last_line.startswith(
        f"error: cannot decode record at topic={workers.inputs!r} partition=3 offset={bad_offset}"
    ), last_line
    lag = {e.partition: e for e in await kafka.lag(workers.group, [workers.inputs])}
    assert (lag[3].committed or 0) <= bad_offset


async def test_a_restarted_instance_takes_over_at_once(
    kafka: KafkaBroker, make_workers: Callable[..., Workers]
) -> None:
    """With an instance id, a worker SIGKILLed mid-transaction and started again gets
    its partitions back without waiting out the session (static membership) and
    aborts the transaction its predecessor left open without waiting out the
    transaction timeout. Both are 30 s here; the new worker resumes in a few."""
    count = 30_000
    workers = make_workers("exactly-once", partitions=1, batch=200, delay_s=0.0003)
    workers.url = workers.url.replace(GROUP_QUERY, SLOW_QUERY)
    workers.env["SPATE_INSTANCE_ID"] = f"instance-{uuid.uuid4().hex[:6]}"
    await produce_inputs(kafka, workers, count)
    first = workers.start()
    await wait_for(lambda: _above(kafka, workers, count // 5), 60, "20% progress")
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    killed_at = await committed(kafka, workers)
    restarted_at = asyncio.get_running_loop().time()
    again = workers.start()
    await wait_for(lambda: _above(kafka, workers, killed_at + 1000), 25, "progress after restart")
    resumed_s = asyncio.get_running_loop().time() - restarted_at
    assert resumed_s < 15, f"took {resumed_s:.1f}s: the predecessor was waited out"
    await wait_for(lambda: _above(kafka, workers, count), 90, "every input committed")
    outputs = await Reader(kafka, workers.outputs).read_until(count, 60)
    assert outputs == list(range(count))
    again.send_signal(signal.SIGTERM)
    assert again.wait(20) == 0


@pytest.mark.parametrize("via", [(), (0.5,)], ids=["in-place", "retry-topic"])
async def test_kill_9_neither_loses_nor_duplicates_a_dead_letter_under_exactly_once(
    make_workers: Callable[..., Workers], via: tuple[float, ...]
) -> None:
    """Issue 11 on Apache Kafka: dead letters and retry moves are in their batch's
    transaction, so a worker SIGKILLed after writing them but before committing
    leaves nothing behind that read_committed readers see (dead_letter_kills)."""
    workers = make_workers("exactly-once", partitions=2, batch=100, delay_s=0.0005)
    await asyncio.to_thread(kill_while_setting_aside, workers, 3_000, 50, via, 150)
