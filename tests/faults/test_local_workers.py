"""Worker processes of one App on local://: sharing, kills, pauses, graceful stops.

Each test writes a small App module into a temporary folder and starts real worker
processes (the hidden entry point ``spate run`` uses) on a real ``local://`` broker
there, with a short lease ttl so a dead or paused member loses its partitions in
about a second. Inputs are ``{"n": i}`` records; the App's handler answers each with
``{"n": i, "pid": worker pid}`` after a short sleep, so kills land mid-batch.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

import spate
from worker_processes import Workers, answered, duplicated, wait_until

pytestmark = pytest.mark.slow

PARTITIONS = 6
LEASE_TTL_S = 1.0


class Cluster(Workers):
    """Worker processes of the App sharing one local:// broker directory."""

    def __init__(self, folder: Path, guarantee: str, *, delay_s: float, batch: int) -> None:
        super().__init__(
            folder,
            f"local://{folder / 'broker'}?lease_ttl_s={LEASE_TTL_S}",
            app="faults",
            names=("numbers", "results", "doubler"),
            partitions=PARTITIONS,
            guarantee=guarantee,
            delay_s=delay_s,
            batch=batch,
        )

    def owners(self) -> dict[int, int]:
        """partition -> pid of the member holding its unexpired lease."""
        now_ms = time.time_ns() // 1_000_000
        with sqlite3.connect(self.folder / "broker" / "spate.db", timeout=5) as conn:
            rows = conn.execute(
                "SELECT partition, member FROM leases WHERE grp = 'doubler' "
                "AND topic = 'numbers' AND member IS NOT NULL AND expires_ms > ?",
                (now_ms,),
            ).fetchall()
        return {partition: int(member.split("-")[-2]) for partition, member in rows}


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(
        guarantee: str = "at-least-once", *, delay_s: float = 0.001, batch: int = 50
    ) -> Cluster:
        cluster = Cluster(tmp_path, guarantee, delay_s=delay_s, batch=batch)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop_all()


async def produce_inputs(url: str, count: int) -> None:
    async with spate.connect(url) as broker:
        await broker.create_topic("numbers", PARTITIONS, exist_ok=True)
        await broker.create_topic("results", PARTITIONS, exist_ok=True)
        producer = broker.producer()
        async with producer:
            for n in range(count):
                producer.send("numbers", orjson.dumps({"n": n}), partition=n % PARTITIONS)
            await producer.flush()


def test_three_workers_share_partitions_and_survive_a_kill(
    cluster_factory: Callable[..., Cluster],
) -> None:
    count = 3000
    cluster = cluster_factory("at-least-once")
    asyncio.run(produce_inputs(cluster.url, count))
    for _ in range(3):
        cluster.start()
    pids = {w.pid for w in cluster.procs}

    def split_three_ways() -> bool:
        owners = cluster.owners()
        return len(owners) == PARTITIONS and sorted(Counter(owners.values()).values()) == [2, 2, 2]

    wait_until(split_three_ways, 10, "6 partitions split 2-2-2 over 3 workers")
    owners = cluster.owners()
    assert set(owners.values()) == pids
    victim = cluster.procs[0]
    victim_partitions = {p for p, pid in owners.items() if pid == victim.pid}
    victim.send_signal(signal.SIGKILL)
    victim.wait(5)

    def moved() -> bool:
        now = cluster.owners()
        return len(now) == PARTITIONS and victim.pid not in now.values()

    wait_until(moved, 10, "the killed worker's partitions to move")
    survivors = {w.pid for w in cluster.live()}
    assert {cluster.owners()[p] for p in victim_partitions} <= survivors
    wait_until(lambda: cluster.committed() == count, 20, "every input committed")
    seen = answered(cluster.answers())
    assert set(seen) == set(range(count))  # at-least-once: nothing lost
    for worker in cluster.live():
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0


def test_exactly_once_holds_after_three_kills(cluster_factory: Callable[..., Cluster]) -> None:
    count = 3000
    cluster = cluster_factory("exactly-once", delay_s=0.0015, batch=40)
    asyncio.run(produce_inputs(cluster.url, count))
    for _ in range(3):
        cluster.start()
    rng = random.Random()
    for _ in range(3):
        time.sleep(rng.uniform(0.3, 0.8))
        victim = rng.choice(cluster.live())
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        cluster.start()
    assert cluster.committed() < count, "kills after the end"
    wait_until(lambda: cluster.committed() == count, 30, "every input committed")
    seen = answered(cluster.answers())
    assert set(seen) == set(range(count))
    assert not duplicated(seen)
    for worker in cluster.live():
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0


