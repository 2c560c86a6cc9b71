"""Dead letters under exactly-once on the embedded broker survive SIGKILLs without
duplicates: a dead letter is in the transaction of its batch's offsets, so a batch a
killed worker did not commit leaves no dead letter behind, and its successor writes
it once (issue 11). Real worker processes of :mod:`worker_processes`' App."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from spate import deadletter
from worker_processes import Workers, answered, duplicated, read_all, wait_until

pytestmark = pytest.mark.slow

COUNT = 5_000
FAIL_EVERY = 50


def test_kill_9_neither_loses_nor_duplicates_a_dead_letter_under_exactly_once(
    tmp_path: Path,
) -> None:
    workers = Workers(
        tmp_path,
        f"local://{tmp_path / 'broker'}",
        app="dlq",
        partitions=2,
        guarantee="exactly-once",
        delay_s=0.0002,
        batch=100,
    )
    workers.env["W_FAIL_EVERY"] = str(FAIL_EVERY)
    workers.produce(COUNT)
    workers.env["W_SUICIDE_AT_CALL"] = "1001"
    procs = [workers.start()]
    workers.env["W_SUICIDE_AT_CALL"] = "-1"
    procs.append(workers.start())
    rng = random.Random(workers.group)
    try:
        for _ in range(2):
            time.sleep(rng.uniform(0.4, 0.8))
            assert workers.committed() < COUNT, "finished before the kills: make it slower"
            victim = rng.choice([p for p in procs if p.poll() is None])
            victim.send_signal(signal.SIGKILL)
            victim.wait(5)
            procs.append(workers.start())
        wait_until(lambda: workers.committed() == COUNT, 90, "every input committed")
        dlq = deadletter.dead_letter_topic(workers.inputs)
        letters = asyncio.run(read_all(workers.url, dlq, workers.partitions))
    finally:
        workers.stop_all()
    failing = set(range(0, COUNT, FAIL_EVERY))
    answers = answered(workers.answers())
    assert set(answers) == set(range(COUNT)) - failing
    assert duplicated(answers) == {}
    dead = Counter(orjson.loads(letter.value)["n"] for letter in letters)
    assert set(dead) == failing
    assert duplicated(dead) == {}
    assert all(
        dict(letter.headers)[deadletter.HEADER_ERROR_TYPE] == b"ValueError" for letter in letters
    )
