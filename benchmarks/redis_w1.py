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
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import orjson
import redis
import redis.asyncio as aioredis
from w1 import (
    PARTITIONS,
    Result,
    enrich,
    keep,
    make_orders,
    prepare_topics,
    print_table,
    spate_pipeline,
)

from spate.testing.redis_server import RedisServer

RAW_IN, RAW_OUT, RAW_GROUP = "raw-orders", "raw-orders-enriched", "raw"
BATCH = 500


async def raw_loop(url: str, orders: list[tuple[bytes, bytes]]) -> Result:
    await prepare_topics(url, RAW_IN, RAW_OUT, orders)
    client = aioredis.Redis.from_url(url)
    streams = [f"{RAW_IN}:{p}" for p in range(PARTITIONS)]
    for stream in streams:
        await client.xgroup_create(stream, RAW_GROUP, id="0")
    loads, dumps, crc32 = orjson.loads, orjson.dumps, zlib.crc32
    done = 0
    wall, cpu = time.perf_counter(), time.process_time()
    while done < len(orders):
        for stream in streams:
            # The RESP2 reply: [[stream, [(id, fields), ...]]] (redis-py's type is the
            # union with RESP3's dict reply).
            reply = cast(
                "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]",
                await client.xreadgroup(RAW_GROUP, "c", {stream: ">"}, count=BATCH),
            )
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
        raw = asyncio.run(raw_loop(url, orders))
        ours = spate_pipeline(url, orders)
    print_table(f"W1 on Redis, {args.records} records, {PARTITIONS} partitions", [raw, ours])


if __name__ == "__main__":
    main()
