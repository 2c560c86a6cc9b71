"""Worker processes on Redis: SIGKILL failover with pending-entry takeover, a paused
zombie, exactly-once (effectively-once) through kills, and ``kill -9`` of
redis-server (append-only file, ``appendfsync always``) mid-stream, for a moment and
for 40 s.

Real ``spate.cli.worker`` workers (what ``spate run`` starts; see
:mod:`worker_processes`) with a 1 s lease ttl. Inputs ``{"n": i}`` are keyed
``k<i % 40>``; the handler answers ``{"n": i, "pid": worker pid}``.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis

import worker_processes
from spate.brokers.redis import keys
from spate.record import TopicPartition
from spate.testing.redis_server import RedisServer, find_redis_servers
from worker_processes import assert_per_key_order, duplicated, ride_out_two_outages, wait_until

pytestmark = pytest.mark.slow

PARTITIONS = 4


class Workers(worker_processes.Workers):
    """An App's worker processes against one Redis, plus views of the group state."""

    def __init__(
        self, folder: Path, url: str, *, delay_s: float, batch: int, guarantee: str
    ) -> None:
        super().__init__(
            folder,
            f"{url}?lease_ttl_s=1",
            app="redisworkers",
            partitions=PARTITIONS,
            guarantee=guarantee,
            delay_s=delay_s,
            batch=batch,
        )
        self.admin = redis.Redis.from_url(url)

    def owners(self) -> dict[int, int]:
        """partition -> pid of the member holding its lease."""
        owners: dict[int, int] = {}
        for p in range(PARTITIONS):
            member = self.admin.hget(
                keys.lease(TopicPartition(self.inputs, p), self.group), "member"
            )
            if isinstance(member, bytes):
                owners[p] = int(member.decode().split("-")[-2])
        return owners

    def positions(self) -> dict[int, int]:
        """partition -> the group's committed position, read from Redis directly (the
        server may be restarting)."""
        out = {}
        for p in range(PARTITIONS):
            raw = self.admin.hget(keys.committed(TopicPartition(self.inputs, p)), self.group)
            out[p] = int(raw or 0)
        return out

    def pending_by_consumer(self) -> Counter[str]:
        pending: Counter[str] = Counter()
        for p in range(PARTITIONS):
            for row in self.admin.xinfo_consumers(f"{self.inputs}:{p}", self.group):
                pending[row["name"].decode()] += row["pending"]
        return pending


def answered(workers: Workers) -> list[int]:
    """Every n in the output topic, partition by partition in offset order."""
    found: list[int] = []
    for p in range(PARTITIONS):
        for _id, fields in workers.admin.xrange(f"{workers.outputs}:{p}") or []:
            assert fields is not None
            found.append(orjson.loads(fields[b"v"])["n"])
    return found


@pytest.fixture
def workers_factory(tmp_path: Path) -> Iterator[Callable[..., Workers]]:
    made: list[Workers] = []

    def make(
        url: str, *, delay_s: float = 0.0, batch: int = 500, guarantee: str = "at-least-once"
    ) -> Workers:
        workers = Workers(tmp_path, url, delay_s=delay_s, batch=batch, guarantee=guarantee)
        made.append(workers)
        return workers

    yield make
    for workers in made:
        workers.stop_all()


def test_two_workers_share_four_partitions_and_the_survivor_claims_pending_entries(
    redis_url: str, workers_factory: Callable[..., Workers]
) -> None:
    count = 50_000
    workers = workers_factory(redis_url, delay_s=0.00002)
    workers.produce(count)
    first, second = workers.start(), workers.start()

    def split_two_ways() -> bool:
        owners = workers.owners()
        return len(owners) == PARTITIONS and sorted(Counter(owners.values()).values()) == [2, 2]

    wait_until(split_two_ways, 20, "4 partitions split 2-2 over 2 workers")
    wait_until(lambda: workers.committed() > 2000, 30, "progress")
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    wait_until(
        lambda: (
            set(workers.owners().values()) == {second.pid} and len(workers.owners()) == PARTITIONS
        ),
        15,
        "the killed worker's partitions to move",
    )
    wait_until(lambda: workers.committed() == count, 60, "every input committed")
    ns = answered(workers)
    assert set(ns) == set(range(count))
    assert_per_key_order(ns)
    pending = workers.pending_by_consumer()
    assert sum(pending.values()) == 0, f"stranded pending entries: {pending}"
    second.send_signal(signal.SIGTERM)
    assert second.wait(15) == 0


