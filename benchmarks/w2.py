"""W2: per user, count and sum ``amount`` in tumbling 10-second event-time windows;
emit each closed window.

The W1 orders (200,000 JSON orders of about 200 bytes, keyed by user, 4 partitions),
each with an event time (its record timestamp): 1,000 orders per second of event time
(``--rate``), so 200 s, twenty windows of 10,000 orders by about 6,300 of the 10,000
users each — most users order once per window, so a window's outputs are 60% of its
inputs, the pessimistic end for spate (every output goes through the broker; the
plain loop only encodes it). Through spate::

    app.stream(orders, group=...).window(tumbling(seconds=10))
        .aggregate(n=agg.count(), revenue=agg.sum("amount")).to(windows)

and beside it, in the same run, a plain Python loop doing the same by hand: decode
with orjson, a dict of windows of dicts of ``[count, sum]`` per user, and each window
encoded with orjson when the event time passes its end. Both leave the last window
open (nothing closes it). spate is timed from its first processed batch (after the
group joined; seen by a thread of the harness, :class:`FirstBatch`, not by a poll on
the event loop the worker runs on) until every input offset is committed; CPU is the
whole process's.
Both sides run ``gc.collect()`` before their clock starts, so the collector has
examined the harness's 200,000 input tuples once (and stopped tracking them) instead
of walking them during a timed collection.
Usage::

    python benchmarks/w2.py --records 200000 --broker memory:// --broker local://
    python benchmarks/w2.py --rate 4000    # 40,000 orders a window: outputs 20% of inputs

or through ``benchmarks/run.py`` (every broker, Kafka included).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import threading
import time
import uuid
from typing import Any

import orjson
from w1 import (
    PARTITIONS,
    Result,
    in_workdir,
    make_orders,
    measure,
    print_table,
    wait_until_committed,
)

import spate
from spate.app import App
from spate.runtime.stats import ProcessorStats
from spate.streams import agg, tumbling

T0 = 1_700_000_000_000
"""The first event time (Kafka reads a timestamp of 0 as "now")."""
RATE = 1_000
"""Orders per second of event time."""
WINDOW_MS = 10_000
Orders = list[tuple[bytes, bytes]]


def event_time(index: int, rate: int) -> int:
    """The event time of order ``index`` at ``rate`` orders per second."""
    return T0 + index * 1000 // rate


def plain_loop(orders: Orders, rate: int = RATE) -> Result:
    """The baseline: the same windows, aggregated and emitted by hand."""
    timed = [(key, value, event_time(i, rate)) for i, (key, value) in enumerate(orders)]
    gc.collect()  # the input's tuples: examined (and untracked) once, before the clock

    def work() -> None:
        out = []
        loads, dumps = orjson.loads, orjson.dumps
        windows: dict[int, dict[bytes, list[Any]]] = {}
        closes_at = None
        for key, value, ts in timed:
            order = loads(value)
            start = ts - ts % WINDOW_MS
            users = windows.get(start)
            if users is None:
                users = windows[start] = {}
                if closes_at is None or start + WINDOW_MS < closes_at:
                    closes_at = start + WINDOW_MS
            acc = users.get(key)
            if acc is None:
                users[key] = [1, order["amount"]]
            else:
                acc[0] += 1
                acc[1] += order["amount"]
            if closes_at is not None and ts >= closes_at:
                for done in sorted(s for s in windows if s + WINDOW_MS <= ts):
                    for user, (n, revenue) in windows.pop(done).items():
                        out.append(
                            dumps(
                                {
                                    "key": user.decode(),
                                    "start": done,
                                    "end": done + WINDOW_MS,
                                    "n": n,
                                    "revenue": revenue,
                                }
                            )
                        )
                closes_at = min((s + WINDOW_MS for s in windows), default=None)

    return measure("plain loop", len(orders), work)


def w2_app(url: str, source: str, sink: str, group: str) -> App:
    """The W2 App, with no side service (no metrics server, lag poller or watchdog)."""
    app = App("w2", broker=url, stall_timeout_s=0)
    # Kafka deletes records by their timestamps: the orders' event times (from T0, in
    # 2023) are far older than its default retention (7 days), so without this it
    # deletes the input as soon as it is written, and the worker, finding nothing,
    # never commits (or, deleted midway, the group's offsets jump past records never
    # processed). The other brokers keep records unless their topic config says otherwise.
    keep = {"retention.ms": "-1"} if url.startswith("kafka://") else None
    orders = app.topic(source, partitions=PARTITIONS, config=keep)
    windows = app.topic(sink, partitions=PARTITIONS)
    (
        app.stream(orders, group=group)
        .window(tumbling(seconds=WINDOW_MS / 1000))
        .aggregate(n=agg.count(), revenue=agg.sum("amount"))
        .to(windows)
    )
    return app


async def produce_timed(broker: spate.Broker, topic: str, orders: Orders, rate: int) -> None:
    """Publish ``orders`` with their event times as timestamps, in flushed chunks."""
    async with broker.producer() as producer:
        for start in range(0, len(orders), 10_000):
            for i in range(start, min(start + 10_000, len(orders))):
                key, value = orders[i]
                producer.send(topic, value, key=key, timestamp_ms=event_time(i, rate))
            await producer.flush()


async def spate_windows_async(url: str, orders: Orders, rate: int = RATE) -> Result:
    suffix = uuid.uuid4().hex[:8]
    source, group = f"w2-orders-{suffix}", f"w2-{suffix}"
    app = w2_app(url, source, f"w2-windows-{suffix}", group)
    async with app.connect() as broker:
        await app.prepare(broker)
        await produce_timed(broker, source, orders, rate)
        gc.collect()  # the harness's input, as for the plain loop: not W2's work
        stats = app.stats[group]
        watcher = FirstBatch(stats)
        stop = asyncio.Event()
        launched = time.perf_counter()
        watcher.start()
        runner = asyncio.create_task(app.run_processors(broker, stop))
        try:
            await wait_until_committed(broker, len(orders), runner, group, source, stats)
        finally:
            watcher.stop()
        wall, cpu = time.perf_counter(), time.process_time()
        stop.set()
        await runner
    if watcher.mark is None:
        raise RuntimeError("every record was committed before the first batch was seen")
    first_wall, first_cpu, before = watcher.mark
    print(
        f"spate {url}: first batch {first_wall - launched:.2f} s after the worker started "
        f"({before} records done by then, not timed)",
        file=sys.stderr,
    )
    return Result(
        f"spate {url.split('://')[0]}://", len(orders) - before, wall - first_wall, cpu - first_cpu
    )


class FirstBatch:
    """Starts the clock at the worker's first finished batch, from a thread of its own.

    A poll on the event loop sees the first batch only when the worker yields: on
    Kafka the worker runs whole batches on the loop, so such a poll could start the
    clock many batches late (the records it missed are subtracted, but the timing of
    the run's start was then the loop's, not the worker's). This thread reads the
    processor's counters every millisecond until the first batch is counted, then
    ends: it costs the timed run nothing. ``mark`` is (wall, CPU, records done).
    """

    def __init__(self, stats: ProcessorStats) -> None:
        self.stats = stats
        self.mark: tuple[float, float, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="w2-first-batch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        stats = self.stats
        while not self._stop.wait(0.001):
            done = stats.consumed
            if done:
                wall, cpu = time.perf_counter(), time.process_time()
                if stats.consumed == done:  # no batch ended between the reads
                    self.mark = (wall, cpu, done)
                    return


def spate_windows(url: str, orders: Orders, rate: int = RATE) -> Result:
    """Through spate: fetch, decode, window, aggregate, emit, publish, commit."""
    return asyncio.run(spate_windows_async(url, orders, rate))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--broker", action="append", default=None)
    parser.add_argument("--rate", type=int, default=RATE, help="orders per second of event time")
    args = parser.parse_args()
    orders = make_orders(args.records)
    results = [plain_loop(orders, args.rate)]
    for url in args.broker or ["memory://", "local://"]:
        results.append(in_workdir(url, lambda u: spate_windows(u, orders, args.rate)))
    title = f"W2, {args.records} records, {args.rate} orders/s, {PARTITIONS} partitions"
    print_table(title, results)


if __name__ == "__main__":
    main()
