"""The embedded broker shared by several processes: wake-up latency, idle cost, groups
split by leases, take-over after SIGKILL, and fencing of a paused member."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import spate
from spate.record import TopicPartition

SCRIPT = str(Path(__file__).with_name("local_processes.py"))
pytestmark = pytest.mark.slow


class Child:
    """A child process whose JSON stdout lines are collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(json.loads(line))

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.lines:
                if predicate(line):
                    return line
            await asyncio.sleep(0.02)
        raise AssertionError(f"child never printed the expected line; got {self.lines}")

    def latest(self, key: str) -> Any:
        values = [line[key] for line in self.lines if key in line]
        return values[-1] if values else None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.returncode is None:
            os.kill(self.process.pid, sig)


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., Any]]:
    children: list[Child] = []

    async def start(*args: str) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            SCRIPT,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        child = Child(process)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill(signal.SIGCONT)
        child.kill()
        await child.process.wait()


async def test_record_reaches_another_process_fast_and_idle_costs_little(
    tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    url = f"local://{tmp_path}/b"
    async with spate.connect(url) as broker:
        await broker.create_topic("t")
        async with broker.consumer(["t"], "g") as consumer:
            assert await consumer.fetch(10, 0.05) == []
            cpu_before, started = time.process_time(), time.monotonic()
            while time.monotonic() - started < 1.0:
                assert await consumer.fetch(10, 0.25) == []
            idle_cpu_share = (time.process_time() - cpu_before) / (time.monotonic() - started)
            assert idle_cpu_share < 0.05, f"an idle consumer used {idle_cpu_share:.1%} of a core"

            count = 60
            producer = await spawn("produce", url, "t", str(count), "0.015")
            received: dict[int, float] = {}
            deadline = time.monotonic() + 20
            while len(received) < count and time.monotonic() < deadline:
                for record in await consumer.fetch(100, 0.5):
                    received[int(record.value)] = time.time()
            assert await producer.process.wait() == 0
    appended = {line["index"]: line["appended"] for line in producer.lines}
    assert sorted(received) == list(range(count))
    latencies = sorted(received[i] - appended[i] for i in range(count))
    p99 = latencies[int(0.99 * (count - 1))]
    assert p99 < 0.05, f"p99 wake-up latency {p99 * 1000:.1f} ms; all: {latencies}"


def _settled(children: list[Child], partitions: int) -> bool:
    shares = [set(child.latest("assignment") or ()) for child in children]
    union = set().union(*shares)
    return all(shares) and union == set(range(partitions)) and sum(map(len, shares)) == partitions


async def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, what
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_members_in_processes_split_and_take_over_after_sigkill(
    tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    ttl_s = 1.0
    url = f"local://{tmp_path}/b?lease_ttl_s={ttl_s}"
    async with spate.connect(url) as broker:
        await broker.create_topic("t", 6)
        members = [await spawn("member", url, "t", "g") for _ in range(3)]
        await _until(lambda: _settled(members, 6), 20, "three members never split 6 partitions")
        assert sorted(len(m.latest("assignment")) for m in members) == [2, 2, 2]
        async with broker.producer() as producer:
            for i in range(600):
                producer.send("t", b"%d" % i, key=b"%d" % i)
            await producer.flush()
        victim, survivors = members[0], members[1:]
        orphaned = set(victim.latest("assignment"))
        victim.kill()
        waited = await _until(
            lambda: _settled(survivors, 6), 20, "survivors never took the partitions over"
        )
        assert waited > ttl_s / 3
        assert orphaned <= {p for m in survivors for p in m.latest("assignment")}

        async def caught_up() -> bool:
            return all(entry.lag == 0 for entry in await broker.lag("g", ["t"]))

        deadline = time.monotonic() + 20
        while not await caught_up():
            assert time.monotonic() < deadline, await broker.lag("g", ["t"])
            await asyncio.sleep(0.1)


async def test_paused_member_cannot_commit_or_publish_over_its_successor(
    tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    url = f"local://{tmp_path}/b?lease_ttl_s=1"
    async with spate.connect(url) as broker:
        await broker.create_topic("source")
        await broker.create_topic("sink")
        async with broker.producer() as producer:
            for i in range(5):
                producer.send("source", b"%d" % i)
            await producer.flush()
        zombie = await spawn("zombie", url, "source", "sink", "g")
        await zombie.wait_for(lambda line: "fetched" in line, 20)
        zombie.kill(signal.SIGSTOP)
        tp = TopicPartition("source", 0)
        async with broker.consumer(["source"], "g") as successor:
            deadline = time.monotonic() + 20
            while tp not in successor.assignment():
                assert time.monotonic() < deadline
                await successor.fetch(10, 0.1)
            await successor.commit({tp: 1})
            zombie.kill(signal.SIGCONT)
            assert zombie.process.stdin is not None
            zombie.process.stdin.write(b"go\n")
            await zombie.process.stdin.drain()
            assert (await zombie.wait_for(lambda line: "commit" in line, 20))["commit"] == (
                "FencedError"
            )
            transaction = await zombie.wait_for(lambda line: "transaction" in line, 20)
            assert transaction["transaction"] == "FencedError"
        (lag,) = await broker.lag("g", ["source"])
        assert lag.committed == 2
        async with broker.consumer(["sink"], "reader") as reader:
            assert await reader.fetch(10, 0.3) == []


async def test_producers_in_two_processes_append_dense_offsets(
    tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    url = f"local://{tmp_path}/b"
    async with spate.connect(url) as broker:
        await broker.create_topic("t")
        producers = [await spawn("produce", url, "t", "150", "0") for _ in range(2)]
        for producer in producers:
            assert await producer.process.wait() == 0
        async with broker.consumer(["t"], "g") as consumer:
            records: list[spate.Record] = []
            while len(records) < 300:
                batch = await consumer.fetch(1000, 1.0)
                assert batch, f"only {len(records)} records arrived"
                records.extend(batch)
    assert [r.offset for r in records] == list(range(300))
    assert sorted(int(r.value) for r in records) == sorted(list(range(150)) * 2)


async def test_flushed_records_survive_sigkill_of_their_producer(
    tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    url = f"local://{tmp_path}/b"
    async with spate.connect(url) as broker:
        await broker.create_topic("t")
    producer = await spawn("produce", url, "t", "100000", "0")
    await producer.wait_for(lambda line: line.get("index", 0) >= 50, 20)
    producer.kill()
    await producer.process.wait()
    acknowledged = {line["index"] for line in producer.lines}
    async with spate.connect(url) as broker, broker.consumer(["t"], "g") as consumer:
        stored: set[int] = set()
        while batch := await consumer.fetch(1000, 0.2):
            stored.update(int(r.value) for r in batch)
    assert acknowledged <= stored
    assert stored == set(range(len(stored)))
