"""Effectively-once at the broker API, and a hard server restart under running workers.

The first test is the adapter's part of effectively-once (DESIGN §6) without the App
runtime: small worker scripts on the public broker API publish each output with a
``dedup_id`` built from (source topic, partition, offset, output index), flush, then
commit. Killed between the flush and the commit, a worker leaves the batch to its
successor, which re-publishes the same ids; JetStream drops those copies inside the
duplicate window. The same guarantee through the App runtime is
``test_nats_app_effectively_once.py``.
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
from pathlib import Path
from typing import Any

import orjson
import pytest

from nats_workers import PARTITIONS
from spate.testing.nats_server import NatsServer
from worker_processes import (
    answered,
    create_topics,
    duplicated,
    positions,
    produce,
    read_all,
    wait_until,
)

pytestmark = pytest.mark.slow

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


async def fill(url: str, source: str, target: str, count: int) -> None:
    await create_topics(url, PARTITIONS, source, target)
    await produce(url, source, 0, count)


def spawn(command: list[str], log: Path, **options: Any) -> subprocess.Popen[bytes]:
    """``command`` with its stderr in ``log``: the child writes its own copy of the file,
    and this process closes its copy at once instead of leaking it."""
    with log.open("wb") as stderr:
        return subprocess.Popen(command, stderr=stderr, **options)


def committed(url: str, group: str, topic: str) -> int:
    return sum(asyncio.run(positions(url, group, topic)).values())


def test_outputs_exactly_once_after_three_kills(tmp_path: Path, nats_url: str) -> None:
    count = 3000
    tag = uuid.uuid4().hex[:8]
    source, target, group = f"eoin{tag}", f"eoout{tag}", f"eo{tag}"
    url = f"{nats_url}?lease_ttl_s=1"
    asyncio.run(fill(url, source, target, count))
    script = tmp_path / "eo_worker.py"
    script.write_text(WORKER)
    workers: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        command = [sys.executable, str(script), url, source, target, group]
        workers.append(spawn(command, tmp_path / f"w{len(workers)}.log"))

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
        wait_until(lambda: committed(url, group, source) == count, 60, "every input committed")
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait(5)
    seen = answered(asyncio.run(read_all(url, target, PARTITIONS)))
    assert set(seen) == set(range(count))
    assert not duplicated(seen)


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
    asyncio.run(fill(url, source, target, count // 2))
    (tmp_path / "restartapp.py").write_text(APP_MODULE)
    env = {**os.environ, "R_IN": source, "R_OUT": target, "R_GROUP": group}
    settings = orjson.dumps({"broker": url}).decode()
    command = [sys.executable, "-m", "spate.cli.worker", "restartapp:app", settings]
    workers = [spawn(command, tmp_path / f"w{i}.log", cwd=tmp_path, env=env) for i in range(2)]
    try:
        wait_until(lambda: committed(url, group, source) >= 1000, 30, "progress before the restart")
        own_server.kill()
        time.sleep(1.5)
        own_server.start()
        asyncio.run(produce(url, source, count // 2, count))
        wait_until(lambda: committed(url, group, source) == count, 90, "every input committed")
        assert all(w.poll() is None for w in workers), "a worker died in the outage"
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(15) == 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait(5)
    assert set(answered(asyncio.run(read_all(url, target, PARTITIONS)))) == set(range(count))
