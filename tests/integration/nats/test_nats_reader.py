"""The NATS partition reader's server-side consumer is ephemeral: the server drops it
after a while without pulls. A reader then opens a new one where it stood, without
failing the fetch."""

from __future__ import annotations

from spate.brokers.nats import NatsBroker
from spate.brokers.nats.admin import stream_name


async def test_a_reader_outlives_its_dropped_server_consumer(
    broker: NatsBroker, topic: str
) -> None:
    await broker.create_topic(topic, 1)
    async with broker.producer() as producer:
        for i in range(3):
            producer.send(topic, b"v%d" % i)
        await producer.flush()
    async with broker.reader(topic) as reader:
        assert [r.offset for r in await reader.fetch(1, 5.0)] == [0]
        stream = stream_name(topic, 0)
        (info,) = await broker.js.consumers_info(stream)
        assert info.name is not None
        await broker.js.delete_consumer(stream, info.name)  # as the server does when idle
        rest = await reader.fetch(10, 5.0)
    assert [(r.offset, r.value) for r in rest] == [(1, b"v1"), (2, b"v2")]
