"""Worker processes of one small App, for the tests that kill, pause and restart them.

The broker-independent half of every tier's multi-process tests (local, NATS, Redis,
Kafka): :class:`Workers` writes :data:`APP_MODULE` into a temporary folder and starts
real worker processes there (``python -m spate.cli.worker``, what ``spate run``
starts), or ``spate run`` itself through the CLI entry point; the helpers below wait
for progress and read the answers. Each tier adds only how it asks its broker who
owns which partition and how far the group has committed.

Inputs are ``{"n": i}``, keyed ``k<i % 40>`` where a tier keys them; the handler
answers ``{"n": i, "pid": worker pid}`` after a short sleep, so kills land mid-batch.
With ``W_FAIL_EVERY=k`` in the environment the handler raises for every input whose
``n`` is a multiple of ``k`` and the processor sends those to its dead-letter topic
``<inputs>.dlq``; with ``W_RETRY_VIA=0.2,0.2`` too it retries them twice in place and
then through retry topics with those delays first. ``W_SUICIDE_AT_WRITE=k`` SIGKILLs
the worker right after the k-th checkpoint that set records aside (dead letters, retry
moves: written once per checkpoint, which covers a commit interval's batches) sent
them, before its commit: the window exactly-once must cover. With
``trace=True`` it first appends ``i`` to ``<pid>.trace`` with an unbuffered write, so a
test can tell which inputs each worker ran (a SIGKILL loses none).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import orjson

import spate
from spate.record import Record

KEYS = 40

APP_MODULE = """
import os
import signal
import time

from spate import App, Retry
from spate.runtime import outbox

