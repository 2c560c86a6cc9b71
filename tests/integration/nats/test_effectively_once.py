"""Effectively-once on NATS and a hard server restart under running workers.

Effectively-once is the adapter's part of DESIGN §6 for a broker without
transactions: a worker publishes each output with ``dedup_id`` built from (source
topic, partition, offset, output index), flushes, then commits. Killed between the
flush and the commit, its successor re-reads the batch and re-publishes the same ids,
which JetStream drops inside the duplicate window. The workers here are small scripts
on the public broker API (the App runtime does not pass dedup ids yet), SIGKILLed at
random points.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest

import spate
from spate.record import Record
from spate.testing.nats_server import NatsServer

pytestmark = pytest.mark.slow

PARTITIONS = 4

WORKER = """
import asyncio, os, sys
import spate

async def main(url, source, target, group):
    async with spate.connect(url) as broker:
        producer = broker.producer()
        async with broker.consumer([source], group) as consumer:
            while True:
                records = await consumer.fetch(50, 0.2)
                if not records:
                    continue
                through = {}
                for r in records:
                    producer.send(target, r.value, key=r.key,
                                  dedup_id=f"{r.topic}:{r.partition}:{r.offset}:0")
                    through[r.topic_partition] = r.offset
                await asyncio.sleep(float(os.environ.get("WORK_S", "0.01")))
                await producer.flush()
                await consumer.commit(through)

asyncio.run(main(*sys.argv[1:5]))
"""


async def produce(url: str, source: str, target: str, count: int) -> None:
    async with spate.connect(url) as broker:
        await broker.create_topic(source, PARTITIONS)
        await broker.create_topic(target, PARTITIONS)
        async with broker.producer() as producer:
            for n in range(count):
                producer.send(source, orjson.dumps({"n": n}), key=b"k%d" % (n % 40))
            await producer.flush()


async def committed(url: str, group: str, topic: str) -> int:
    async with spate.connect(url) as broker:
        return sum(row.committed or 0 for row in await broker.lag(group, [topic]))


async def read_all(url: str, topic: str) -> list[Record]:
    async with spate.connect(url) as broker:
        records: list[Record] = []
        async with broker.consumer([topic], f"reader-{uuid.uuid4().hex}") as consumer:
            while True:
                batch = await consumer.fetch(5000, 0.2)
                records.extend(batch)
                if not batch and len(consumer.assignment()) == PARTITIONS:
                    return records


def wait_committed(url: str, group: str, topic: str, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while asyncio.run(committed(url, group, topic)) != count:
        assert time.monotonic() < deadline, "not every input was committed in time"
        time.sleep(0.2)


def test_outputs_exactly_once_after_three_kills(tmp_path: Path, nats_url: str) -> None:
    count = 3000
    tag = uuid.uuid4().hex[:8]
    source, target, group = f"eoin{tag}", f"eoout{tag}", f"eo{tag}"
    url = f"{nats_url}?lease_ttl_s=1"
    asyncio.run(produce(url, source, target, count))
    script = tmp_path / "eo_worker.py"
    script.write_text(WORKER)
    workers: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        workers.append(
            subprocess.Popen(
                [sys.executable, str(script), url, source, target, group],
                stderr=(tmp_path / f"w{len(workers)}.log").open("wb"),
            )
        )

    try:
        start()
        start()
        rng = random.Random()
        for _ in range(3):
            time.sleep(rng.uniform(0.3, 0.8))
            victim = rng.choice([w for w in workers if w.poll() is None])
            victim.send_signal(signal.SIGKILL)
            victim.wait(5)
            start()
        wait_committed(url, group, source, count, 60)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait(5)
    seen = Counter(orjson.loads(r.value)["n"] for r in asyncio.run(read_all(url, target)))
    assert set(seen) == set(range(count))
    assert not {n: c for n, c in seen.items() if c != 1}


APP_MODULE = """
import os
from spate import App

app = App("natsrestart", batch_size=200)
numbers = app.topic(os.environ["R_IN"], partitions=4)
results = app.topic(os.environ["R_OUT"], partitions=4)


@app.handler(numbers, group=os.environ["R_GROUP"], output=results)
def answer(value):
    return {"n": value["n"]}
"""


def test_workers_ride_out_a_hard_server_restart(tmp_path: Path, own_server: NatsServer) -> None:
    count = 20_000
    tag = uuid.uuid4().hex[:8]
    source, target, group = f"rin{tag}", f"rout{tag}", f"r{tag}"
    url = f"{own_server.url}?lease_ttl_s=1"
    asyncio.run(produce(url, source, target, count // 2))
    (tmp_path / "restartapp.py").write_text(APP_MODULE)
    env = {**os.environ, "R_IN": source, "R_OUT": target, "R_GROUP": group}
    settings = orjson.dumps({"broker": url}).decode()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "spate.runtime.supervisor", "restartapp:app", settings],
            cwd=tmp_path,
            env=env,
            stderr=(tmp_path / f"w{i}.log").open("wb"),
        )
        for i in range(2)
    ]
    try:
        deadline = time.monotonic() + 30
        while asyncio.run(committed(url, group, source)) < 1000:
            assert time.monotonic() < deadline, "no progress before the restart"
            time.sleep(0.1)
        own_server.kill()
        time.sleep(1.5)
        own_server.start()
        asyncio.run(produce_more(url, source, count // 2, count))
        wait_committed(url, group, source, count, 90)
        assert all(w.poll() is None for w in workers), "a worker died in the outage"
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(15) == 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait(5)
    answered = {orjson.loads(r.value)["n"] for r in asyncio.run(read_all(url, target))}
    assert answered == set(range(count))


async def produce_more(url: str, source: str, start: int, stop: int) -> None:
    async with spate.connect(url) as broker, broker.producer() as producer:
        for n in range(start, stop):
            producer.send(source, orjson.dumps({"n": n}), key=b"k%d" % (n % 40))
        await producer.flush()
