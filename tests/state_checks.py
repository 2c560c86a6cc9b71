"""The running-sum App of the state tests, and what its answers must be.

Inputs are ``{"n": i}`` keyed ``k<i % 40>`` (as in :mod:`worker_processes`); the
handler keeps a per-key running sum in its ``state`` and answers
``{"n": i, "sum": the sum of every input of that key up to i}``. Per-key order holds
on every broker, so the right answer to each input is known in advance, whatever
crashed, replayed or moved meanwhile: an answer with another sum means the state was
wrong (lost, counted twice, or holding a batch that was never committed).

With ``W_WINDOWS=1`` the App has a second processor in the same worker, on the same
inputs under a group of its own (``<group>-windows``): per key, it counts inputs in
tumbling 10-second windows of event time ``T0 + 50 ms * n`` and publishes each closed
window to ``<outputs>-windows``. Its right counts are known in advance too
(:func:`expected_windows`), so a window that lost or double-counted an input after a
crash shows.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson

from spate.record import Record
from worker_processes import KEYS, Workers, positions, produce, read_all, wait_until

T0 = 1_700_000_000_000
"""The event time of input 0 in the window processor (each next input 50 ms later):
as written in :data:`STATE_APP_MODULE`."""
STEP_MS = 50
WINDOW_MS = 10_000

STATE_APP_MODULE = """
import os
import signal
import time

from spate import App
from spate.streams import agg, tumbling

app = App(os.environ["W_APP"], batch_size=int(os.environ["W_BATCH"]))
PARTITIONS = int(os.environ["W_PARTITIONS"])
numbers = app.topic(os.environ["W_IN"], partitions=PARTITIONS)
results = app.topic(os.environ["W_OUT"], partitions=PARTITIONS)
DELAY_S = float(os.environ["W_DELAY_S"])
SUICIDE_AT_CALL = int(os.environ.get("W_SUICIDE_AT_CALL", "-1"))
calls = 0


@app.handler(numbers, group=os.environ["W_GROUP"], output=results)
def running_sum(value, state):
    global calls
    calls += 1
    if calls == SUICIDE_AT_CALL:
        # The first record of a batch: the previous batch's changelog and outputs are
        # being flushed and its offsets committed right now.
        os.kill(os.getpid(), signal.SIGKILL)
    total = (state.get() or 0) + value["n"]
    state.set(total)
    if DELAY_S:
        time.sleep(DELAY_S)
    return {"n": value["n"], "sum": total}


if os.environ.get("W_WINDOWS") == "1":
    (
        app.stream(numbers, name="window_counts", group=os.environ["W_GROUP"] + "-windows")
        .window(tumbling(seconds=10), event_time=lambda v: 1_700_000_000_000 + 50 * v["n"])
        .aggregate(n=agg.count())
        .to(app.topic(os.environ["W_OUT"] + "-windows", partitions=PARTITIONS))
    )
"""


def expected_sum(n: int) -> int:
    """The running sum of input ``n``'s key once ``n`` is added."""
    return sum(range(n % KEYS, n + 1, KEYS))


def sums(records: Iterable[Record]) -> list[tuple[int, int]]:
    return [(v["n"], v["sum"]) for v in (orjson.loads(r.value) for r in records)]


def wrong_answers(records: Iterable[Record]) -> list[tuple[int, int, int]]:
    """(n, answered sum, right sum) of every answer with a wrong sum."""
    return [(n, s, expected_sum(n)) for n, s in sums(records) if s != expected_sum(n)]


def check_answers(records: list[Record], count: int, *, exactly_once: bool) -> None:
    """Every input 0 … count - 1 answered with its right sum; once each if
    ``exactly_once`` (at-least-once may answer twice, never wrongly)."""
    assert not wrong_answers(records), wrong_answers(records)[:10]
    seen = Counter(n for n, _ in sums(records))
    assert set(seen) == set(range(count)), sorted(set(range(count)) - set(seen))[:20]
    if exactly_once:
        assert not {n: c for n, c in seen.items() if c > 1}


