"""The three benchmark loops, on any broker through the contract only.

Each loop works per batch: one ``send_many`` and one ``flush`` per batch sent, one
``fetch`` per batch received. ``on_batch`` (progress) and ``on_line`` (interval
lines) are called per batch too, so the loops know nothing of terminals.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from spate.bench.latency import Latencies
from spate.bench.report import IntervalReport, Summary
from spate.bench.schedule import Schedule
from spate.brokers.base import Broker, Consumer, Outgoing
from spate.errors import BrokerError, CoordinationError

OnBatch = Callable[[int], None]
"""Told the number of records done so far, after each batch."""
OnLine = Callable[[str], None]
"""Given each interval's line of text."""

FETCH_MAX = 500
SEND_TIME = struct.Struct(">d")
"""An e2e record starts with its intended send time: wall-clock seconds, big-endian
float64, so a consumer in another process can read it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProduceSettings:
    topic: str
    records: int
    record_size: int
    throughput: float | None = None
    """Records a second; None sends as fast as acknowledgements allow."""
    keys: int = 0
    """Distinct keys, used in turn; 0 sends records without a key."""
    batch_size: int = 1
    """Records per flush; 1 is one acknowledgement per record."""
    interval_s: float = 5.0


def _template(topic: str, payload: bytes, keys: int, batch_size: int) -> list[Outgoing]:
    """Enough records that any batch is one slice of it, whatever key comes first."""
    names: list[bytes | None] = [f"key-{i}".encode() for i in range(keys)] or [None]
    return [(topic, payload, names[i % len(names)], None) for i in range(batch_size + len(names))]


async def produce(
    broker: Broker, settings: ProduceSettings, on_batch: OnBatch, on_line: OnLine
) -> Summary:
    """Publish ``settings.records`` records and measure each batch's acknowledgement:
    the latency of every record in a batch is from the batch's first send to the
    return of its flush (for one-record batches, exactly that record's)."""
    template = _template(
        settings.topic, bytes(settings.record_size), settings.keys, settings.batch_size
    )
    cycle = max(settings.keys, 1)
    latencies = Latencies()
    clock = time.perf_counter
    start = clock()
    schedule = Schedule(settings.records, settings.throughput, start)
    interval = IntervalReport("sent", settings.interval_s, start)
    sent = 0
    async with broker.producer() as producer:
        while sent < settings.records:
            now = clock()
            due = schedule.due_by(now)
            if due <= sent:
                await asyncio.sleep(schedule.wait_s(sent, now))
                continue
            count = min(due - sent, settings.batch_size)
            offset = sent % cycle
            producer.send_many(template[offset : offset + count])
            await producer.flush()
            done = clock()
            latencies.add(done - now, count)
            sent += count
            interval.add(count, count * settings.record_size)
            interval.add_latencies((done - now) * count, count, done - now)
            _report(interval, done, on_line)
            on_batch(sent)
        elapsed_s = clock() - start  # closing the producer is not publishing
    return Summary(
        mode="produce",
        topic=settings.topic,
        records=sent,
        bytes=sent * settings.record_size,
        elapsed_s=elapsed_s,
        latency=latencies,
        target_rate=settings.throughput,
    )


def _report(interval: IntervalReport, now: float, on_line: OnLine) -> None:
    line = interval.line(now)
    if line is not None:
        on_line(line)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadSettings:
    topic: str
    records: int
    timeout_s: float
    """Give up when no record arrived for this long."""
    interval_s: float = 5.0


async def _receive(
    consumer: Consumer,
    settings: ReadSettings,
    on_batch: OnBatch,
    on_line: OnLine,
    *,
    commit: bool,
    latencies: Latencies | None,
) -> Summary:
    """Fetch until ``records`` records came (an error after ``timeout_s`` without any);
    with ``latencies``, each record's latency is now minus the send time it carries."""
    topic, records, timeout_s = settings.topic, settings.records, settings.timeout_s
    interval_s = settings.interval_s
    clock = time.perf_counter
    start = last_record = clock()
    interval = IntervalReport("received", interval_s, start)
    received = size = 0
    unpack = SEND_TIME.unpack_from
    while received < records:
        batch = await consumer.fetch(min(FETCH_MAX, records - received), 0.5)
        now = clock()
        if not batch:
            if now - last_record > timeout_s:
                raise BrokerError(
                    f"only {received:,} of {records:,} records arrived on {topic!r}: none for "
                    f"{timeout_s:g} s; produce more first, or pass a smaller --records"
                )
            continue
        last_record = now
        batch_size = sum(len(record.value) for record in batch)
        if latencies is not None:
            wall = time.time()
            late = [wall - unpack(record.value)[0] for record in batch]
            latencies.extend(late)
            interval.add_latencies(sum(late), len(late), max(late))
        received += len(batch)
        size += batch_size
        interval.add(len(batch), batch_size)
        if commit:
            await consumer.commit({record.topic_partition: record.offset for record in batch})
        _report(interval, now, on_line)
        on_batch(received)
    return Summary(
        mode="e2e" if latencies is not None else "consume",
        topic=topic,
        records=received,
        bytes=size,
        elapsed_s=last_record - start,
        latency=latencies,
    )


async def consume(
    broker: Broker,
    settings: ReadSettings,
    group: str,
    *,
    commit: bool,
    on_batch: OnBatch,
    on_line: OnLine,
) -> Summary:
    """Read ``records`` records from the start of ``topic`` as ``group``, timed from
    the first fetch (joining the group included) to the last record."""
    async with broker.consumer([settings.topic], group, offset_reset="earliest") as consumer:
        return await _receive(consumer, settings, on_batch, on_line, commit=commit, latencies=None)


async def e2e_receive(
    consumer: Consumer,
    settings: ReadSettings,
    partitions: int,
    *,
    ready: Callable[[], None],
    on_line: OnLine,
) -> Summary:
    """Join, call ``ready`` once every partition of ``topic`` is owned (so the producer
    never waits for the join), then read ``records`` records timed by their send times."""
    deadline = time.perf_counter() + settings.timeout_s
    while len(consumer.assignment()) < partitions:
        if time.perf_counter() > deadline:
            raise CoordinationError(
                f"the e2e consumer did not get the partitions of {settings.topic!r} "
                f"in {settings.timeout_s:g} s"
            )
        await consumer.fetch(FETCH_MAX, 0.2)
    ready()
    return await _receive(
        consumer, settings, lambda _done: None, on_line, commit=False, latencies=Latencies()
    )


async def e2e_send(
    broker: Broker,
    topic: str,
    records: int,
    rate: float,
    record_size: int,
    on_batch: OnBatch,
) -> None:
    """Publish ``records`` records on an open-loop schedule at ``rate`` a second, each
    carrying the wall-clock time it was *due*: a stall of this loop or the broker
    shows as latency of the records due meanwhile instead of slowing the schedule."""
    padding = bytes(record_size - SEND_TIME.size)
    pack = SEND_TIME.pack
    clock = time.perf_counter
    start = clock()
    wall_start = time.time()
    schedule = Schedule(records, rate, start)
    sent = 0
    async with broker.producer() as producer:
        while sent < records:
            now = clock()
            due = min(schedule.due_by(now), sent + FETCH_MAX)
            if due <= sent:
                await asyncio.sleep(schedule.wait_s(sent, now))
                continue
            producer.send_many(
                (topic, pack(wall_start + i / rate) + padding, None, None) for i in range(sent, due)
            )
            await producer.flush()
            sent = due
            on_batch(sent)
