"""Small programs the multi-process local-broker tests run as separate processes.

    python local_processes.py produce URL TOPIC COUNT INTERVAL_S
    python local_processes.py member URL TOPIC GROUP
    python local_processes.py zombie URL SOURCE SINK GROUP

Each prints one JSON object per line on stdout, so the test can follow it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import spate
from spate.errors import SpateError
from spate.record import TopicPartition


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def produce(url: str, topic: str, count: int, interval_s: float) -> None:
    """Append one record at a time and report when each append returned."""
    async with spate.connect(url) as broker, broker.producer() as producer:
        for i in range(count):
            producer.send(topic, b"%d" % i, partition=0)
            await producer.flush()
            say(index=i, appended=time.time())
            await asyncio.sleep(interval_s)


async def member(url: str, topic: str, group: str) -> None:
    """Consume and commit forever; report the assignment whenever it changes."""
    async with spate.connect(url) as broker, broker.consumer([topic], group) as consumer:
        seen: frozenset[TopicPartition] | None = None
        while True:
            records = await consumer.fetch(100, 0.05)
            if consumer.assignment() != seen:
                seen = consumer.assignment()
                say(assignment=sorted(tp.partition for tp in seen))
            last: dict[TopicPartition, int] = {}
            for record in records:
                last[record.topic_partition] = record.offset
            if last:
                await consumer.commit(last)


async def zombie(url: str, source: str, sink: str, group: str) -> None:
    """Fetch a batch, wait for a line on stdin (the test pauses us meanwhile), then try
    to commit and to publish transactionally; report what the broker said."""
    async with spate.connect(url) as broker, broker.consumer([source], group) as consumer:
        producer = broker.producer(transactional_id="zombie")
        records: list[spate.Record] = []
        while not records:
            records = await consumer.fetch(100, 0.1)
        say(fetched=len(records))
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        through = {records[-1].topic_partition: records[-1].offset}
        try:
            await consumer.commit(through)
            say(commit="ok")
        except SpateError as exc:
            say(commit=type(exc).__name__)
        await producer.begin_transaction()
        producer.send(sink, b"zombie output")
        try:
            await producer.commit_transaction(consumer, through)
            say(transaction="ok")
        except SpateError as exc:
            say(transaction=type(exc).__name__)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "produce":
        asyncio.run(produce(args[0], args[1], int(args[2]), float(args[3])))
    elif command == "member":
        asyncio.run(member(*args))
    else:
        asyncio.run(zombie(*args))
