"""P1: publish only. The W1 orders (about 200 bytes, keyed by user, 4 partitions)
handed to the broker in batches of 1,000, waiting for each batch's acknowledgement
before the next, as a producing service does (and ``spate bench produce --batch``).
No decoding: P1 measures what each side pays per record to publish it.

spate: ``Producer.send_many`` of the batch and ``flush``. Beside it, the client's own
way, the same per-key partitioning (CRC32 of the key modulo 4, as spate lays out every
topic), the same topics created through spate:

* Kafka: confluent-kafka ``produce`` per record (``linger.ms`` 1, ``consistent_random``,
  as spate configures librdkafka), ``flush`` per batch;
* NATS: nats-py ``publish_async`` per record to the partition's subject, the PubAcks of
  the batch gathered;
* Redis: one redis-py pipeline of ``XADD`` per batch into the partition's stream.

The embedded brokers have no client of their own; there P1 has no baseline. Run it
through ``benchmarks/run.py``, which starts the servers and runs every side in its
own process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib

from w1 import PARTITIONS, Result

import spate

BATCH = 1000
Orders = list[tuple[bytes, bytes]]


async def fresh_topic(url: str) -> str:
    """A new P1 topic with 4 partitions (created through spate, not timed)."""
    topic = f"p1-{uuid.uuid4().hex[:8]}"
    async with spate.connect(url) as broker:
        await broker.create_topic(topic, PARTITIONS)
    return topic


async def spate_publish(url: str, orders: Orders) -> Result:
    topic = f"p1-{uuid.uuid4().hex[:8]}"
    async with spate.connect(url) as broker:
        await broker.create_topic(topic, PARTITIONS)
        outgoing = [(topic, value, key, None) for key, value in orders]
        async with broker.producer() as producer:
            wall, cpu = time.perf_counter(), time.process_time()
            for start in range(0, len(outgoing), BATCH):
                producer.send_many(outgoing[start : start + BATCH])
                await producer.flush()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Result("spate", len(orders), wall, cpu)


def kafka_raw(url: str, orders: Orders) -> Result:
    from confluent_kafka import Producer

    topic = asyncio.run(fresh_topic(url))
    producer = Producer(
        {
            "bootstrap.servers": url.removeprefix("kafka://"),
            "linger.ms": 1,
            "partitioner": "consistent_random",
        }
    )
    produce = producer.produce
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(orders), BATCH):
        for key, value in orders[start : start + BATCH]:
            produce(topic, value, key)
        if producer.flush(30):
            raise RuntimeError("raw Kafka producer: records left unacknowledged")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Result("raw confluent-kafka", len(orders), wall, cpu)


async def nats_raw(url: str, orders: Orders) -> Result:
    import nats

    from spate.brokers.nats.admin import subject

    topic = await fresh_topic(url)
    subjects = [subject(topic, p) for p in range(PARTITIONS)]
    nc = await nats.connect(url)
    js = nc.jetstream()
    crc32 = zlib.crc32
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(orders), BATCH):
        futures = [
            await js.publish_async(
                subjects[crc32(key) % PARTITIONS], value, headers={"Spate-Key": key.decode()}
            )
            for key, value in orders[start : start + BATCH]
        ]
        await asyncio.gather(*futures)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await nc.close()
    return Result("raw nats-py", len(orders), wall, cpu)


async def redis_raw(url: str, orders: Orders) -> Result:
    import redis.asyncio as aioredis

    from spate.brokers.redis.keys import stream

    topic = await fresh_topic(url)
    streams = [stream(topic, p) for p in range(PARTITIONS)]
    client = aioredis.Redis.from_url(url)
    crc32 = zlib.crc32
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(orders), BATCH):
        pipe = client.pipeline(transaction=False)
        for key, value in orders[start : start + BATCH]:
            pipe.xadd(streams[crc32(key) % PARTITIONS], {b"v": value, b"k": key})
        await pipe.execute()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await client.aclose()
    return Result("raw redis-py", len(orders), wall, cpu)