def expected_windows(count: int) -> dict[tuple[str, int], int]:
    """(key, window start) -> how many of inputs 0 … count - 1 it counts."""
    windows: Counter[tuple[str, int]] = Counter()
    for n in range(count):
        at = T0 + STEP_MS * n
        windows[f"k{n % KEYS}", at - at % WINDOW_MS] += 1
    return dict(windows)


def check_windows(records: list[Record], count: int, *, exactly_once: bool) -> None:
    """Every window the inputs closed is published with its right count (and no other);
    once each if ``exactly_once`` (at-least-once may publish one again, never wrongly).

    A window closes when its partition's watermark passes its end; every partition has
    some of the last ``KEYS`` inputs, so each window that ends by the event time of
    input ``count - KEYS`` is closed, whatever partition its key is on."""
    expected = expected_windows(count)
    published = [orjson.loads(r.value) for r in records]
    wrong = [
        (w["key"], w["start"], w["n"], expected.get((w["key"], w["start"])))
        for w in published
        if w["n"] != expected.get((w["key"], w["start"])) or w["end"] != w["start"] + WINDOW_MS
    ]
    assert not wrong, wrong[:10]
    seen = Counter((w["key"], w["start"]) for w in published)
    closed_by = T0 + STEP_MS * (count - KEYS)
    missing = [w for w in expected if w[1] + WINDOW_MS <= closed_by and w not in seen]
    assert not missing, missing[:10]
    if exactly_once:
        assert not {w: c for w, c in seen.items() if c > 1}


def window_group(workers: Workers) -> str:
    return f"{workers.group}-windows"


def all_committed(workers: Workers, count: int) -> bool:
    """Both processors (the window one where ``W_WINDOWS=1``) committed every input."""
    if workers.committed() < count:
        return False
    if workers.env.get("W_WINDOWS") != "1":
        return True
    done = asyncio.run(positions(workers.url, window_group(workers), workers.inputs))
    return sum(done.values()) >= count


def run_through_kills(
    workers: Workers, count: int, *, kills: int = 3, timeout_s: float = 60
) -> None:
    """A steady worker of :data:`STATE_APP_MODULE` and, ``kills`` times one after the
    other, a second one that SIGKILLs itself at the first record of a batch picked at
    random (while the batch before is being made durable); then a last one joins, and
    every input must be committed and the workers stop cleanly."""
    rng = random.Random()
    batch = int(workers.env["W_BATCH"])
    workers.produce(count)
    steady = workers.start()
    # Joining while another member joins has crashed librdkafka (SIGSEGV) on Kafka, and
    # so has making Kafka clients in quick succession: wait on the log, poll slowly.
    wait_until(lambda: "event=state_restored" in workers.log_of(steady), timeout_s, "a start")
    for _ in range(kills):
        workers.env["W_SUICIDE_AT_CALL"] = str(batch * rng.randint(1, 6) + 1)
        victim = workers.start()
        code = victim.wait(timeout_s)
        assert code == -signal.SIGKILL, f"exit {code}: {workers.log_of(victim)[-3000:]}"
    del workers.env["W_SUICIDE_AT_CALL"]
    assert workers.committed() < count, "the kills came after the end"
    workers.start()
    wait_until(lambda: all_committed(workers, count), timeout_s, "every input committed", 0.5)
    for proc in workers.live():
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, workers.log_of(proc)[-3000:]


def recovers_through_kills(
    workers: Workers, count: int, *, exactly_once: bool, timeout_s: float = 60
) -> None:
    """:func:`run_through_kills`, then every answer's sum is that of an uninterrupted
    run (each input answered once under exactly- and effectively-once), and restores
    were logged."""
    try:
        run_through_kills(workers, count, timeout_s=timeout_s)
    finally:
        workers.stop_all()
    check_answers(workers.answers(), count, exactly_once=exactly_once)
    if workers.env.get("W_WINDOWS") == "1":
        windows = asyncio.run(read_all(workers.url, f"{workers.outputs}-windows", 4))
        check_windows(windows, count, exactly_once=exactly_once)
    assert "event=state_restored" in workers.logs()


