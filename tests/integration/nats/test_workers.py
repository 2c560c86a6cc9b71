"""Worker processes of one App on NATS: sharing, SIGKILL failover, a paused zombie,
per-key order across a failover.

Real ``spate.runtime.supervisor`` worker processes (what ``spate run`` starts) on the
session's nats-server, with a 1 s lease ttl. Inputs ``{"n": i}`` are keyed by
``k<i % 40>``; the handler answers ``{"n": i, "pid": worker pid}`` after a short sleep
so kills land mid-batch. Each test uses its own topic and group names.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

import spate
from spate.brokers.nats import NatsBroker
from spate.record import Record, TopicPartition

pytestmark = pytest.mark.slow

PARTITIONS = 4
KEYS = 40

APP_MODULE = """
import os
import time

from spate import App

app = App("natsfaults", batch_size=int(os.environ["FAULT_BATCH"]))
numbers = app.topic(os.environ["FAULT_IN"], partitions=4)
results = app.topic(os.environ["FAULT_OUT"], partitions=4)
DELAY_S = float(os.environ["FAULT_DELAY_S"])


@app.handler(numbers, group=os.environ["FAULT_GROUP"], output=results)
def answer(value):
    time.sleep(DELAY_S)
    return {"n": value["n"], "pid": os.getpid()}
"""


class Cluster:
    def __init__(self, folder: Path, nats_url: str, *, delay_s: float, batch: int) -> None:
        tag = uuid.uuid4().hex[:8]
        self.folder = folder
        self.url = f"{nats_url}?lease_ttl_s=1"
        self.inputs, self.outputs, self.group = f"in{tag}", f"out{tag}", f"g{tag}"
        self.env = {
            **os.environ,
            "FAULT_DELAY_S": str(delay_s),
            "FAULT_BATCH": str(batch),
            "FAULT_IN": self.inputs,
            "FAULT_OUT": self.outputs,
            "FAULT_GROUP": self.group,
        }
        self.workers: list[subprocess.Popen[bytes]] = []
        (folder / "natsfaultapp.py").write_text(APP_MODULE)

    def start_worker(self, delay_s: float | None = None) -> subprocess.Popen[bytes]:
        """A new worker; ``delay_s`` overrides the handler's sleep for this one."""
        settings = {"broker": self.url, "processing_guarantee": "at-least-once"}
        env = self.env if delay_s is None else {**self.env, "FAULT_DELAY_S": str(delay_s)}
        log = (self.folder / f"worker-{len(self.workers)}.log").open("wb")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spate.runtime.supervisor",
                "natsfaultapp:app",
                orjson.dumps(settings).decode(),
            ],
            cwd=self.folder,
            env=env,
            stderr=log,
        )
        log.close()
        self.workers.append(worker)
        return worker

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def log_of(self, worker: subprocess.Popen[bytes]) -> str:
        return (self.folder / f"worker-{self.workers.index(worker)}.log").read_text()

    async def _owners(self) -> dict[int, int]:
        now_ms = time.time_ns() // 1_000_000
        async with spate.connect(self.url) as broker:
            assert isinstance(broker, NatsBroker)
            owners: dict[int, int] = {}
            for p in range(PARTITIONS):
                lease = await broker.leases.lease(self.group, TopicPartition(self.inputs, p))
                if lease is not None and lease[0] and lease[2] > now_ms:
                    owners[p] = int(lease[0].split("-")[-2])
            return owners

    def owners(self) -> dict[int, int]:
        """partition -> pid of the member holding its unexpired lease."""
        return asyncio.run(self._owners())

    async def _positions(self) -> dict[int, int]:
        async with spate.connect(self.url) as broker:
            rows = await broker.lag(self.group, [self.inputs])
        return {row.partition: row.committed or 0 for row in rows}

    def positions(self) -> dict[int, int]:
        """partition -> the group's committed position."""
        return asyncio.run(self._positions())

    def committed(self) -> int:
        return sum(self.positions().values())

    def stop_all(self) -> None:
        for worker in self.live():
            worker.kill()
        for worker in self.workers:
            worker.wait(5)


@pytest.fixture
def cluster_factory(tmp_path: Path, nats_url: str) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(*, delay_s: float = 0.0, batch: int = 200) -> Cluster:
        cluster = Cluster(tmp_path, nats_url, delay_s=delay_s, batch=batch)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop_all()


async def produce_inputs(cluster: Cluster, count: int) -> None:
    async with spate.connect(cluster.url) as broker:
        await broker.create_topic(cluster.inputs, PARTITIONS)
        await broker.create_topic(cluster.outputs, PARTITIONS)
        async with broker.producer() as producer:
            for n in range(count):
                producer.send(cluster.inputs, orjson.dumps({"n": n}), key=b"k%d" % (n % KEYS))
            await producer.flush()


