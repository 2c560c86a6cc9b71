"""On revoke, state is flushed and handed over within the revoke deadline (issue 13),
on the brokers whose groups are leases (local, NATS, Redis).

The deadline is the lease ttl (:mod:`spate.brokers.leased`): a member asked to give a
partition back renews its lease no more, so it has one ttl to finish its batch,
commit, flush and release, or it loses the partition. The check runs the running-sum
App of :mod:`state_checks` in two worker processes, each with a state directory of
its own (as on machines of their own): the first owns every partition and is always
busy (each batch sleeps ``BATCH * DELAY_S``, a quarter of the ttl, and the next one
is fetched at once); the second joins, so half the partitions are revoked from the
first in the middle of a batch. Then:

* the first logs the release within the deadline, and never a loss;
* its local checkpoint of each revoked partition reflects its last changelog flush
  and the changelog's end (``hand_over``), and the new owner's first flush starts
  right after it: the offsets were committed at the hand-over, nothing replayed;
* the new owner rebuilt the stores from that changelog, and every input is answered
  exactly once (though at-least-once) with the sum of an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from pathlib import Path

from spate.record import Record
from spate.state.backend import store_path
from spate.state.changelog import SOURCE_FIRST, SOURCE_LAST, changelog_topic
from spate.state.codec import decode_meta
from spate.state.local import backend_kind, open_backend
from state_checks import check_answers, state_workers
from worker_processes import Workers, read_all, wait_until

LEASE_TTL_S = 2.0
"""The revoke deadline of the check (local, NATS and Redis default to 10 s)."""
BATCH = 25
DELAY_S = 0.02
"""Per record: a batch keeps its worker busy 0.5 s, a quarter of the deadline."""
INPUTS = 300
APP = "handover"


def hands_over_within_the_deadline(folder: Path, url: str) -> None:
    """The scenario of the module doc on ``url`` (a leased broker, ``lease_ttl_s``
    set to :data:`LEASE_TTL_S` in its query)."""
    workers = state_workers(
        folder,
        url,
        app=APP,
        guarantee="at-least-once",
        delay_s=DELAY_S,
        batch=BATCH,
        windows=False,
    )
    try:
        workers.produce(INPUTS)
        first = start_with_own_state(workers)
        # Every partition has state when the second joins (the first reads them in turn).
        wait_until(lambda: min(workers.positions().values()) > 0, 30, "progress on every partition")
        second = start_with_own_state(workers)
        wait_until(lambda: "event=state_restored" in workers.log_of(second), 30, "a hand-over")
        wait_until(lambda: workers.committed() >= INPUTS, 60, "every input committed", 0.2)
        assert workers.committed() == INPUTS
        for proc in (first, second):  # the first first: nothing moves back to it
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, workers.log_of(proc)[-3000:]
    finally:
        workers.stop_all()

    log = workers.log_of(first)
    assert "event=revoke_deadline_missed" not in log, log[-3000:]
    assert "event=lost" not in log, log[-3000:]
    released = re.search(r"event=partitions_released .*partitions=(\S+) seconds=([\d.]+) ", log)
    assert released is not None, log[-3000:]
    moved = [int(p) for p in re.findall(r"\[(\d+)\]", released.group(1))]
    assert moved, released.group(0)
    assert float(released.group(2)) <= LEASE_TTL_S, released.group(0)

    changelog = changelog_topic(APP, "running_sum", "state")
    records = asyncio.run(read_all(url, changelog, workers.partitions))
    for partition in moved:
        source, end = checkpoint_of(folder / "state-0", url, workers.inputs, partition)
        flushes = [r for r in records if r.partition == partition]
        before = [r for r in flushes if r.offset < end]
        after = [r for r in flushes if r.offset >= end]
        assert before, (partition, end, len(flushes))
        assert after, (partition, end, len(flushes))
        assert max(header(r, SOURCE_LAST) for r in before) == source
        assert header(min(after, key=lambda r: r.offset), SOURCE_FIRST) == source + 1
    restores = re.findall(r"event=state_restored .*", workers.log_of(second))
    for partition in moved:
        restored = next(line for line in restores if f"[{partition}] " in line)
        assert "from=no_local_state" in restored, restored
        assert " records=0 " not in restored, restored
    check_answers(workers.answers(), INPUTS, exactly_once=True)


def start_with_own_state(workers: Workers) -> subprocess.Popen[bytes]:
    """A worker whose state directory is ``state-<i>`` (the i-th started)."""
    workers.env["SPATE_STATE_DIR"] = str(workers.folder / f"state-{len(workers.procs)}")
    return workers.start()


def checkpoint_of(state_dir: Path, url: str, topic: str, partition: int) -> tuple[int, int]:
    """(source offset, changelog position) of the local checkpoint of one partition's
    store in ``state_dir``, read once its worker has exited."""
    path = store_path(state_dir / APP, "running_sum", "state", topic, partition)
    backend = open_backend(backend_kind("auto", url), path)
    try:
        meta = backend.checkpoint()
    finally:
        backend.close()
    assert meta is not None, path
    checkpoint = decode_meta(meta)
    return int(checkpoint["source"]), int(checkpoint["changelog"])


def header(record: Record, name: str) -> int:
    return int(dict(record.headers)[name])
