"""W1 on Redis Streams: spate beside a raw redis-py loop doing the same work.

Both read the same orders (4 partitions, one stream per partition, as spate lays topics
out), decode, keep ``amount >= 10``, add a field, encode, publish to the output
partition of the key and acknowledge. The raw loop is what a careful redis-py user
writes by hand: ``XREADGROUP`` batches of 500 per partition, one pipeline per batch
with an ``XADD`` per output and the ``XACK`` of the batch. spate runs the W1 App of
``benchmarks/w1.py`` (at-least-once). Usage::

    python benchmarks/redis_w1.py --records 200000           # starts its own redis-server
    python benchmarks/redis_w1.py --redis redis://127.0.0.1:6379/0

Without ``--redis`` a throw-away server is started without persistence, so the figures
compare the client-side work, not the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from w1 import PARTITIONS, Result, _spate_pipeline, enrich, keep, make_orders

import spate
from spate.testing.redis_server import RedisServer

RAW_IN, RAW_OUT, RAW_GROUP = "raw-orders", "raw-orders-enriched", "raw"
BATCH = 500


async def _prepare_raw(url: str, orders: list[tuple[bytes, bytes]]) -> None:
    async with spate.connect(url) as broker:
        await broker.create_topic(RAW_IN, PARTITIONS)
        await broker.create_topic(RAW_OUT, PARTITIONS)
        async with broker.producer() as producer:
            for start in range(0, len(orders), 10_000):
                for key, value in orders[start : start + 10_000]:
                    producer.send(RAW_IN, value, key=key)
                await producer.flush()


async def _raw_loop(url: str, orders: list[tuple[bytes, bytes]]) -> Result:
    await _prepare_raw(url, orders)
    client = aioredis.Redis.from_url(url)
    streams = [f"{RAW_IN}:{p}" for p in range(PARTITIONS)]
    for stream in streams:
        await client.xgroup_create(stream, RAW_GROUP, id="0")
    loads, dumps, crc32 = orjson.loads, orjson.dumps, zlib.crc32
    done = 0
    wall, cpu = time.perf_counter(), time.process_time()
    while done < len(orders):
        for stream in streams:
            reply = await client.xreadgroup(RAW_GROUP, "c", {stream: ">"}, count=BATCH)
            if not reply:
                continue
            entries = reply[0][1]
            pipe = client.pipeline(transaction=False)
            for _id, fields in entries:
                order = loads(fields[b"v"])
                if keep(order):
                    key = fields.get(b"k", b"")
                    out = f"{RAW_OUT}:{crc32(key) % PARTITIONS}"
                    pipe.xadd(out, {b"v": dumps(enrich(order)), b"k": key})
            pipe.xack(stream, RAW_GROUP, *(entry_id for entry_id, _ in entries))
            await pipe.execute()
            done += len(entries)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await client.aclose()
    return Result("raw redis-py", len(orders), wall, cpu)


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with RedisServer.start(Path(tempfile.mkdtemp(prefix="spate-redis-w1-"))) as server:
        yield server.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--redis", default=None, help="an external server (default: start one)")
    args = parser.parse_args()
    orders = make_orders(args.records)
    with _server(args.redis) as url:
        redis.Redis.from_url(url).flushdb()
        raw = asyncio.run(_raw_loop(url, orders))
        ours = asyncio.run(_spate_pipeline(url, orders))
    print(f"W1 on Redis, {args.records} records, {PARTITIONS} partitions")
    print(f"{'run':<18}{'records/s':>12}{'CPU us/rec':>12}{'rate':>8}{'CPU':>8}")
    for result in (raw, ours):
        print(
            f"{result.name:<18}{result.rate:>12,.0f}{result.cpu_us_per_record:>12.2f}"
            f"{result.rate / raw.rate:>8.0%}{result.cpu_s / raw.cpu_s:>8.2f}"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