def rescales_three_one_two(
    workers: Workers,
    count: int,
    *,
    exactly_once: bool = False,
    timeout_s: float = 60,
    every_s: float = 0.05,
) -> None:
    """Issue 13: workers of :data:`STATE_APP_MODULE` run 3, then 1, then 2 at a time,
    and every answer's sum is still that of one worker (each input answered once if
    ``exactly_once``).

    Each worker has a state directory of its own (as on machines of their own), so a
    partition that moves is restored from its changelog by its new owner: the last
    worker starts with none, so it must log a restore ``from=no_local_state``.

    Inputs are published in three parts, each once the workers meant to run it own
    their partitions, so every phase happens whatever the speed of the machine: the
    first half once each of the three logged a restore; two of them stop (SIGTERM)
    once 5/18 are committed, mid-half; the next third is published then, and every
    partition must move on from where the two left it (the one left owns them all);
    the fourth worker joins then, and the last sixth is published once it has
    partitions. ``every_s``: how often to ask the broker how far the group committed
    (seldom where each question is a new client, as on Kafka)."""

    def start() -> subprocess.Popen[bytes]:
        workers.env["SPATE_STATE_DIR"] = str(workers.folder / f"state-{len(workers.procs)}")
        return workers.start()

    def owns_partitions(*procs: subprocess.Popen[bytes]) -> Callable[[], bool]:
        return lambda: all("event=state_restored" in workers.log_of(p) for p in procs)

    def publish(start: int, stop: int) -> None:
        asyncio.run(produce(workers.url, workers.inputs, start, stop))

    def committed(at_least: int) -> Callable[[], bool]:
        return lambda: workers.committed() >= at_least

    def stop(*procs: subprocess.Popen[bytes]) -> None:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(30) == 0, workers.log_of(proc)[-3000:]

    half, five_sixths = count // 2, count * 5 // 6
    try:
        workers.produce(0)
        three = [start() for _ in range(3)]
        wait_until(owns_partitions(*three), timeout_s, "three workers with partitions")
        publish(0, half)
        wait_until(committed(count * 5 // 18), timeout_s, "5/18 committed", every_s)
        stop(*three[1:])
        left_at = workers.positions()
        publish(half, five_sixths)

        def every_partition_moved_on() -> bool:
            now = workers.positions()
            return all(now[p] > left_at.get(p, 0) for p in range(workers.partitions))

        wait_until(every_partition_moved_on, timeout_s, "one worker on every partition", every_s)
        last = start()
        wait_until(owns_partitions(last), timeout_s, "the new worker with partitions")
        publish(five_sixths, count)
        wait_until(committed(count), timeout_s, "every input committed", every_s)
        stop(*workers.live())
    finally:
        workers.stop_all()
    assert "from=no_local_state" in workers.log_of(last)
    check_answers(workers.answers(), count, exactly_once=exactly_once)


def state_workers(
    folder: Path,
    url: str,
    *,
    app: str,
    guarantee: str = "exactly-once",
    delay_s: float = 0.001,
    batch: int = 50,
    windows: bool = True,
) -> Workers:
    """Worker processes of :data:`STATE_APP_MODULE` on ``url``, 4 partitions; with the
    window processor too unless ``windows`` is False."""
    workers = Workers(
        folder,
        url,
        app=app,
        partitions=4,
        guarantee=guarantee,
        delay_s=delay_s,
        batch=batch,
        module=STATE_APP_MODULE,
    )
    if windows:
        workers.env["W_WINDOWS"] = "1"
    return workers
