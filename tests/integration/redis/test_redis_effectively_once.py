"""Effectively-once on Redis: deterministic dedup ids survive SIGKILLs of workers.

Each worker process reads a batch, publishes one output per input with the dedup id
``<topic>-<partition>-<offset>-0`` (what DESIGN §6 prescribes for brokers without
transactions), flushes, then commits. One worker kills itself right after a flush,
before its commit; three more SIGKILLs land at random points. A kill between flush and
commit leaves
outputs whose inputs are replayed by the partition's next owner; the publish script
must drop those re-published outputs, so every input's result appears exactly once.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis

from spate.brokers.redis import keys
from spate.record import TopicPartition
from worker_processes import create_topics, produce

pytestmark = pytest.mark.slow

PARTITIONS = 4

WORKER = """
import asyncio
import os
import signal
import sys
import time

import orjson

import spate
from spate.errors import FencedError


async def main(url, source, sink, group, die_after_flushes):
    flushes = 0
    async with spate.connect(url) as broker:
        async with broker.producer() as producer, broker.consumer([source], group) as consumer:
            while True:
                batch = await consumer.fetch(50, 0.5)
                for record in batch:
                    time.sleep(0.0003)
                    dedup = f"{record.topic}-{record.partition}-{record.offset}-0"
                    answer = orjson.dumps({"n": orjson.loads(record.value)["n"]})
                    producer.send(sink, answer, key=record.key, dedup_id=dedup)
                await producer.flush()
                flushes += 1
                if flushes == int(die_after_flushes):
                    os.kill(os.getpid(), signal.SIGKILL)  # outputs out, inputs not committed
                through = {record.topic_partition: record.offset for record in batch}
                try:
                    await consumer.commit(through)
                except FencedError:
                    pass  # the new owner replays this batch; its outputs are dropped


asyncio.run(main(*sys.argv[1:]))
"""


async def _produce(url: str, source: str, sink: str, count: int) -> None:
    await create_topics(url, PARTITIONS, source, sink)
    await produce(url, source, 0, count)


def test_three_sigkills_leave_each_result_exactly_once(redis_url: str, tmp_path: Path) -> None:
    count = 12_000
    tag = uuid.uuid4().hex[:8]
    source, sink, group = f"in{tag}", f"out{tag}", f"g{tag}"
    url = f"{redis_url}?lease_ttl_s=1"
    asyncio.run(_produce(url, source, sink, count))
    (tmp_path / "worker.py").write_text(WORKER)
    admin = redis.Redis.from_url(redis_url)

    def committed() -> int:
        total = 0
        for p in range(PARTITIONS):
            raw = admin.hget(keys.committed(TopicPartition(source, p)), group)
            total += int(raw or 0)
        return total

    def start(die_after_flushes: int = 0) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                str(tmp_path / "worker.py"),
                url,
                source,
                sink,
                group,
                str(die_after_flushes),
            ],
            stderr=subprocess.DEVNULL,
        )

    rng = random.Random(tag)
    procs = [start(die_after_flushes=5), start()]
    try:
        kills = 0
        while kills < 3:
            time.sleep(rng.uniform(0.4, 1.2))
            assert committed() < count, "finished before three kills: make the work slower"
            victim = rng.choice([p for p in procs if p.poll() is None])
            victim.kill()
            victim.wait(5)
            kills += 1
            procs.append(start())
        deadline = time.monotonic() + 60
        while committed() < count:
            assert time.monotonic() < deadline, f"stuck at {committed()} of {count}"
            time.sleep(0.1)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
    results: Counter[int] = Counter()
    for p in range(PARTITIONS):
        for _id, fields in admin.xrange(f"{sink}:{p}") or []:
            assert fields is not None
            results[orjson.loads(fields[b"v"])["n"]] += 1
    assert set(results) == set(range(count))
    duplicated = {n: c for n, c in results.items() if c > 1}
    assert duplicated == {}
