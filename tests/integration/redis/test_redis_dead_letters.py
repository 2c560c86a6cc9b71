"""Dead letters on Redis Streams: the poison-record scenario of issue 11 (see
:mod:`dead_letter_checks`), through the App runtime on a real server."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

import spate
from dead_letter_checks import check_poison_and_failures, check_transient_failure
from dead_letter_kills import kill_during_retry_topics
from dedup_checks import check_the_same_keys_twice_across_a_restart
from retry_topic_checks import check_retry_topics
from spate.config import Settings
from spate.runtime.worker import Worker
from spate.streams.stream import Stream
from spate.topic import Topic


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_poison_and_failing_records_are_dead_lettered_and_the_rest_flows(
    redis_url: str, guarantee: str
) -> None:
    check_poison_and_failures(redis_url, guarantee)


def test_a_record_failing_for_3_s_is_retried_via_the_retry_topics(redis_url: str) -> None:
    check_retry_topics(redis_url)


def test_a_transient_failure_succeeds_on_the_third_attempt_without_a_dead_letter(
    redis_url: str,
) -> None:
    check_transient_failure(redis_url)


@pytest.mark.parametrize("aside", ["dead_letter", "retry_topic"])
async def test_a_replayed_batch_sets_its_records_aside_once_under_effectively_once(
    redis_url: str, aside: str
) -> None:
    """A batch whose commit never happened is read again by the next worker and sets its
    failed record aside again: the copy carries the same dedup id and Redis drops it."""
    source = f"in-{uuid.uuid4().hex[:8]}"
    target = f"{source}.dlq" if aside == "dead_letter" else f"{source}.retry.1"
    settings = Settings(broker=redis_url, processing_guarantee="exactly-once", fetch_timeout_s=0.05)
    async with spate.connect(redis_url) as broker:
        for topic in (source, target):
            await broker.create_topic(topic, 1)
        async with broker.producer() as producer:
            for value in (b"1", b"boom", b"3"):
                producer.send(source, value, key=b"k")
            await producer.flush()

        def worker() -> Worker:
            stream = Stream([Topic.of(source, serde="raw")], f"g-{source}", "p")
            stream.map(lambda v: int(v) if v != b"boom" else 1 // 0)
            if aside == "dead_letter":
                return Worker("app", stream, broker, settings, dead_letters={source: target})
            return Worker(
                "app",
                stream,
                broker,
                settings,
                on_error="skip",
                retry_routes={source: (target, 60)},
            )

        async def refuse(producer: object, through: object) -> None:
            raise RuntimeError("commit refused")

        first = worker()
        first.pre_commit.append(refuse)
        with pytest.raises(RuntimeError, match="commit refused"):
            await first.run(asyncio.Event())
        stop = asyncio.Event()
        second = worker()
        running = asyncio.create_task(second.run(stop))
        for _ in range(200):
            if not (await broker.lag(f"g-{source}", [source]))[0].lag:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await running
        async with broker.reader(target) as reader:
            written = await reader.read_to_end(10.0)
    assert [r.value for r in written] == [b"boom"]
    assert first.stats.dead_letters + first.stats.delayed_retries == 0  # never durable
    assert second.stats.dead_letters + second.stats.delayed_retries == 1


def test_the_same_keys_twice_across_a_restart_are_processed_once(
    redis_url: str, tmp_path: Path
) -> None:
    check_the_same_keys_twice_across_a_restart(redis_url, tmp_path)


@pytest.mark.slow
def test_kill_9_during_retries_neither_loses_nor_duplicates_a_dead_letter(
    tmp_path: Path, redis_url: str
) -> None:
    """Effectively-once: the dead letters and retry moves carry ids the broker drops a
    replay's copies by, as outputs do."""
    kill_during_retry_topics(tmp_path, redis_url)
