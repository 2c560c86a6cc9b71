"""The processors ``Retry(via_topics=[...])`` adds: one per retry topic (issue 11).

The App declares a processor; with delays in ``via_topics`` it runs as a chain:

    orders ──fails──▶ orders.retry.1 ──fails──▶ orders.retry.2 … ──fails──▶ orders.dlq
    (bill)            (bill.retry.1,             (bill.retry.2,
                       group billing.retry.1)     group billing.retry.2)

Each level is a processor of its own — a group, a consumer, stats and metrics of its
own — so a level waiting for its records to be due holds none of the source's
partitions. Every level runs the same operators (the stream's operator list is
shared, so operators chained after ``app.stream()`` returned are there too), with the
same retries in place, timeout and ``on_error`` policy; only the last level hands a
record that still fails to that policy. Retry topics are partitioned like their
source and decoded with its serde; the App creates them on start.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from spate.runtime.lifecycle import Processor
from spate.runtime.retrytopics import retry_topic
from spate.topic import Topic


def with_retry_topics(processor: Processor) -> list[Processor]:
    """``processor`` (failing over to the first retry topic) and a processor per
    level, or ``[processor]`` alone when its ``Retry`` has no ``via_topics``."""
    delays = tuple(processor.retry.via_topics) if processor.retry is not None else ()
    if not delays:
        return [processor]
    stream = processor.stream
    sources = stream.topics
    chain = [
        dataclasses.replace(
            processor, retry_routes={t.name: (retry_topic(t.name, 1), delays[0]) for t in sources}
        )
    ]
    for level in range(1, len(delays) + 1):
        topics: list[Topic[Any]] = [
            Topic(name=retry_topic(t.name, level), partitions=t.partitions, serde=t.serde)
            for t in sources
        ]
        routes = (
            {
                retry_topic(t.name, level): (retry_topic(t.name, level + 1), delays[level])
                for t in sources
            }
            if level < len(delays)
            else {}
        )
        dead_letters = {
            retry_topic(source, level): target for source, target in processor.dead_letters.items()
        }
        chain.append(
            dataclasses.replace(
                processor,
                stream=stream._retrying(
                    topics, f"{stream.group}.retry.{level}", f"{stream.name}.retry.{level}"
                ),
                dead_letters=dead_letters,
                retry_routes=routes,
                delayed=True,
            )
        )
    return chain