def test_a_paused_zombie_cannot_commit_over_its_replacement(
    redis_url: str, workers_factory: Callable[..., Workers]
) -> None:
    count = 4000
    workers = workers_factory(redis_url, delay_s=0.0005, batch=50)
    workers.produce(count)
    zombie, other = workers.start(delay_s=0.01), workers.start()
    wait_until(
        lambda: set(workers.owners().values()) == {zombie.pid, other.pid},
        20,
        "two workers sharing the partitions",
    )
    time.sleep(0.3)
    zombie.send_signal(signal.SIGSTOP)
    wait_until(
        lambda: workers.owners() == dict.fromkeys(range(PARTITIONS), other.pid),
        15,
        "the replacement owning every partition",
    )
    time.sleep(0.5)
    workers.resume_zombie(zombie)
    wait_until(lambda: workers.committed() == count, 60, "every input committed")
    assert set(answered(workers)) == set(range(count))


def test_exactly_once_app_answers_each_input_once_despite_three_sigkills(
    redis_url: str, workers_factory: Callable[..., Workers]
) -> None:
    """processing_guarantee="exactly-once" on Redis is effectively-once: the runtime
    publishes with deterministic dedup ids, so replays after kills are dropped. One
    worker kills itself inside a batch (after the previous batch's outputs went out);
    three more SIGKILLs land at random points."""
    count = 20_000
    workers = workers_factory(redis_url, delay_s=0.0001, batch=100, guarantee="exactly-once")
    workers.produce(count)
    workers.env["W_SUICIDE_AT_CALL"] = "2001"
    procs = [workers.start()]
    workers.env["W_SUICIDE_AT_CALL"] = "-1"
    procs.append(workers.start())
    rng = random.Random(workers.group)
    for _ in range(3):
        time.sleep(rng.uniform(0.5, 1.2))
        assert workers.committed() < count, "finished before three kills: make the work slower"
        victim = rng.choice([p for p in procs if p.poll() is None])
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        procs.append(workers.start())
    wait_until(lambda: workers.committed() == count, 60, "every input committed")
    answers = Counter(answered(workers))
    assert set(answers) == set(range(count))
    assert duplicated(answers) == {}


@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[RedisServer]:
    servers = find_redis_servers()
    newest = max(servers, key=lambda v: tuple(map(int, v.split("."))))
    with RedisServer.start(tmp_path / "aof", binary=servers[newest], appendonly=True) as server:
        yield server


def test_redis_killed_and_restarted_with_aof_loses_nothing_acknowledged(
    aof_server: RedisServer, workers_factory: Callable[..., Workers]
) -> None:
    count = 20_000
    workers = workers_factory(aof_server.url, delay_s=0.0001, batch=200)
    workers.produce(count)
    proc = workers.start()
    wait_until(lambda: workers.committed() > 2000, 30, "progress")
    before = workers.positions()
    answers_before = set(answered(workers))
    aof_server.kill()
    time.sleep(0.5)
    aof_server.restart()
    after = workers.positions()
    assert all(after[p] >= before[p] for p in before), (before, after)
    assert set(answered(workers)) >= answers_before, "acknowledged outputs survive"
    wait_until(lambda: workers.committed() == count, 60, "every input committed after restart")
    assert proc.poll() is None, workers.log_of(proc)
    assert set(answered(workers)) == set(range(count))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_two_workers_ride_out_server_kills_of_3_and_40_seconds(
    aof_server: RedisServer, workers_factory: Callable[..., Workers]
) -> None:
    """kill -9 of redis-server (same port, same append-only file) twice while two
    workers run: down 3 s, then 40 s, past the default 30 s that used to end them and
    far past the 1 s lease ttl. Both stay alive and every input is answered."""
    workers = workers_factory(aof_server.url, delay_s=0.001, batch=100)
    ride_out_two_outages(workers, aof_server.kill, aof_server.restart)
