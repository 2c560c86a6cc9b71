"""kill -9 while records are set aside, under exactly-once (issue 11), the same way on
every broker (transactions on local and Kafka, effectively-once ids on NATS and
Redis): workers of :mod:`worker_processes`' App fail every
``fail_every``-th input (through retry topics first, if asked), and are SIGKILLed
right after a batch sent its dead letters or retry moves but before it committed, and
at random moments; nothing is lost and no answer or dead letter is duplicated."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import orjson

from spate import deadletter
from worker_processes import Workers, answered, duplicated, read_all, wait_until


def kill_while_setting_aside(
    workers: Workers,
    count: int,
    fail_every: int,
    via: tuple[float, ...] = (),
    timeout_s: float = 90,
) -> None:
    workers.env["W_FAIL_EVERY"] = str(fail_every)
    workers.env["W_RETRY_VIA"] = ",".join(str(delay) for delay in via)
    workers.produce(count)
    # Its second checkpoint that sets records aside: the first has committed some.
    workers.env["W_SUICIDE_AT_WRITE"] = "2"
    procs = [workers.start()]
    workers.env["W_SUICIDE_AT_WRITE"] = "-1"
    procs.append(workers.start())
    rng = random.Random(workers.group)
    failing = set(range(0, count, fail_every))
    dlq = deadletter.dead_letter_topic(workers.inputs)
    try:
        for _ in range(2):
            time.sleep(rng.uniform(0.4, 0.8))
            assert workers.committed() < count, "finished before the kills: make it slower"
            live = workers.live()  # none when the first died writing and the other was killed
            if live:
                victim = rng.choice(live)
                victim.kill()
                victim.wait(5)
            procs.append(workers.start())
        wait_until(lambda: workers.committed() == count, timeout_s, "every input committed", 0.5)

        def dead_letters() -> int:
            return len(asyncio.run(read_all(workers.url, dlq, workers.partitions)))

        wait_until(lambda: dead_letters() >= len(failing), timeout_s, "every dead letter", 1.0)
        time.sleep(1.0)  # a duplicate, if any, would land now
        letters = asyncio.run(read_all(workers.url, dlq, workers.partitions))
        assert procs[0].poll() is not None, "the first worker did not die while writing"
    finally:
        workers.stop_all()
    answers = answered(workers.answers())
    assert set(answers) == set(range(count)) - failing
    assert duplicated(answers) == {}
    dead = Counter(orjson.loads(letter.value)["n"] for letter in letters)
    assert set(dead) == failing
    assert duplicated(dead) == {}
    attempts = str(2 * (1 + len(via))).encode() if via else b"1"
    for letter in letters:
        headers = dict(letter.headers)
        assert headers[deadletter.HEADER_ERROR_TYPE] == b"ValueError"
        assert headers[deadletter.HEADER_SOURCE_TOPIC] == workers.inputs.encode()
        assert headers[deadletter.HEADER_ATTEMPTS] == attempts


def kill_during_retry_topics(folder: Path, url: str) -> None:
    """:func:`kill_while_setting_aside` on ``url``: 5,000 inputs on 2 partitions, every
    50th failing, retried twice through retry topics and then dead-lettered."""
    workers = Workers(
        folder,
        url,
        app="dlq",
        partitions=2,
        guarantee="exactly-once",
        delay_s=0.0002,
        batch=100,
    )
    kill_while_setting_aside(workers, 5_000, 50, (0.2, 0.2))
