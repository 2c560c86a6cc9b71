"""W1 on NATS JetStream: spate beside a raw nats-py loop doing the same work.

Both read the same 200,000 orders (4 partitions, one stream per partition, as spate
lays topics out), decode, keep ``amount >= 10``, add a field, encode, publish to the
output partition of the key and acknowledge. The raw loop is what a careful nats-py
user writes by hand: one durable AckAll pull consumer per partition, ``fetch`` in
batches, ``publish_async`` for every output, gather the PubAcks, ``ack_sync`` the last
message of the batch. spate runs the W1 App of ``benchmarks/w1.py`` (at-least-once).
Usage::

    python benchmarks/nats_w1.py --records 200000            # starts its own nats-server
    python benchmarks/nats_w1.py --nats nats://127.0.0.1:4222

Without ``--nats`` the server runs without ``sync_interval: always`` (the default fsync
policy) so that the figures compare CPU work, not the disk; ``--sync-always`` turns it on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import zlib
from collections.abc import Iterator

import nats
import nats.errors
import orjson
from nats.js.api import AckPolicy, ConsumerConfig
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

from spate.brokers.nats.admin import stream_name
from spate.testing.nats_server import NatsServer

RAW_IN, RAW_OUT = "raw-orders", "raw-orders-enriched"
BATCH = 500


async def raw_loop(url: str, orders: list[tuple[bytes, bytes]]) -> Result:
    await prepare_topics(url, RAW_IN, RAW_OUT, orders)
    nc = await nats.connect(url)
    js = nc.jetstream()
    subs = []
    for p in range(PARTITIONS):
        stream = stream_name(RAW_IN, p)
        await js.add_consumer(
            stream,
            ConsumerConfig(durable_name="raw", ack_policy=AckPolicy.ALL, max_ack_pending=-1),
        )
        subs.append(await js.pull_subscribe_bind("raw", stream))
    loads, dumps, crc32 = orjson.loads, orjson.dumps, zlib.crc32
    done = 0
    wall, cpu = time.perf_counter(), time.process_time()
    while done < len(orders):
        for sub in subs:
            try:
                msgs = await sub.fetch(BATCH, timeout=0.05)
            except nats.errors.TimeoutError:
                continue
            futures = []
            for msg in msgs:
                order = loads(msg.data)
                if keep(order):
                    key = msg.headers["Spate-Key"] if msg.headers else ""
                    subject = f"{RAW_OUT}.{crc32(key.encode()) % PARTITIONS}"
                    futures.append(
                        await js.publish_async(
                            subject, dumps(enrich(order)), headers={"Spate-Key": key}
                        )
                    )
            await asyncio.gather(*futures)
            await msgs[-1].ack_sync()
            done += len(msgs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await nc.close()
    return Result("raw nats-py", len(orders), wall, cpu)


@contextlib.contextmanager
def _server(url: str | None, sync_always: bool) -> Iterator[str]:
    if url:
        yield url
        return
    with NatsServer(sync_always=sync_always) as server:
        yield server.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--nats", default=None, help="an external server (default: start one)")
    parser.add_argument("--sync-always", action="store_true")
    args = parser.parse_args()
    orders = make_orders(args.records)
    with _server(args.nats, args.sync_always) as url:
        raw = asyncio.run(raw_loop(url, orders))
        ours = spate_pipeline(url, orders)
    print_table(f"W1 on NATS, {args.records} records, {PARTITIONS} partitions", [raw, ours])


if __name__ == "__main__":
    main()
