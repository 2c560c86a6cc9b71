"""``processing_guarantee="exactly-once"`` on NATS, through the App runtime.

NATS has no transactions, so the runtime runs exactly-once there as effectively-once
(DESIGN §6): at-least-once commits, with every output published under a ``dedup_id``
built from (app, processor, source topic, partition, offset, output index), which the
adapter sends as ``Nats-Msg-Id``. A worker killed after publishing a batch and before
committing it leaves the batch to its successor, which publishes the same ids again;
JetStream drops those copies inside the output topic's duplicate window (2 minutes
by default, far longer than this test).

Real worker processes of an App (:mod:`nats_workers`) copy 20,000 inputs over 4
partitions; three of them are SIGKILLed at random points while work remains and each
is replaced by a new worker. Inputs are keyed, or unkeyed: an unkeyed answer has no
key to choose its partition by, and JetStream drops a copy only within one partition
(stream), so its partition must follow from its dedup id, not from the producer's
round-robin, which a successor starts afresh. The output must then hold each input's answer exactly
once. With ``at-least-once`` instead, the same schedule leaves inputs answered twice:
the kills land while published answers wait for their commit. (The paused-zombie
case is in ``test_nats_workers.py``.)
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable
from functools import partial

import pytest

from nats_workers import Cluster
from worker_processes import answered, assert_per_key_order, duplicated, numbers, wait_until

pytestmark = pytest.mark.slow

COUNT = 20_000


def working(cluster: Cluster) -> list[subprocess.Popen[bytes]]:
    """The live workers that own partitions (a new worker may not own any yet)."""
    owners = set(cluster.owners().values())
    found = [w for w in cluster.live() if w.pid in owners]
    assert found, "no live worker owns a partition"
    return found


def committed_at_least(cluster: Cluster, count: int) -> bool:
    return cluster.committed() >= count


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
def test_each_input_answered_exactly_once_through_three_kills(
    cluster_factory: Callable[..., Cluster], keyed: bool
) -> None:
    # 97: batches not a multiple of the partition count, so that a successor's
    # round-robin does not line up with the first publisher's by chance.
    cluster = cluster_factory("exactly-once", delay_s=0.0002, batch=97)
    cluster.produce(COUNT, keyed=keyed)
    cluster.start()
    cluster.start()
    seed = random.randrange(1 << 32)
    print(f"kill schedule seed: {seed}")  # shown if the test fails
    rng = random.Random(seed)
    # Each kill waits for a random amount of progress, then a random fraction of a batch.
    for low, high in ((0.1, 0.25), (0.3, 0.45), (0.5, 0.65)):
        target = int(COUNT * rng.uniform(low, high))
        wait_until(partial(committed_at_least, cluster, target), 30, f"{target} inputs committed")
        time.sleep(rng.uniform(0, 0.05))
        victim = rng.choice(working(cluster))
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        assert cluster.committed() < COUNT, "a kill landed after the work was done"
        cluster.start()
    wait_until(lambda: cluster.committed() == COUNT, 60, "every input committed")
    for worker in cluster.live():
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
    records = cluster.answers()
    seen = answered(records)
    assert set(seen) == set(range(COUNT)), "inputs without an answer"
    assert not duplicated(seen), "inputs answered more than once"
    if keyed:
        assert_per_key_order(numbers(records))
    runs = sum(sum(cluster.trace_of(w).values()) for w in cluster.procs)
    assert runs > COUNT, "no kill made a worker run an input again: nothing was tested"
