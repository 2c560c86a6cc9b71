"""Topics as streams, connection options and publishing, against a real nats-server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import spate
from spate.brokers.nats import NatsBroker
from spate.brokers.nats.admin import stream_name
from spate.errors import (
    CapabilityError,
    ConfigError,
    ConnectError,
    PublishError,
    TopicNotFoundError,
)
from spate.record import TopicPartition
from spate.testing.nats_server import NatsServer


async def test_one_stream_per_partition_with_config(broker: NatsBroker, topic: str) -> None:
    config = {
        "retention.ms": "3600000",
        "retention.bytes": "1048576",
        "replicas": "1",
        "duplicate.window.ms": "30000",
    }
    info = await broker.create_topic(topic, 3, config)
    assert info.partitions == 3
    for p in range(3):
        stream = await broker.js.stream_info(stream_name(topic, p))
        assert stream.config.subjects == [f"{topic}.{p}"]
        assert stream.config.max_age == 3600.0
        assert stream.config.max_bytes == 1048576
        assert stream.config.num_replicas == 1
        assert stream.config.duplicate_window == 30.0
    # The partition count and config live with the topic: a new connection sees them.
    async with spate.connect(broker.url) as other:
        described = await other.describe_topic(topic)
    assert described.partitions == 3
    assert dict(described.config) == config


async def test_dotted_topic_names_do_not_collide(broker: NatsBroker, topic: str) -> None:
    await broker.create_topic(f"{topic}.a", 2)
    await broker.create_topic(f"{topic}_a", 2)
    producer = broker.producer()
    producer.send(f"{topic}.a", b"dot", partition=1)
    producer.send(f"{topic}_a", b"underscore", partition=1)
    await producer.flush()
    assert stream_name(f"{topic}.a", 1) != stream_name(f"{topic}_a", 1)
    lags = await broker.lag("nobody", [f"{topic}.a", f"{topic}_a"])
    assert [(row.topic, row.partition, row.end_offset) for row in lags] == [
        (f"{topic}.a", 0, 0),
        (f"{topic}.a", 1, 1),
        (f"{topic}_a", 0, 0),
        (f"{topic}_a", 1, 1),
    ]


async def test_bad_topic_config_names_the_key(broker: NatsBroker, topic: str) -> None:
    with pytest.raises(ConfigError, match=r"retention\.ms"):
        await broker.create_topic(topic, 1, {"retention.ms": "soon"})
    with pytest.raises(ConfigError, match=r"cleanup\.policy"):
        await broker.create_topic(topic, 1, {"cleanup.policy": "compact"})
    with pytest.raises(TopicNotFoundError):
        await broker.describe_topic(topic)


async def test_many_records_in_flight_and_offsets_dense_from_zero(
    broker: NatsBroker, topic: str
) -> None:
    await broker.create_topic(topic, 4)
    producer = broker.producer()
    for i in range(5000):
        producer.send(topic, b"v%d" % i, key=b"k%d" % (i % 50))
    await producer.flush()
    lags = await broker.lag("fresh", [topic])
    assert sum(row.end_offset for row in lags) == 5000
    async with broker.consumer([topic], "reader") as consumer:
        seen: dict[TopicPartition, list[int]] = {}
        while sum(len(v) for v in seen.values()) < 5000:
            for record in await consumer.fetch(1000, 2.0):
                seen.setdefault(record.topic_partition, []).append(record.offset)
    for offsets in seen.values():
        assert offsets == list(range(len(offsets)))


async def test_dedup_id_drops_republished_copy(broker: NatsBroker, topic: str) -> None:
    await broker.create_topic(topic, 1)
    producer = broker.producer()
    for _ in range(3):
        producer.send(topic, b"once", key=b"k", dedup_id="in:0:7:0")
        await producer.flush()
    (row,) = await broker.lag("g", [topic])
    assert row.end_offset == 1


async def test_a_transactional_producer_is_refused_pointing_at_dedup_ids(
    broker: NatsBroker,
) -> None:
    with pytest.raises(CapabilityError, match="dedup_id"):
        broker.producer(transactional_id="billing")


async def test_publish_error_names_topic_and_key(broker: NatsBroker, topic: str) -> None:
    await broker.create_topic(topic, 1)
    producer = broker.producer()
    producer.send(topic, b"x" * (2 * 1024 * 1024), key=b"big-key")
    with pytest.raises(PublishError, match=rf"{topic}.*big-key"):
        await producer.flush(timeout_s=5)
    producer.send("no-such-topic-anywhere", b"v", key=b"k1")
    with pytest.raises(PublishError, match=r"no-such-topic-anywhere.*k1"):
        await producer.flush(timeout_s=2)


async def test_binary_keys_and_repeated_headers_round_trip(broker: NatsBroker, topic: str) -> None:
    await broker.create_topic(topic, 1)
    producer = broker.producer()
    headers = (("trace", b"\x00\r\n\xff"), ("trace", b"two"), ("plain", b"text"))
    producer.send(topic, b"v1", key=b"\x00bin\r\n", headers=headers, timestamp_ms=1234)
    producer.send(topic, b"v2", key=b"plain-key")
    await producer.flush()
    async with broker.consumer([topic], "g") as consumer:
        records = await consumer.fetch(10, 5.0)
    assert [r.key for r in records] == [b"\x00bin\r\n", b"plain-key"]
    assert records[0].headers == headers
    assert records[0].timestamp_ms == 1234
    assert records[1].timestamp_ms > 1_600_000_000_000  # the server's time


async def test_server_without_jetstream_is_a_clear_error() -> None:
    with NatsServer(jetstream=False) as server, pytest.raises(ConnectError, match="JetStream"):
        async with spate.connect(server.url):
            pass


async def test_server_creates_a_missing_store_dir(tmp_path: Path) -> None:
    store = tmp_path / "not" / "yet"
    with NatsServer(store_dir=store) as server:
        async with spate.connect(server.url) as broker:
            await broker.create_topic("kept", 1)
    assert (store / "js").is_dir()


async def test_unreachable_server_is_a_connect_error() -> None:
    from spate.testing.nats_server import free_port

    broker = spate.connect(f"nats://127.0.0.1:{free_port()}", connect_timeout_s=1)
    with pytest.raises(ConnectError, match="cannot connect"):
        await broker.start()


async def test_token_and_user_password_pass_through() -> None:
    with NatsServer(extra_config='authorization { token: "s3cret" }') as server:
        async with spate.connect(f"nats://s3cret@127.0.0.1:{server.port}") as broker:
            assert await broker.list_topics() == []
        async with spate.connect(server.url, token="s3cret") as broker:
            assert await broker.list_topics() == []
        with pytest.raises(ConnectError):
            async with spate.connect(server.url, connect_timeout_s=1):
                pass
    users = 'authorization { users = [ { user: "app", password: "pw" } ] }'
    with NatsServer(extra_config=users) as server:
        async with spate.connect(f"nats://app:pw@127.0.0.1:{server.port}") as broker:
            assert await broker.list_topics() == []


def test_nkey_and_creds_need_the_nkeys_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nkeys", None)  # importlib finds no such module
    for url in ("nats://127.0.0.1:4222?creds=/etc/app.creds", "nats://127.0.0.1:4222?nkey_seed=x"):
        with pytest.raises(ConfigError, match="pip install nkeys"):
            spate.connect(url)


def test_unknown_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="tokn"):
        spate.connect("nats://127.0.0.1:4222", tokn="x")
    with pytest.raises(ConfigError, match="bogus"):
        spate.connect("nats://127.0.0.1:4222?bogus=1")
    with pytest.raises(ConfigError, match="lease_ttl_s"):
        spate.connect("nats://127.0.0.1:4222?lease_ttl_s=soon")


@pytest.mark.parametrize(
    ("headers", "data", "verdict"),
    [
        (None, b'{"stream":"S","seq":7}', "acked"),
        (None, b'{"stream":"S","seq":7,"duplicate":true}', "duplicate"),
        ({"Status": "503", "Description": "No Responders"}, b"", "again"),
        (
            None,
            b'{"error":{"code":503,"err_code":10008,'
            b'"description":"JetStream system temporarily unavailable"}}',
            "again",
        ),
        (None, b'{"error":{"code":400,"description":"maximum payload exceeded"}}', "refused"),
        ({"Status": "400", "Description": "Bad Request"}, b"", "refused"),
    ],
)
def test_a_restarting_server_s_answers_are_published_again(
    headers: dict[str, str] | None, data: bytes, verdict: str
) -> None:
    """A PubAck's verdict. JetStream answers 503 (in a header, or in a JSON error while
    a restarted server recovers its streams) until it is ready: those records are
    published again rather than failing the flush (and stopping the worker)."""
    from spate.brokers.nats.producer import _ACKED, _DUPLICATE, _FATAL, _RETRY, classify_reply

    expected = {"acked": _ACKED, "duplicate": _DUPLICATE, "again": _RETRY, "refused": _FATAL}[
        verdict
    ]
    assert classify_reply(headers, data)[0] == expected
