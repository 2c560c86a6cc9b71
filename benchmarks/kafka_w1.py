"""W1 on Kafka: spate (at-least-once and exactly-once) beside a raw confluent-kafka loop.

Every run gets fresh topics and a fresh group on the same broker and does the same
work: batch consume, decode, keep ``amount >= 10``, add a field, encode, produce,
commit once per batch after the batch's outputs are acknowledged. Each run is its own
process, so its CPU time and peak RSS are its own. "Steady" figures start after the
first batch (the group has joined) and end when every record was processed; the last
batch's flush and commit come after that line for both and are checked, not timed.

Apache Kafka is started from the cached jars (spate.testing.kafka_server) unless
``--bootstrap host:port`` is given; ``--tansu`` adds Tansu. ``--rounds N`` repeats
the three runs N times, interleaved, and reports the median of each round's ratio to
that round's raw loop: on a shared machine the CPU per record of every run drifts by
±15% from minute to minute, and a ratio within one round drifts much less.
``--threads`` adds each run's CPU per thread. Usage::

    python benchmarks/kafka_w1.py --records 200000 [--rounds 3] [--threads]
        [--bootstrap 127.0.0.1:9092] [--tansu | --only-tansu]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CkTopicPartition
from w1 import PARTITIONS, enrich, keep, make_orders, peak_rss_mib, w1_app

import spate
from spate.testing.kafka_server import start_apache_kafka, start_tansu

REPO = Path(__file__).resolve().parents[1]
BATCH = 1000


class Clock:
    """Wall and CPU time of the whole run and of its steady part."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.steady: tuple[float, float, int] | None = None

    def mark_steady(self, done: int) -> None:
        if self.steady is None:
            self.steady = (time.perf_counter(), time.process_time(), done)
            self.threads0 = thread_cpu_s()

    def report(self, name: str, records: int, batches: int) -> dict[str, Any]:
        wall, cpu = time.perf_counter(), time.process_time()
        assert self.steady is not None
        steady_wall, steady_cpu, steady_done = self.steady
        return {
            "name": name,
            "records": records,
            "rate": records / (wall - self.wall0),
            "steady_rate": (records - steady_done) / (wall - steady_wall),
            "cpu_us": (cpu - self.cpu0) / records * 1e6,
            "steady_cpu_us": (cpu - steady_cpu) / max(1, records - steady_done) * 1e6,
            "peak_rss_mib": peak_rss_mib(),
            "records_per_batch": records / max(1, batches),
            "threads": {
                name: cpu - self.threads0.get(name, 0.0) for name, cpu in thread_cpu_s().items()
            },
        }


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds of this process's live threads by name (Python threads by their
    name without the pool index, librdkafka's by theirs), from /proc."""
    names = {t.native_id: t.name.rstrip("0123456789_") for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    cpu: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue  # the thread ended
        fields = stat[stat.rindex(")") + 2 :].split()
        name = names.get(int(tid), stat[stat.index("(") + 1 : stat.rindex(")")])
        cpu[name] = cpu.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return cpu


def produce_inputs(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value in make_orders(count):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush()


def raw_loop(bootstrap: str, source: str, sink: str, count: int) -> dict[str, Any]:
    """What a careful user writes by hand with confluent-kafka for at-least-once."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    consumer.subscribe([source])
    clock = Clock()
    done = batches = 0
    loads, dumps = orjson.loads, orjson.dumps
    result: dict[str, Any] = {}
    while done < count:
        messages = consumer.consume(BATCH, 0.2)
        if not messages:
            continue
        last: dict[int, int] = {}
        for message in messages:
            order = loads(message.value() or b"")
            if keep(order):
                producer.produce(sink, dumps(enrich(order)), message.key())
            # A fetched record always has both; confluent-kafka types them optional.
            last[message.partition()] = message.offset()  # type: ignore[index, assignment]
        done += len(messages)
        batches += 1
        clock.mark_steady(done)
        if done >= count:  # the finish line, as for spate: every record processed
            result = clock.report("raw confluent-kafka", count, batches)
        producer.flush()
        consumer.commit(
            offsets=[CkTopicPartition(source, p, o + 1) for p, o in last.items()],
            asynchronous=False,
        )
    consumer.close()
    return result


async def spate_run(bootstrap: str, source: str, sink: str, count: int, guarantee: str) -> Any:
    app = w1_app(
        f"w1-{guarantee}",
        f"kafka://{bootstrap}",
        source,
        sink,
        f"g-{source}",
        processing_guarantee=guarantee,
    )
    async with app.connect() as broker:
        await app.prepare(broker)
        stop = asyncio.Event()
        clock = Clock()
        runner = asyncio.create_task(app.run_processors(broker, stop))
        # In-process counters while records flow (no admin requests competing with the
        # pipeline). The finish line, as for the raw loop: every record processed and its
        # outputs handed over; the last batch's flush and commit, which the raw loop too
        # makes after its finish line, are then checked through the broker.
        while (consumed := sum(st.consumed for st in app.stats.values())) < count:
            if consumed:
                clock.mark_steady(consumed)
            if runner.done():
                runner.result()
            await asyncio.sleep(0.005)
        clock.mark_steady(consumed)
        batches = sum(st.batches for st in app.stats.values())
        result = clock.report(f"spate {guarantee}", count, batches)
        committed = 0
        while committed < count:
            await asyncio.sleep(0.05)
            committed = sum(p.committed or 0 for p in await broker.lag(f"g-{source}", [source]))
        stop.set()
        await runner
    return result


def one(args: argparse.Namespace) -> None:
    """Child process: one run on prepared topics, its figures as JSON on stdout."""
    source, sink = args.topics.split(",")
    if args.one == "raw":
        result = raw_loop(args.bootstrap, source, sink, args.records)
    else:
        result = asyncio.run(spate_run(args.bootstrap, source, sink, args.records, args.one))
    print(json.dumps(result))


def prepare(bootstrap: str, records: int) -> str:
    """Fresh input and output topics, the inputs produced: ``"source,sink"``."""
    tag = uuid.uuid4().hex[:8]
    source, sink = f"w1-in-{tag}", f"w1-out-{tag}"

    async def topics() -> None:
        async with spate.connect(f"kafka://{bootstrap}") as broker:
            await broker.create_topic(source, PARTITIONS)
            await broker.create_topic(sink, PARTITIONS)

    asyncio.run(topics())
    produce_inputs(bootstrap, source, records)
    return f"{source},{sink}"


def run_one(kind: str, bootstrap: str, records: int) -> dict[str, Any]:
    """One run in a child process, on fresh topics."""
    command = [sys.executable, __file__, "--one", kind, "--bootstrap", bootstrap]
    command += ["--records", str(records), "--topics", prepare(bootstrap, records)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_all(bootstrap: str, label: str, records: int, rounds: int) -> list[dict[str, Any]]:
    """``rounds`` times (raw, at-least-once, exactly-once), each on fresh topics, each
    result with its ratios to the raw run of its round.

    First an unreported raw run: a broker the script just started spends its first
    minute compiling (the JVM's JIT) on the same two cores, and the runs beside it pay.
    """
    run_one("raw", bootstrap, records)
    results = []
    for round_ in range(1, rounds + 1):
        raw: dict[str, Any] = {}
        for kind in ("raw", "at-least-once", "exactly-once"):
            result = run_one(kind, bootstrap, records)
            raw = raw or result
            result |= {
                "broker": label,
                "round": round_,
                "rate_ratio": result["steady_rate"] / raw["steady_rate"],
                "cpu_ratio": result["steady_cpu_us"] / raw["steady_cpu_us"],
            }
            results.append(result)
    return results


def print_table(results: list[dict[str, Any]], threads: bool) -> None:
    print(
        f"{'broker':<14}{'round':>5}  {'run':<24}{'rec/s':>10}{'steady':>10}{'vs raw':>8}"
        f"{'CPU us/rec':>12}{'vs raw':>8}{'rec/batch':>10}{'RSS MiB':>9}"
    )
    for r in results:
        print(
            f"{r['broker']:<14}{r['round']:>5}  {r['name']:<24}{r['rate']:>10,.0f}"
            f"{r['steady_rate']:>10,.0f}{r['rate_ratio']:>8.0%}{r['steady_cpu_us']:>12.2f}"
            f"{r['cpu_ratio']:>8.2f}{r['records_per_batch']:>10.0f}{r['peak_rss_mib']:>9.0f}"
        )
        if threads:
            busy = sorted(r["threads"].items(), key=lambda item: -item[1])
            print(" " * 21 + "  ".join(f"{name} {cpu:.2f}s" for name, cpu in busy if cpu > 0))
    print("\nmedian over rounds (steady records/s and CPU per record, each vs its round's raw):")
    for broker in dict.fromkeys(r["broker"] for r in results):
        for name in dict.fromkeys(r["name"] for r in results if r["broker"] == broker):
            runs = [r for r in results if r["broker"] == broker and r["name"] == name]
            rate = statistics.median(r["rate_ratio"] for r in runs)
            cpu = statistics.median(r["cpu_ratio"] for r in runs)
            print(f"  {broker:<14}{name:<24}{rate:>8.0%}{cpu:>8.2f}x CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--tansu", action="store_true")
    parser.add_argument("--only-tansu", action="store_true", help="Tansu without Apache Kafka")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", action="store_true", help="CPU per thread of each run")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--topics", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args)
        return
    servers = []
    try:
        results: list[dict[str, Any]] = []
        bootstrap = args.bootstrap
        if bootstrap is None and not args.only_tansu:
            server = start_apache_kafka(
                Path(tempfile.mkdtemp(prefix="w1-kafka-")), cache_dir=REPO / ".cache"
            )
            servers.append(server)
            bootstrap = server.bootstrap
        if bootstrap is not None:
            label = "Apache Kafka" if args.bootstrap is None else args.bootstrap
            results = run_all(bootstrap, label, args.records, args.rounds)
        if args.tansu or args.only_tansu:
            tansu = start_tansu(Path(tempfile.mkdtemp(prefix="w1-tansu-")))
            servers.append(tansu)
            results += run_all(tansu.bootstrap, "Tansu", args.records, args.rounds)
    finally:
        for server in servers:
            server.stop()
    print(f"W1 on Kafka, {args.records} records, {PARTITIONS} partitions, batch {BATCH}")
    print_table(results, args.threads)


if __name__ == "__main__":
    main()
