"""W1: decode → keep amount >= 10 → add a field → encode → publish → commit.

200,000 JSON orders of about 200 bytes, keyed by user, in 4 partitions. The same
records go through a plain Python loop (decode, filter, encode: the work a user
would write by hand, with no broker) and through spate on each broker given, in
the same run, and the ratio spate/plain is what the targets are written against
(benchmarks/README.md). Usage::

    python benchmarks/w1.py --records 200000 --broker memory:// --broker local://
    python benchmarks/w1.py --metrics --rounds 5    # spate with metrics off vs on

``--metrics`` measures what observability costs: interleaved rounds of spate with no
side service at all (no metrics server, no lag poller, no stall watchdog) and with
``metrics_port`` set (server, lag poller and watchdog running) while another process
scrapes ``/metrics`` once a second, as Prometheus would.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import spate
from spate.app import App
from spate.runtime.stats import ProcessorStats

PARTITIONS = 4


@dataclass(frozen=True)
class Result:
    name: str
    records: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.records / self.wall_s

    @property
    def cpu_us_per_record(self) -> float:
        return self.cpu_s / self.records * 1e6


def make_orders(count: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: ~200-byte JSON orders keyed by user id."""
    rng = random.Random(seed)
    items = ["book", "lamp", "chair", "kettle", "plant", "mug", "desk", "pen"]
    orders = []
    for order_id in range(count):
        user = f"user-{rng.randrange(10_000):05d}"
        value = {
            "order_id": order_id,
            "user_id": user,
            "amount": round(rng.uniform(0, 100), 2),
            "currency": "EUR",
            "item": rng.choice(items),
            "quantity": rng.randint(1, 5),
            "created_at": "2026-11-27T10:00:00.000000+00:00",
            "channel": rng.choice(["web", "ios", "android"]),
            "note": "x" * rng.randint(10, 30),
        }
        # A compact copy: orjson's result keeps its working buffer (about 4 KiB), so
        # 200,000 of them would make every run's peak RSS the input's, not the run's.
        orders.append((user.encode(), bytes(memoryview(orjson.dumps(value)))))
    return orders


def enrich(order: dict[str, Any]) -> dict[str, Any]:
    order["amount_cents"] = int(order["amount"] * 100)
    return order


def keep(order: dict[str, Any]) -> bool:
    return bool(order["amount"] >= 10)


def measure(name: str, records: int, work: Callable[[], None]) -> Result:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return Result(name, records, time.perf_counter() - wall, time.process_time() - cpu)


def plain_loop(orders: list[tuple[bytes, bytes]]) -> Result:
    """The baseline: the same decode/filter/encode a hand-written loop does."""

    def work() -> None:
        out = []
        loads, dumps = orjson.loads, orjson.dumps
        for _key, value in orders:
            order = loads(value)
            if keep(order):
                out.append(dumps(enrich(order)))

    return measure("plain loop", len(orders), work)


def w1_app(name: str, url: str, source: str, sink: str, group: str, **options: Any) -> App:
    """The W1 App: ``source`` → keep → enrich → ``sink``, in group ``group``."""
    app = App(name, broker=url, **options)
    inputs = app.topic(source, partitions=PARTITIONS)
    outputs = app.topic(sink, partitions=PARTITIONS)
    app.stream(inputs, group=group).filter(keep).map(enrich).to(outputs)
    return app


async def produce_orders(
    broker: spate.Broker, topic: str, orders: list[tuple[bytes, bytes]]
) -> None:
    """Publish ``orders`` to ``topic`` in flushed chunks of 10,000."""
    async with broker.producer() as producer:
        for start in range(0, len(orders), 10_000):
            for key, value in orders[start : start + 10_000]:
                producer.send(topic, value, key=key)
            await producer.flush()


async def prepare_topics(
    url: str, source: str, sink: str, orders: list[tuple[bytes, bytes]]
) -> None:
    """Create ``source`` and ``sink`` and fill ``source`` with ``orders`` (for a raw loop)."""
    async with spate.connect(url) as broker:
        await broker.create_topic(source, PARTITIONS)
        await broker.create_topic(sink, PARTITIONS)
        await produce_orders(broker, source, orders)


async def wait_until_committed(
    broker: spate.Broker,
    total: int,
    runner: asyncio.Task[None],
    group: str = "w1",
    topic: str = "orders",
    stats: ProcessorStats | None = None,
) -> None:
    """Return once ``group`` committed ``total`` records of ``topic``; raise if the
    processors stopped first. With the processor's ``stats``, the broker is asked only
    once they count ``total`` records consumed: each lag query costs the process under
    test about a millisecond, 4% of a W2 run at one every 20 ms."""
    while True:
        if stats is None or stats.consumed >= total:
            lag = await broker.lag(group, [topic])
            if sum(p.committed or 0 for p in lag) >= total:
                return
        if runner.done():
            runner.result()
            raise RuntimeError("pipeline stopped before it consumed every record")
        await asyncio.sleep(0.02)


