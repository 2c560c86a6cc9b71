"""Effectively-once scenarios every broker with ``dedup_on_publish`` runs (NATS, Redis).

The dedup id of an output once named only the app, the processor and the source
record's (topic, partition, offset, index). Offsets restart at 0 when an input topic is
deleted and created again, so the new records' answers got the old answers' ids and the
broker dropped them as duplicates, while the worker reported ``produced=100 errors=0``.
Now the id names the topic's incarnation and the group, and every output the broker
drops as a duplicate is counted (``ProcessorStats.duplicates``) and logged.

Each tier subclasses :class:`EffectivelyOnceApp` with a ``url`` fixture giving its
real server, as the broker contract suite does.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

import spate
from spate import App
from spate.record import Record, TopicPartition
from spate.runtime.delivery import EffectivelyOnce
from spate.runtime.stats import ProcessorStats
from spate.testing import TestApp
from spate.topic import Topic

PARTITIONS = 2
COUNT = 100


def doubling_app(url: str) -> tuple[App, Topic[int], Topic[int]]:
    """An exactly-once App whose processor ``double`` answers every number with 2n."""
    tag = uuid.uuid4().hex[:8]
    app = App(f"eo{tag}", broker=url, processing_guarantee="exactly-once", batch_size=30)
    numbers = app.topic(f"numbers{tag}", partitions=PARTITIONS, value_type=int)
    doubled = app.topic(f"doubled{tag}", partitions=PARTITIONS, value_type=int)

    @app.handler(numbers, output=doubled)
    def double(n: int) -> int:
        return 2 * n

    return app, numbers, doubled


async def _run(app: App, url: str, numbers: Topic[int], values: range) -> None:
    """Run the App until it answered ``values``, then stop it (drain, commit, release)."""
    async with TestApp(app, broker=url, timeout_s=30) as t:
        for n in values:
            t.send(numbers, n, key=n)
        await t.run_until_idle_async()


class EffectivelyOnceApp:
    """The scenarios; a subclass provides the ``url`` fixture."""

    async def test_every_record_of_a_recreated_input_is_answered(
        self, url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        app, numbers, doubled = doubling_app(url)
        first, second = range(COUNT), range(1000, 1000 + COUNT)
        await _run(app, url, numbers, first)
        async with spate.connect(url) as broker:
            await broker.delete_topic(numbers.name)
            await broker.create_topic(numbers.name, PARTITIONS)
        with caplog.at_level(logging.INFO, logger="spate.runtime"):
            async with TestApp(app, broker=url, timeout_s=30) as t:
                for n in second:
                    t.send(numbers, n, key=n)
                await t.run_until_idle_async()
                answers = await t.outputs_async(doubled)
        missing = sorted({2 * n for n in second} - set(answers))
        assert not missing, f"{len(missing)} of {COUNT} new inputs unanswered: {missing[:10]}"
        assert sorted(answers) == sorted(2 * n for n in [*first, *second])
        assert app.stats["double"].duplicates == 0
        [stop] = [r.getMessage() for r in caplog.records if "event=stop" in r.getMessage()]
        # The App's counters add up over both runs in this process.
        assert stop.endswith(f"produced={2 * COUNT} errors=0 duplicates=0")

    async def test_a_replayed_batch_s_dropped_outputs_are_counted_and_logged(
        self, url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A successor that replays a published but uncommitted batch (a crash between
        flush and commit) publishes the same ids; the broker drops them, and the drop is
        counted and logged once for the flush, with the number of outputs dropped."""
        tag = uuid.uuid4().hex[:8]
        source, sink, group = f"in{tag}", f"out{tag}", f"g{tag}"
        async with spate.connect(url) as broker:
            await broker.create_topic(source, 1)
            await broker.create_topic(sink, 1)
            async with broker.producer() as producer:
                for n in range(10):
                    producer.send(source, b"%d" % n)
            async with broker.consumer([source], group) as consumer:
                records: list[Record] = []
                while len(records) < 10:
                    records += await consumer.fetch(10, 1.0)
                outputs: list[tuple[str, bytes, bytes | None, Any]] = [
                    (sink, r.value, None, r) for r in records
                ]
                through = {TopicPartition(source, 0): records[-1].offset}
                runs: list[ProcessorStats] = []
                for _ in ("first owner", "successor replaying the batch"):
                    stats = ProcessorStats(processor="double", group=group)
                    async with broker.producer() as producer:
                        delivery = EffectivelyOnce(
                            producer,
                            consumer,
                            stats,
                            prefix=f"app/{group}/double",
                            describe=broker.describe_topic,
                        )
                        with caplog.at_level(logging.INFO, logger="spate.runtime"):
                            await delivery.begin_batch()
                            await delivery.end_batch(outputs, through, records)
                            await delivery.settle()
                    runs.append(stats)
            [lag] = await broker.lag("nobody", [sink])
        assert lag.end_offset == 10, "the replay's copies must be dropped"
        assert [s.duplicates for s in runs] == [0, 10]
        logged = [
            r.getMessage() for r in caplog.records if "event=duplicates_dropped" in r.getMessage()
        ]
        assert logged == [f"event=duplicates_dropped processor=double group={group} count=10"]
