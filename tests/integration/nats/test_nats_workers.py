"""Worker processes of one App on NATS: sharing, SIGKILL failover, a paused zombie,
per-key order across a failover.

Real worker processes (:mod:`nats_workers`) on the session's nats-server, with a 1 s
lease ttl. Each test uses its own topic and group names.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from nats_workers import PARTITIONS, Cluster
from spate.testing.nats_server import NatsServer
from worker_processes import (
    answered,
    assert_per_key_order,
    duplicated,
    numbers,
    ride_out_two_outages,
    wait_until,
)

pytestmark = pytest.mark.slow


def test_two_workers_share_four_partitions_and_survive_a_kill(
    cluster_factory: Callable[..., Cluster],
) -> None:
    count = 50_000
    cluster = cluster_factory(delay_s=0.00002, batch=500)
    cluster.produce(count)
    first, second = cluster.start(), cluster.start()

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
    records = cluster.answers()
    assert set(answered(records)) == set(range(count))
    assert_per_key_order(numbers(records))
    second.send_signal(signal.SIGTERM)
    assert second.wait(15) == 0


def test_paused_zombie_cannot_commit_over_its_replacement_and_its_outputs_are_dropped(
    cluster_factory: Callable[..., Cluster],
) -> None:
    """Under ``exactly-once`` (effectively-once on NATS: every output carries a
    deterministic ``Nats-Msg-Id``), a worker paused past its lease and resumed neither
    moves committed positions back nor adds a second answer to any input."""
    count = 4000
    cluster = cluster_factory("exactly-once", delay_s=0.0005, batch=50)
    cluster.produce(count)
    # The zombie spends nearly all its time inside 0.5 s batches, so the pause lands
    # mid-batch: after SIGCONT it finishes the batch, publishes its answers and tries
    # to commit it.
    zombie, other = cluster.start(delay_s=0.01), cluster.start()

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
    cluster.resume_zombie(zombie)
    zombie.send_signal(signal.SIGTERM)  # done with it; its slow batches would only take time
    assert zombie.wait(15) == 0
    wait_until(lambda: cluster.committed() == count, 60, "every input committed")
    records = cluster.answers()
    seen = answered(records)
    assert set(seen) == set(range(count))
    assert not duplicated(seen)
    assert_per_key_order(numbers(records))
    # The zombie exited cleanly, so it published an answer to every input it ran;
    # where the answer kept is the replacement's, the zombie's copy was dropped.
    kept = {orjson.loads(r.value)["n"]: orjson.loads(r.value)["pid"] for r in records}
    assert {n for n in cluster.trace_of(zombie) if kept[n] != zombie.pid}
    for worker in cluster.live():
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0


def test_two_workers_ride_out_server_kills_of_3_and_40_seconds(
    own_server: NatsServer, tmp_path: Path
) -> None:
    """kill -9 of nats-server (same store, same port) twice while two workers run:
    down 3 s, then 40 s, far past the 1 s lease ttl. Both workers stay alive, rejoin,
    take the partitions back from the committed offsets and answer every input."""
    # Many small batches: commits (acks) are in flight most of the time, so a kill
    # catches one, whose timeout used to be taken for a lost connection.
    cluster = Cluster(tmp_path, own_server.url, guarantee="at-least-once", delay_s=0, batch=20)
    try:
        ride_out_two_outages(cluster, own_server.kill, own_server.start, inputs=20_000)
    finally:
        cluster.stop_all()