app = App(os.environ["W_APP"], batch_size=int(os.environ["W_BATCH"]))
numbers = app.topic(os.environ["W_IN"], partitions=int(os.environ["W_PARTITIONS"]))
results = app.topic(os.environ["W_OUT"], partitions=int(os.environ["W_PARTITIONS"]))
DELAY_S = float(os.environ["W_DELAY_S"])
TRACE = (
    os.open(f"{os.getpid()}.trace", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    if os.environ["W_TRACE"]
    else None
)
SUICIDE_AT_CALL = int(os.environ.get("W_SUICIDE_AT_CALL", "-1"))
FAIL_EVERY = int(os.environ.get("W_FAIL_EVERY", "0"))
VIA = [float(s) for s in os.environ.get("W_RETRY_VIA", "").split(",") if s]
SUICIDE_AT_WRITE = int(os.environ.get("W_SUICIDE_AT_WRITE", "-1"))
calls = 0
writes = 0
write_aside = outbox.Outbox.write


async def write_then_die(self, producer, through):
    global writes
    durable = await write_aside(self, producer, through)
    if durable is not None:
        writes += 1
        if writes == SUICIDE_AT_WRITE:
            os.kill(os.getpid(), signal.SIGKILL)
    return durable


outbox.Outbox.write = write_then_die


@app.handler(
    numbers,
    group=os.environ["W_GROUP"],
    output=results,
    dead_letter=FAIL_EVERY > 0 or None,
    retry=Retry(attempts=2, backoff_s=0.001, via_topics=VIA) if VIA else None,
)
def answer(value):
    global calls
    calls += 1
    if FAIL_EVERY and value["n"] % FAIL_EVERY == 0:
        raise ValueError(f"input {value['n']} fails")
    if TRACE is not None:
        os.write(TRACE, b"%d\\n" % value["n"])
    if DELAY_S:
        time.sleep(DELAY_S)
    if calls == SUICIDE_AT_CALL:
        # The first record of a batch: the previous batch's outputs are being flushed
        # and committed right now, the window exactly-once must cover.
        os.kill(os.getpid(), signal.SIGKILL)
    return {"n": value["n"], "pid": os.getpid()}
"""

APP_REF = "workerapp:app"


class Workers:
    """Worker processes of :data:`APP_MODULE` on one broker URL, all in ``folder``."""

    def __init__(
        self,
        folder: Path,
        url: str,
        *,
        app: str,
        partitions: int,
        guarantee: str,
        delay_s: float,
        batch: int,
        trace: bool = False,
        names: tuple[str, str, str] | None = None,
        module: str = APP_MODULE,
    ) -> None:
        """``names``: (inputs, outputs, group); by default names of their own, so
        tests on a shared broker never meet each other's. ``module``: the App's source
        (:data:`APP_MODULE`, or another reading the same ``W_*`` variables)."""
        tag = uuid.uuid4().hex[:8]
        inputs, outputs, group = names or (f"in-{tag}", f"out-{tag}", f"g-{tag}")
        self.folder, self.url, self.guarantee = folder, url, guarantee
        self.inputs, self.outputs, self.group = inputs, outputs, group
        self.partitions = partitions
        self.env = {
            **os.environ,
            "W_APP": app,
            "W_IN": inputs,
            "W_OUT": outputs,
            "W_GROUP": group,
            "W_PARTITIONS": str(partitions),
            "W_DELAY_S": str(delay_s),
            "W_BATCH": str(batch),
            "W_TRACE": "1" if trace else "",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        (folder / "workerapp.py").write_text(module)

    def start(self, delay_s: float | None = None) -> subprocess.Popen[bytes]:
        """A new worker, its stderr in ``worker-<i>.log``; ``delay_s`` overrides the
        handler's sleep for this one."""
        settings = {"broker": self.url, "processing_guarantee": self.guarantee}
        env = self.env if delay_s is None else {**self.env, "W_DELAY_S": str(delay_s)}
        with (self.folder / f"worker-{len(self.procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "spate.cli.worker",
                    APP_REF,
                    orjson.dumps(settings).decode(),
                ],
                cwd=self.folder,
                env=env,
                stderr=log,
            )
        self.procs.append(proc)
        return proc

    def spate_run(self, *args: str) -> subprocess.Popen[bytes]:
        """``spate run workerapp:app --broker URL ...`` through the real CLI entry point,
        stderr captured."""
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from spate.cli.main import main; main()",
                "run",
                APP_REF,
                "--broker",
                self.url,
                *args,
            ],
            cwd=self.folder,
            env=self.env,
            stderr=subprocess.PIPE,
        )

    def produce(self, count: int, *, keyed: bool = True) -> None:
        """Create both topics and publish inputs 0 … count - 1, keyed ``k<n % 40>`` (or
        without keys, spread round-robin)."""

        async def fill() -> None:
            await create_topics(self.url, self.partitions, self.inputs, self.outputs)
            await produce(self.url, self.inputs, 0, count, keyed=keyed)

        asyncio.run(fill())

    def positions(self) -> dict[int, int]:
        """partition -> the group's committed position."""
        return asyncio.run(positions(self.url, self.group, self.inputs))

    def committed(self) -> int:
        return sum(self.positions().values())

    def answers(self) -> list[Record]:
        """Every record of the output topic."""
        return asyncio.run(read_all(self.url, self.outputs, self.partitions))

    def resume_zombie(self, zombie: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
        """SIGCONT a paused worker whose partitions moved on. Whatever it does after
        waking (finish its stale batch, commit it), until it notices it lost its leases
        and half a second after, the group's committed positions never go back behind
        what they were when it woke."""
        before = self.positions()

        def assert_not_behind() -> None:
            now = self.positions()
            assert all(now[p] >= before[p] for p in before), (before, now)

        zombie.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + timeout_s
        while "event=lost" not in self.log_of(zombie):
            assert time.monotonic() < deadline, "the zombie never noticed it lost its leases"
            assert_not_behind()
        time.sleep(0.5)
        assert_not_behind()

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.folder / f"worker-{self.procs.index(proc)}.log").read_text()

    def logs(self) -> str:
        """Every worker's log, one after the other."""
        return "\n".join(self.log_of(proc) for proc in self.procs)

    def trace_of(self, proc: subprocess.Popen[bytes]) -> Counter[int]:
        """How many times ``proc`` ran the handler on each input (needs ``trace=True``)."""
        path = self.folder / f"{proc.pid}.trace"
        if not path.exists():
            return Counter()
        return Counter(int(line) for line in path.read_text().split())

    def stop_all(self) -> None:
        for proc in self.live():
            proc.kill()
        for proc in self.procs:
            proc.wait(10)


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.05
) -> None:
    """Ask ``condition`` every ``every_s`` until it holds; a condition that connects
    anew each time (a Kafka client per call) should ask seldom."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)


async def create_topics(url: str, partitions: int, *topics: str) -> None:
    async with spate.connect(url) as broker:
        for topic in topics:
            await broker.create_topic(topic, partitions, exist_ok=True)


async def produce(url: str, topic: str, start: int, stop: int, *, keyed: bool = True) -> None:
    """Publish inputs ``{"n": start}`` … ``{"n": stop - 1}``, keyed ``k<n % 40>`` (or
    without keys, spread round-robin)."""
    async with spate.connect(url) as broker, broker.producer() as producer:
        for n in range(start, stop):
            key = b"k%d" % (n % KEYS) if keyed else None
            producer.send(topic, orjson.dumps({"n": n}), key=key)
        await producer.flush()


async def positions(url: str, group: str, topic: str) -> dict[int, int]:
    """partition -> the group's committed position."""
    async with spate.connect(url) as broker:
        rows = await broker.lag(group, [topic])
    return {row.partition: row.committed or 0 for row in rows}


