"""W1 on Kafka: spate (at-least-once and exactly-once) beside a raw confluent-kafka loop.

Every run gets fresh topics and a fresh group on the same broker and does the same
work: batch consume, decode, keep ``amount >= 10``, add a field, encode, produce,
commit once per batch after the batch's outputs are acknowledged. Each run is its own
process, so its CPU time and peak RSS are its own. "Steady" figures start at the
first commit (the group has joined and the first batch is done).

Apache Kafka is started from the cached jars (spate.testing.kafka_server) unless
``--bootstrap host:port`` is given; ``--tansu`` adds Tansu. Usage::

    python benchmarks/kafka_w1.py --records 200000 [--bootstrap 127.0.0.1:9092] [--tansu]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
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

    def report(self, name: str, records: int) -> dict[str, Any]:
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
        }


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
    done = 0
    loads, dumps = orjson.loads, orjson.dumps
    while done < count:
        messages = consumer.consume(BATCH, 0.2)
        if not messages:
            continue
        last: dict[int, int] = {}
        for message in messages:
            order = loads(message.value())
            if keep(order):
                producer.produce(sink, dumps(enrich(order)), message.key())
            last[message.partition()] = message.offset()
        producer.flush()
        consumer.commit(
            offsets=[CkTopicPartition(source, p, o + 1) for p, o in last.items()],
            asynchronous=False,
        )
        done += len(messages)
        clock.mark_steady(done)
    result = clock.report("raw confluent-kafka", count)
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
        # In-process counters while records flow (no admin requests competing with
        # the pipeline), then the broker's committed offsets for the finish line.
        while (consumed := sum(st.consumed for st in app.stats.values())) < count:
            if consumed:
                clock.mark_steady(consumed)
            if runner.done():
                runner.result()
            await asyncio.sleep(0.005)
        clock.mark_steady(consumed)
        committed = 0
        while committed < count:
            await asyncio.sleep(0.01)
            committed = sum(p.committed or 0 for p in await broker.lag(f"g-{source}", [source]))
        result = clock.report(f"spate {guarantee}", count)
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


def run_all(bootstrap: str, label: str, records: int) -> list[dict[str, Any]]:
    results = []
    for kind in ("raw", "at-least-once", "exactly-once"):
        command = [sys.executable, __file__, "--one", kind, "--bootstrap", bootstrap]
        command += ["--records", str(records), "--topics", prepare(bootstrap, records)]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["broker"] = label
        results.append(result)
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        f"{'broker':<14}{'run':<24}{'rec/s':>10}{'steady':>10}{'vs raw':>8}"
        f"{'CPU us/rec':>12}{'vs raw':>8}{'RSS MiB':>9}"
    )
    raw: dict[str, Any] = {}
    for r in results:
        if r["name"].startswith("raw"):
            raw = r
        print(
            f"{r['broker']:<14}{r['name']:<24}{r['rate']:>10,.0f}{r['steady_rate']:>10,.0f}"
            f"{r['steady_rate'] / raw['steady_rate']:>8.0%}{r['steady_cpu_us']:>12.1f}"
            f"{r['steady_cpu_us'] / raw['steady_cpu_us']:>8.2f}{r['peak_rss_mib']:>9.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--tansu", action="store_true")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--topics", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args)
        return
    servers = []
    try:
        bootstrap = args.bootstrap
        if bootstrap is None:
            server = start_apache_kafka(
                Path(tempfile.mkdtemp(prefix="w1-kafka-")), cache_dir=REPO / ".cache"
            )
            servers.append(server)
            bootstrap = server.bootstrap
        results = run_all(bootstrap, "Apache Kafka", args.records)
        if args.tansu:
            tansu = start_tansu(Path(tempfile.mkdtemp(prefix="w1-tansu-")))
            servers.append(tansu)
            results += run_all(tansu.bootstrap, "Tansu", args.records)
    finally:
        for server in servers:
            server.stop()
    print(f"W1 on Kafka, {args.records} records, {PARTITIONS} partitions, batch {BATCH}")
    print_table(results)


if __name__ == "__main__":
    main()
