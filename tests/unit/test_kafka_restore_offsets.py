"""What a store's restore asks Kafka — the group's committed offsets and the
changelog's settled end — without a broker: the admin requests are answered here."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
)
from confluent_kafka import TopicPartition as CkTopicPartition

from spate.brokers.kafka.broker import KafkaBroker
from spate.brokers.url import parse_broker_url
from spate.errors import BrokerError
from spate.record import TopicPartition

CHANGELOG = TopicPartition("app-sums-state-changelog", 1)


class InstantClock:
    """Sleeps move it on at once."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def time_ms(self) -> int:
        return int(self.now_s * 1000)

    def monotonic(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.now_s += seconds


def broker_answering(written: int, stable: Iterator[int]) -> tuple[KafkaBroker, InstantClock]:
    """A broker whose partition has records up to ``written`` and whose last stable
    offset is the next of ``stable`` at each question."""
    clock = InstantClock()
    broker = KafkaBroker.from_url(parse_broker_url("kafka://127.0.0.1:9"), {"clock": clock})

    async def offsets(
        tps: Mapping[TopicPartition, Any],
        spec: Any,
        isolation: Any = IsolationLevel.READ_COMMITTED,
    ) -> dict[TopicPartition, int]:
        (tp,) = tps
        return {tp: written if isolation == IsolationLevel.READ_UNCOMMITTED else next(stable)}

    broker._offsets = offsets  # type: ignore[method-assign]
    return broker, clock


def test_the_end_is_the_stable_offset_where_no_transaction_is_open() -> None:
    broker, clock = broker_answering(378, iter([378]))
    assert asyncio.run(broker.settled_end(CHANGELOG, 60)) == 378
    assert clock.now_s == 0


def test_the_end_waits_for_a_transaction_that_hides_later_committed_ones() -> None:
    """A killed worker's transaction open at 61 holds the stable offset there, while
    the next owner's transactions after it committed their flushes (records up to 378)
    and their consumer offsets: a restore reading only to 61 would lose those batches.
    Once the open transaction is aborted the stable offset passes every record
    written before the question (380: after the markers)."""
    broker, clock = broker_answering(378, iter([61, 61, 61, 380]))
    assert asyncio.run(broker.settled_end(CHANGELOG, 60)) == 380
    assert clock.now_s > 0


def test_a_transaction_that_never_ends_is_a_transient_error_naming_it() -> None:
    broker, _ = broker_answering(378, iter(lambda: 61, None))
    with pytest.raises(BrokerError, match=r"changelog\[1\].*open at offset 61") as caught:
        asyncio.run(broker.settled_end(CHANGELOG, 5))
    assert caught.value.transient


def test_committed_offsets_are_asked_again_while_a_transaction_commits_them() -> None:
    """``require_stable``: the broker refuses with UNSTABLE_OFFSET_COMMIT while a
    transaction that commits the group's offsets is completing, which librdkafka
    flags as not retriable; the restore must wait for it, not stop the processor."""
    clock = InstantClock()
    broker = KafkaBroker.from_url(parse_broker_url("kafka://127.0.0.1:9"), {"clock": clock})
    source = TopicPartition("in", 1)
    answers = 0

    class Admin:
        def list_consumer_group_offsets(
            self, requests: list[Any], **options: Any
        ) -> dict[str, concurrent.futures.Future[Any]]:
            nonlocal answers
            answers += 1
            assert options["require_stable"]
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            if answers < 3:
                future.set_exception(KafkaException(KafkaError(KafkaError.UNSTABLE_OFFSET_COMMIT)))
            else:
                future.set_result(
                    ConsumerGroupTopicPartitions("g", [CkTopicPartition("in", 1, 800)])
                )
            return {"g": future}

    broker._client = Admin  # type: ignore[assignment,method-assign]
    assert asyncio.run(broker.committed("g", [source])) == {source: 800}
    assert answers == 3