async def read_all(url: str, topic: str, partitions: int) -> list[Record]:
    """Every record of ``topic``, read partition by partition up to its end, no group."""
    async with spate.connect(url) as broker:
        records: list[Record] = []
        for partition in range(partitions):
            async with broker.reader(topic, partition) as reader:
                records.extend(await reader.read_to_end(60.0, settled=True))
        return records


def numbers(records: Iterable[Record]) -> list[int]:
    """The ``n`` of each answer, partition by partition in offset order."""
    ordered = sorted(records, key=lambda r: (r.partition, r.offset))
    return [orjson.loads(r.value)["n"] for r in ordered]


def answered(records: Iterable[Record]) -> Counter[int]:
    """How many answers each input has among ``records``."""
    return Counter(numbers(records))


def duplicated(counts: Counter[int]) -> dict[int, int]:
    """Inputs answered more than once, with how many times."""
    return {n: c for n, c in counts.items() if c > 1}


def assert_per_key_order(ns: Sequence[int]) -> None:
    """Per key, the first answer to each input comes in input order (``ns`` in
    partition and offset order): a failover replays a suffix, it never reorders."""
    firsts: dict[int, list[int]] = defaultdict(list)
    seen: set[int] = set()
    for n in ns:
        if n not in seen:
            seen.add(n)
            firsts[n % KEYS].append(n)
    for key, order in firsts.items():
        assert order == sorted(order), f"key k{key} out of order"


def ride_out_two_outages(
    workers: Workers,
    kill: Callable[[], None],
    restart: Callable[[], None],
    *,
    inputs: int = 3000,
    downs_s: tuple[float, ...] = (3.0, 40.0),
) -> None:
    """Two workers process a stream of inputs while the broker is killed (``kill -9``)
    mid-stream and restarted on the same store after each of ``downs_s``: both workers
    stay alive, and every input is answered (duplicates allowed, nothing missing).

    Each round publishes ``inputs`` more, kills the server once a third of them is
    committed, and waits (bounded) until the group committed everything so far."""
    asyncio.run(create_topics(workers.url, workers.partitions, workers.inputs, workers.outputs))
    procs = [workers.start(), workers.start()]

    def committed(at_least: int) -> bool:
        dead = [p.pid for p in procs if p.poll() is not None]
        assert not dead, f"workers {dead} exited: {workers.logs()[-3000:]}"
        return workers.committed() >= at_least

    published = 0
    for down_s in downs_s:
        asyncio.run(produce(workers.url, workers.inputs, published, published + inputs))
        published += inputs
        target = published - inputs * 2 // 3
        wait_until(partial(committed, target), 60, f"{target} inputs committed")
        kill()
        time.sleep(down_s)
        restart()
        wait_until(
            partial(committed, published),
            90 + down_s,
            f"all {published} inputs committed after a {down_s} s outage",
        )
    seen = answered(workers.answers())
    assert set(seen) == set(range(published)), sorted(set(range(published)) - set(seen))[:20]
    logs = workers.logs()
    assert "event=broker_unavailable" in logs
    assert "event=broker_available" in logs
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, workers.log_of(proc)
