"""Worker processes of one App on NATS, for the tests that kill, pause and restart them.

:class:`Cluster` writes a small App module into a temporary folder and starts real
worker processes (``python -m spate.runtime.supervisor``, what ``spate run`` starts)
on the session's nats-server with a 1 s lease ttl, so a dead or paused member loses
its partitions in about a second. Inputs ``{"n": i}`` are keyed by ``k<i % 40>``; the
handler answers ``{"n": i, "pid": worker pid}`` after a short sleep so kills land
mid-batch. Before answering it appends ``i`` to ``<pid>.trace`` with an unbuffered
write, so a test can tell which inputs each worker processed (a SIGKILL loses none)
and, from the ``pid`` of the answer stored, whose copy the broker kept.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import orjson

import spate
from spate.brokers.nats import NatsBroker
from spate.record import Record, TopicPartition

PARTITIONS = 4
KEYS = 40
LEASE_TTL_S = 1.0

APP_MODULE = """
import os
import time

from spate import App

app = App("natsfaults", batch_size=int(os.environ["FAULT_BATCH"]))
numbers = app.topic(os.environ["FAULT_IN"], partitions=4)
results = app.topic(os.environ["FAULT_OUT"], partitions=4)
DELAY_S = float(os.environ["FAULT_DELAY_S"])
TRACE = os.open(f"{os.getpid()}.trace", os.O_WRONLY | os.O_CREAT | os.O_APPEND)


@app.handler(numbers, group=os.environ["FAULT_GROUP"], output=results)
def answer(value):
    os.write(TRACE, b"%d\\n" % value["n"])
    time.sleep(DELAY_S)
    return {"n": value["n"], "pid": os.getpid()}
"""


async def create_topics(url: str, *topics: str) -> None:
    async with spate.connect(url) as broker:
        for topic in topics:
            await broker.create_topic(topic, PARTITIONS, exist_ok=True)


async def produce(url: str, topic: str, start: int, stop: int, *, keyed: bool = True) -> None:
    """Publish inputs ``{"n": start}`` … ``{"n": stop - 1}``, keyed ``k<n % 40>`` (or
    without keys, spread round-robin)."""
    async with spate.connect(url) as broker, broker.producer() as producer:
        for n in range(start, stop):
            key = b"k%d" % (n % KEYS) if keyed else None
            producer.send(topic, orjson.dumps({"n": n}), key=key)
        await producer.flush()


async def positions(url: str, group: str, topic: str) -> dict[int, int]:
    """partition -> the group's committed position."""
    async with spate.connect(url) as broker:
        rows = await broker.lag(group, [topic])
    return {row.partition: row.committed or 0 for row in rows}


async def read_all(url: str, topic: str) -> list[Record]:
    """Every record of ``topic``, read as a fresh group that never commits."""
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


def answered(records: list[Record]) -> Counter[int]:
    """How many answers each input has among ``records``."""
    return Counter(orjson.loads(r.value)["n"] for r in records)


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


class Cluster:
    """Worker processes of the fault App, with topic and group names of their own."""

    def __init__(
        self, folder: Path, nats_url: str, *, guarantee: str, delay_s: float, batch: int
    ) -> None:
        tag = uuid.uuid4().hex[:8]
        self.folder = folder
        self.url = f"{nats_url}?lease_ttl_s={LEASE_TTL_S}"
        self.guarantee = guarantee
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

    def produce(self, count: int, *, keyed: bool = True) -> None:
        """Create both topics and publish inputs 0 … count - 1."""

        async def fill() -> None:
            await create_topics(self.url, self.inputs, self.outputs)
            await produce(self.url, self.inputs, 0, count, keyed=keyed)

        asyncio.run(fill())

    def start_worker(self, delay_s: float | None = None) -> subprocess.Popen[bytes]:
        """A new worker; ``delay_s`` overrides the handler's sleep for this one."""
        settings = {"broker": self.url, "processing_guarantee": self.guarantee}
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

    def trace_of(self, worker: subprocess.Popen[bytes]) -> Counter[int]:
        """How many times ``worker`` ran the handler on each input."""
        path = self.folder / f"{worker.pid}.trace"
        if not path.exists():
            return Counter()
        return Counter(int(line) for line in path.read_text().split())

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

    def positions(self) -> dict[int, int]:
        """partition -> the group's committed position."""
        return asyncio.run(positions(self.url, self.group, self.inputs))

    def committed(self) -> int:
        return sum(self.positions().values())

    def answers(self) -> list[Record]:
        """Every record of the output topic."""
        return asyncio.run(read_all(self.url, self.outputs))

    def stop_all(self) -> None:
        for worker in self.live():
            worker.kill()
        for worker in self.workers:
            worker.wait(5)