async def read_all(url: str, topic: str) -> list[Record]:
    async with spate.connect(url) as broker:
        records: list[Record] = []
        async with broker.consumer([topic], f"reader-{uuid.uuid4().hex}") as consumer:
            while True:
                batch = await consumer.fetch(5000, 0.2)
                records.extend(batch)
                if not batch and len(consumer.assignment()) == PARTITIONS:
                    return records


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def outputs(cluster: Cluster) -> list[Record]:
    return asyncio.run(read_all(cluster.url, cluster.outputs))


def assert_per_key_order(records: list[Record]) -> None:
    """Per key, the first answer to each input comes in input order (replays after a
    failover repeat a suffix, they never reorder)."""
    firsts: dict[int, list[int]] = defaultdict(list)
    seen: set[int] = set()
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        n = orjson.loads(record.value)["n"]
        if n not in seen:
            seen.add(n)
            firsts[n % KEYS].append(n)
    for key, ns in firsts.items():
        assert ns == sorted(ns), f"key k{key} out of order"


def test_two_workers_share_four_partitions_and_survive_a_kill(
    cluster_factory: Callable[..., Cluster],
) -> None:
    count = 50_000
    cluster = cluster_factory(delay_s=0.00002, batch=500)
    asyncio.run(produce_inputs(cluster, count))
    first, second = cluster.start_worker(), cluster.start_worker()

    def split_two_ways() -> bool:
        owners = cluster.owners()
        return len(owners) == PARTITIONS and sorted(Counter(owners.values()).values()) == [2, 2]

    wait_until(split_two_ways, 20, "4 partitions split 2-2 over 2 workers")
    assert set(cluster.owners().values()) == {first.pid, second.pid}
    wait_until(lambda: cluster.committed() > 2000, 30, "progress")
    first.send_signal(signal.SIGKILL)
    first.wait(5)

    def moved() -> bool:
        owners = cluster.owners()
        return len(owners) == PARTITIONS and set(owners.values()) == {second.pid}

    wait_until(moved, 15, "the killed worker's partitions to move")
    wait_until(lambda: cluster.committed() == count, 60, "every input committed")
    records = outputs(cluster)
    assert {orjson.loads(r.value)["n"] for r in records} == set(range(count))
    assert_per_key_order(records)
    second.send_signal(signal.SIGTERM)
    assert second.wait(15) == 0


def test_paused_zombie_cannot_commit_over_its_replacement(
    cluster_factory: Callable[..., Cluster],
) -> None:
    count = 4000
    cluster = cluster_factory(delay_s=0.0005, batch=50)
    asyncio.run(produce_inputs(cluster, count))
    # The zombie spends nearly all its time inside 0.5 s batches, so the pause lands
    # mid-batch: after SIGCONT it finishes the batch and tries to commit it.
    zombie, other = cluster.start_worker(delay_s=0.01), cluster.start_worker()

    def split() -> bool:
        owners = cluster.owners()
        return len(owners) == PARTITIONS and set(owners.values()) == {zombie.pid, other.pid}

    wait_until(split, 20, "two workers sharing the partitions")
    time.sleep(0.3)
    zombie.send_signal(signal.SIGSTOP)

    def replaced() -> bool:
        owners = cluster.owners()
        return len(owners) == PARTITIONS and set(owners.values()) == {other.pid}

    wait_until(replaced, 15, "the replacement owning every partition")
    time.sleep(0.5)  # the replacement re-reads the zombie's batch and commits it
    before = cluster.positions()
    zombie.send_signal(signal.SIGCONT)
    # Whatever the zombie does after waking — finish its stale batch, commit it — the
    # group's committed positions never go back behind what the replacement committed.
    deadline = time.monotonic() + 15
    while "event=lost" not in cluster.log_of(zombie):
        assert time.monotonic() < deadline, "the zombie never noticed it lost its leases"
        now = cluster.positions()
        assert all(now[p] >= before[p] for p in before), (before, now)
    time.sleep(0.5)
    now = cluster.positions()
    assert all(now[p] >= before[p] for p in before), (before, now)
    zombie.send_signal(signal.SIGTERM)  # done with it; its slow batches would only take time
    assert zombie.wait(15) == 0
    wait_until(lambda: cluster.committed() == count, 60, "every input committed")
    records = outputs(cluster)
    assert {orjson.loads(r.value)["n"] for r in records} == set(range(count))
    assert_per_key_order(records)
    for worker in cluster.live():
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