def test_paused_member_cannot_commit_or_publish_over_its_replacement(
    cluster_factory: Callable[..., Cluster],
) -> None:
    count = 2400
    cluster = cluster_factory("exactly-once", delay_s=0.0005, batch=50)
    asyncio.run(produce_inputs(cluster.url, count))
    # The zombie spends nearly all its time inside 0.5 s batches, so the pause lands
    # mid-batch: after SIGCONT it finishes the batch and tries to commit it.
    zombie = cluster.start(delay_s=0.01)
    other = cluster.start()

    def split() -> bool:
        owners = cluster.owners()
        return len(owners) == PARTITIONS and set(owners.values()) == {zombie.pid, other.pid}

    wait_until(split, 10, "two workers sharing the partitions")
    time.sleep(0.2)
    zombie.send_signal(signal.SIGSTOP)

    def replaced() -> bool:
        owners = cluster.owners()
        return len(owners) == PARTITIONS and set(owners.values()) == {other.pid}

    wait_until(replaced, 10, "the replacement owning every partition")
    time.sleep(0.3)  # the replacement re-reads the zombie's batch and commits it
    zombie.send_signal(signal.SIGCONT)
    wait_until(lambda: "event=lost" in cluster.log_of(zombie), 10, "the zombie to notice")
    aborted = "event=transaction_aborted" in cluster.log_of(zombie)
    zombie.send_signal(signal.SIGTERM)  # done with it; its slow batches would only take time
    assert zombie.wait(10) == 0
    wait_until(lambda: cluster.committed() == count, 30, "every input committed")
    seen = answered(cluster.answers())
    assert set(seen) == set(range(count))
    assert not duplicated(seen)
    other.send_signal(signal.SIGTERM)
    assert other.wait(10) == 0
    assert aborted


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_mid_stream_exits_zero_with_commits_matching_outputs(
    cluster_factory: Callable[..., Cluster], workers: int
) -> None:
    count = 6000
    cluster = cluster_factory("at-least-once", delay_s=0.001, batch=50)
    asyncio.run(produce_inputs(cluster.url, count))
    with cluster.spate_run("--workers", str(workers)) as parent:  # closes its stderr pipe
        try:
            wait_until(lambda: cluster.committed() > 500, 15, "progress")
            parent.send_signal(signal.SIGTERM)
            assert parent.wait(10) == 0
        finally:
            if parent.poll() is None:
                parent.kill()
    offsets = cluster.positions()
    assert sum(offsets.values()) < count, "the stop should land mid-stream"
    expected = Counter(n for n in range(count) if n // PARTITIONS < offsets[n % PARTITIONS])
    assert answered(cluster.answers()) == expected  # each committed input answered once, no more


def run_eight_inputs(cluster: Cluster, *args: str) -> str:
    """``spate run ARGS`` until 8 inputs are committed, then SIGTERM: its stderr."""
    asyncio.run(produce_inputs(cluster.url, 8))
    with cluster.spate_run(*args) as parent:
        try:
            wait_until(lambda: cluster.committed() == 8, 15, "every input committed")
            parent.send_signal(signal.SIGTERM)
            _, stderr = parent.communicate(timeout=15)
        finally:
            if parent.poll() is None:
                parent.kill()
    assert parent.returncode == 0, stderr.decode()
    return stderr.decode()


def test_each_worker_gets_an_instance_id_of_its_own(
    cluster_factory: Callable[..., Cluster],
) -> None:
    stderr = run_eight_inputs(cluster_factory(), "--workers", "2", "--instance-id", "web")
    started = [line for line in stderr.splitlines() if "event=app_start" in line]
    assert sorted(line.rsplit("instance=", 1)[1] for line in started) == ["web-0", "web-1"]


def test_spate_workers_in_the_environment_starts_that_many_workers(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory()
    cluster.env["SPATE_WORKERS"] = "2"
    stderr = run_eight_inputs(cluster)
    assert "event=workers_started target=workerapp:app workers=2 " in stderr


def test_a_sigterm_while_the_workers_start_is_a_clean_exit(
    cluster_factory: Callable[..., Cluster],
) -> None:
    """A worker still importing has no handler of its own yet, so the forwarded SIGTERM
    ends it by itself: it had nothing to drain, and ``spate run`` exits 0."""
    cluster = cluster_factory()
    with cluster.spate_run("--workers", "2") as parent:
        try:
            assert parent.stderr is not None
            first = parent.stderr.readline()  # the workers were just spawned
            assert b"event=workers_started" in first, first
            parent.send_signal(signal.SIGTERM)
            _, stderr = parent.communicate(timeout=15)
        finally:
            if parent.poll() is None:
                parent.kill()
    assert parent.returncode == 0, (first + stderr).decode()


def test_bytes_that_are_not_json_stop_spate_run_naming_the_record(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory("at-least-once")

    async def poison() -> None:
        await produce_inputs(cluster.url, 2 * PARTITIONS)
        async with spate.connect(cluster.url) as broker, broker.producer() as producer:
            producer.send("numbers", b"\xffnot json", partition=3)
            await producer.flush()

    asyncio.run(poison())
    run = cluster.spate_run()
    _, stderr = run.communicate(timeout=20)
    assert run.returncode == 1
    last_line = stderr.decode().strip().splitlines()[-1]
    assert last_line.startswith(
        "error: cannot decode record at topic='numbers' partition=3 offset=2"
    )
    assert cluster.positions()[3] <= 2  # never committed past the bad record


def test_a_second_signal_forces_exit_without_waiting_for_the_batch(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory("at-least-once", delay_s=1.0, batch=10)
    asyncio.run(produce_inputs(cluster.url, 60))
    with cluster.spate_run() as run:
        try:
            wait_until(lambda: len(cluster.owners()) == PARTITIONS, 10, "the worker to start")
            time.sleep(0.5)  # inside its first batch, which takes 10 seconds
            run.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            run.send_signal(signal.SIGTERM)
            assert run.wait(3) == 128 + signal.SIGTERM
        finally:
            if run.poll() is None:
                run.kill()
    assert cluster.committed() == 0