async def spate_pipeline_async(
    url: str, orders: list[tuple[bytes, bytes]], metrics_port: int | None = None
) -> Result:
    # Without a metrics port, no side service at all (the stall watchdog and its lag
    # poller are on by default): the figures are those of the batch loop alone.
    stall_timeout_s = 0 if metrics_port is None else 60
    app = w1_app(
        "w1",
        url,
        "orders",
        "orders-enriched",
        "w1",
        metrics_port=metrics_port,
        stall_timeout_s=stall_timeout_s,
    )
    # One broker for producing, running and watching: memory:// lives in one connection.
    async with app.connect() as broker:
        await app.prepare(broker)
        await produce_orders(broker, "orders", orders)
        stop = asyncio.Event()
        wall, cpu = time.perf_counter(), time.process_time()
        runner = asyncio.create_task(app.run_processors(broker, stop))
        await wait_until_committed(broker, len(orders), runner)
        # The clock stops when every record is committed; the drain after it is not W1.
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        stop.set()
        await runner
    return Result(f"spate {url.split('://')[0]}://", len(orders), wall, cpu)


def spate_pipeline(
    url: str, orders: list[tuple[bytes, bytes]], metrics_port: int | None = None
) -> Result:
    """Through spate: fetch, decode, filter, enrich, encode, publish, commit."""
    return asyncio.run(spate_pipeline_async(url, orders, metrics_port))


SCRAPER = """
import sys, time, urllib.request
url = sys.argv[1]
print("ready", flush=True)
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            answer.read()
    except OSError:
        pass
    time.sleep(1)
"""


def scraped_pipeline(url: str, orders: list[tuple[bytes, bytes]]) -> Result:
    """spate with its metrics server on, scraped once a second by another process
    (so the scraper's own CPU is not the app's, as with Prometheus). The run starts
    once the scraper's interpreter is up: a Prometheus is already running when an app
    starts, and a Python starting beside a one-second run on a busy machine would
    take a share of its cores."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    metrics = f"http://127.0.0.1:{port}/metrics"
    with subprocess.Popen(
        [sys.executable, "-c", SCRAPER, metrics], stdout=subprocess.PIPE
    ) as scraper:
        assert scraper.stdout is not None
        scraper.stdout.readline()
        try:
            result = spate_pipeline(url, orders, metrics_port=port)
        finally:
            scraper.terminate()
    return Result(f"{result.name} +metrics", result.records, result.wall_s, result.cpu_s)


def in_workdir(url: str, run: Callable[[str], Result]) -> Result:
    """``run`` on ``url``; a bare ``local://`` gets a fresh temporary directory."""
    if url != "local://":
        return run(url)
    workdir = tempfile.mkdtemp(prefix="spate-w1-")
    try:
        return run(f"local://{workdir}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def compare_metrics(brokers: list[str], orders: list[tuple[bytes, bytes]], rounds: int) -> None:
    """Interleaved rounds of metrics off / on per broker, each round's order the
    previous one's reversed; medians and their ratio."""
    print(f"W1 metrics off vs on, {len(orders)} records, {rounds} rounds (off and on interleaved)")
    print(f"{'broker':<12}{'run':<6}{'records/s per round':>40}{'median':>10}{'CPU us/rec':>12}")
    for url in brokers:
        runs: dict[str, list[Result]] = {"off": [], "on": []}
        sides: dict[str, Callable[[str], Result]] = {
            "off": lambda u: spate_pipeline(u, orders),
            "on": lambda u: scraped_pipeline(u, orders),
        }
        for index in range(rounds):
            # Alternate which side goes first: the second run of a round inherits the
            # first one's heap and the machine's state.
            for side in ("off", "on") if index % 2 == 0 else ("on", "off"):
                runs[side].append(in_workdir(url, sides[side]))
        medians = {}
        for side, results in runs.items():
            rates = [r.rate for r in results]
            cpu = statistics.median(r.cpu_us_per_record for r in results)
            medians[side] = (statistics.median(rates), cpu)
            per_round = " / ".join(f"{rate / 1000:.0f}k" for rate in rates)
            print(f"{url:<12}{side:<6}{per_round:>40}{medians[side][0]:>10,.0f}{cpu:>12.2f}")
        rate_ratio = medians["on"][0] / medians["off"][0]
        cpu_ratio = medians["on"][1] / medians["off"][1]
        print(f"{url:<12}on/off: rate {rate_ratio:.1%}, CPU per record {cpu_ratio:.3f}x")


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not carry over the
    parent's peak from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(title: str, results: list[Result]) -> None:
    """Each run's rate and CPU per record, and both relative to the first run."""
    first = results[0]
    print(title)
    print(f"{'run':<18}{'records/s':>12}{'CPU us/rec':>12}{'rate':>8}{'CPU':>8}")
    for result in results:
        print(
            f"{result.name:<18}{result.rate:>12,.0f}{result.cpu_us_per_record:>12.2f}"
            f"{result.rate / first.rate:>8.0%}{result.cpu_s / first.cpu_s:>8.2f}"
        )
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--broker", action="append", default=None)
    parser.add_argument(
        "--metrics", action="store_true", help="compare spate with metrics off and on"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --metrics")
    args = parser.parse_args()
    brokers = args.broker or ["memory://", "local://"]
    orders = make_orders(args.records)
    if args.metrics:
        compare_metrics(brokers, orders, args.rounds)
        return
    results = [plain_loop(orders)]
    for url in brokers:
        results.append(in_workdir(url, lambda u: spate_pipeline(u, orders)))
    print_table(f"W1, {args.records} records, {PARTITIONS} partitions", results)


if __name__ == "__main__":
    main()
