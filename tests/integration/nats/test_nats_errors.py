"""No nats-py exception leaves the adapter: with the server gone, every call fails
with a spate error (and a fetch simply finds nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import spate
from spate.brokers.nats import NatsBroker
from spate.brokers.nats.admin import stream_name
from spate.clock import ManualClock
from spate.errors import BrokerError, CommitError, ConnectError, PublishError, SpateError
from spate.record import TopicPartition
from spate.testing.nats_server import NatsServer


async def fails_with_spate_error(call: Callable[[], Awaitable[Any]]) -> SpateError:
    with pytest.raises(SpateError) as caught:
        await call()
    assert not type(caught.value).__module__.startswith("nats")
    return caught.value


async def test_every_call_maps_errors_when_the_server_is_gone(
    own_server: NatsServer, topic: str
) -> None:
    async with spate.connect(own_server.url, request_timeout_s=1.0, lease_ttl_s=5.0) as broker:
        assert isinstance(broker, NatsBroker)
        await broker.create_topic(topic, 1)
        producer = broker.producer()
        producer.send(topic, b"v", key=b"k")
        await producer.flush()
        consumer = broker.consumer([topic], "g")
        (record,) = await consumer.fetch(10, 5.0)
        own_server.kill()
        # Within the lease ttl the commit fails for want of a server (after it the
        # member counts its leases as lost and refuses with FencedError instead).
        error = await fails_with_spate_error(
            lambda: consumer.commit({TopicPartition(topic, 0): record.offset})
        )
        assert isinstance(error, CommitError)

        assert isinstance(await fails_with_spate_error(lambda: broker.list_topics()), BrokerError)
        await fails_with_spate_error(lambda: broker.create_topic(f"{topic}x", 1))
        await fails_with_spate_error(lambda: broker.lag("g", [topic]))
        await fails_with_spate_error(lambda: broker.groups())
        producer.send(topic, b"lost", key=b"key-9")
        error = await fails_with_spate_error(lambda: producer.flush(timeout_s=1.0))
        assert isinstance(error, PublishError)
        assert "key-9" in str(error)
        assert await consumer.fetch(10, 0.3) == []


async def test_the_broker_is_unavailable_while_the_server_is_away(own_server: NatsServer) -> None:
    async def until(available: bool, timeout_s: float) -> None:
        for _ in range(int(timeout_s / 0.05)):
            if broker.available is available:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"broker.available never became {available}")

    async with spate.connect(own_server.url) as broker:
        assert broker.available
        own_server.kill()
        await until(False, 10)
        own_server.start()
        await until(True, 15)
        await broker.list_topics()


async def test_a_bounded_reconnect_gives_up_for_good(own_server: NatsServer, topic: str) -> None:
    """``max_reconnect_attempts=N``: once nats-py gives up, a fetch fails with a
    ConnectError that is not transient, so the worker stops instead of idling."""
    options = {"max_reconnect_attempts": 1, "reconnect_time_wait": 0.1}
    async with spate.connect(own_server.url, **options) as broker:
        await broker.create_topic(topic, 1)
        consumer = broker.consumer([topic], "g")
        await consumer.fetch(10, 0.1)
        own_server.kill()
        assert isinstance(broker, NatsBroker)
        for _ in range(200):
            if broker.client.is_closed:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(ConnectError, match="closed for good") as caught:
            await consumer.fetch(10, 0.1)
        assert not caught.value.transient


async def test_publish_retry_pauses_wait_on_the_brokers_clock(nats_url: str, topic: str) -> None:
    """A publish JetStream cannot store yet (no stream answers) is retried after pauses
    of the broker's clock, doubling from 50 ms, until the flush timeout on that clock."""
    clock = ManualClock()
    async with spate.connect(nats_url, clock=clock) as broker:
        assert isinstance(broker, NatsBroker)
        await broker.create_topic(topic, 1)
        await broker.js.delete_stream(stream_name(topic, 0))
        producer = broker.producer()
        producer.send(topic, b"v", partition=0)
        flushing = asyncio.create_task(producer.flush(timeout_s=0.3))
        async with asyncio.timeout(10):
            for pause in range(1, 4):
                clock.advance(await clock.asked(pause))
            with pytest.raises(PublishError) as caught:
                await flushing
    assert caught.value.transient
    assert clock.sleeps == [0.05, 0.1, 0.2]
