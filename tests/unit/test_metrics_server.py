"""The metrics server's HTTP and the lag poller, on the in-memory broker.

Requests are raw bytes over a real loopback socket, so what a scraper or a probe
sends (HEAD, a POST, a request cut short) is what the server sees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import orjson
import pytest

import spate
from spate.app import App
from spate.brokers.base import PartitionLag
from spate.brokers.local.broker import LocalBroker
from spate.errors import ConfigError, ConnectError
from spate.observability.lag import LagPoller
from spate.observability.server import MetricsServer
from spate.record import TopicPartition
from spate.runtime.lifecycle import ServiceContext


def copying_app() -> App:
    app = App("web", broker="memory://unused")
    app.stream(app.topic("in", partitions=2), group="copy").to(app.topic("out"))
    return app


@pytest.fixture
async def context() -> AsyncIterator[ServiceContext]:
    app = copying_app()
    async with spate.connect("memory://metrics-server") as broker:
        await app.prepare(broker)
        yield ServiceContext(
            app.name, broker, app.settings, app.processors, app.stats, asyncio.Event()
        )


@pytest.fixture
async def server(context: ServiceContext) -> AsyncIterator[MetricsServer]:
    server = MetricsServer("127.0.0.1", 0)
    await server.start(context)
    yield server
    await server.stop()


async def ask(server: MetricsServer, request: bytes) -> tuple[str, bytes]:
    """The status line and the body the server answers ``request`` with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(), body


async def test_paths_methods_and_head(server: MetricsServer) -> None:
    assert await ask(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") == (
        "HTTP/1.1 200 OK",
        b"ok\n",
    )
    assert await ask(server, b"HEAD /healthz HTTP/1.1\r\n\r\n") == ("HTTP/1.1 200 OK", b"")
    status, _ = await ask(server, b"POST /metrics HTTP/1.1\r\n\r\n")
    assert status == "HTTP/1.1 405 Method Not Allowed"
    status, body = await ask(server, b"GET /metricz?x=1 HTTP/1.1\r\n\r\n")
    assert (status, body) == ("HTTP/1.1 404 Not Found", body)
    assert b"/metrics" in body
    status, body = await ask(server, b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert b'spate_records_consumed_total{app="web",processor="copy"} 0' in body


async def test_a_request_cut_short_gets_no_answer_and_the_server_goes_on(
    server: MetricsServer,
) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /metr")
    writer.close()
    assert (await ask(server, b"GET /healthz HTTP/1.1\r\n\r\n"))[0] == "HTTP/1.1 200 OK"


async def test_readyz_says_why_not_and_status_shows_the_processors(
    server: MetricsServer, context: ServiceContext
) -> None:
    assert await ask(server, b"GET /readyz HTTP/1.1\r\n\r\n") == (
        "HTTP/1.1 503 Service Unavailable",
        b"processor copy not running\n",
    )
    stats = context.stats["copy"]
    stats.running = True
    status, body = await ask(server, b"GET /readyz HTTP/1.1\r\n\r\n")
    assert body == b"processor copy has no partitions assigned\n"
    stats.assigned = frozenset({TopicPartition("in", 0)})
    assert await ask(server, b"GET /readyz HTTP/1.1\r\n\r\n") == ("HTTP/1.1 200 OK", b"ready\n")
    stats.connected = False
    _, body = await ask(server, b"GET /readyz HTTP/1.1\r\n\r\n")
    assert body == b"processor copy lost its broker\n"
    status, body = await ask(server, b"GET /status HTTP/1.1\r\n\r\n")
    document = orjson.loads(body)
    assert (status, document["app"], document["ready"]) == ("HTTP/1.1 200 OK", "web", False)
    (processor,) = document["processors"]
    assert (processor["name"], processor["group"], processor["consumed"]) == ("copy", "copy", 0)
    assert processor["partitions"] == [
        {
            "topic": "in",
            "partition": 0,
            "assigned": True,
            "restoring": False,
            "committed": None,
            "end_offset": None,
            "lag": None,
        }
    ]


async def test_while_state_restores_healthz_answers_and_status_and_metrics_say_which(
    server: MetricsServer, context: ServiceContext
) -> None:
    stats = context.stats["copy"]
    stats.running = True
    stats.assigned = frozenset({TopicPartition("in", 0), TopicPartition("in", 1)})
    stats.restoring = frozenset({TopicPartition("in", 1)})
    stats.state_restored = 42
    assert await ask(server, b"GET /healthz HTTP/1.1\r\n\r\n") == ("HTTP/1.1 200 OK", b"ok\n")
    _, body = await ask(server, b"GET /status HTTP/1.1\r\n\r\n")
    (processor,) = orjson.loads(body)["processors"]
    assert (processor["restoring"], processor["state_restored"]) == (1, 42)
    assert [(p["partition"], p["restoring"]) for p in processor["partitions"]] == [
        (0, False),
        (1, True),
    ]
    _, body = await ask(server, b"GET /metrics HTTP/1.1\r\n\r\n")
    labels = b'{app="web",processor="copy"}'
    assert b"spate_state_restoring_partitions" + labels + b" 1\n" in body
    assert b"spate_state_restore_records_total" + labels + b" 42\n" in body
    stats.restoring = frozenset()
    _, body = await ask(server, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert b"spate_state_restoring_partitions" + labels + b" 0\n" in body


async def test_a_port_in_use_is_a_config_error_naming_the_setting(
    server: MetricsServer, context: ServiceContext
) -> None:
    with pytest.raises(ConfigError, match=rf"metrics_port={server.port} on 127.0.0.1"):
        await MetricsServer("127.0.0.1", server.port).start(context)


async def test_lag_poller_keeps_the_last_lag_when_the_broker_fails(
    context: ServiceContext, caplog: pytest.LogCaptureFixture
) -> None:
    producer = context.broker.producer()
    await producer.start()
    producer.send("in", b"1", partition=1)
    await producer.flush()
    await producer.close()
    poller = LagPoller(interval_s=60)
    await poller.poll(context)
    lag = context.stats["copy"].lag
    assert {tp: (p.committed, p.lag) for tp, p in lag.items()} == {
        TopicPartition("in", 0): (None, 0),
        TopicPartition("in", 1): (None, 1),
    }
    broken = ServiceContext(
        context.app_name,
        UnreachableLag(None, memory_name="unreachable"),
        context.settings,
        context.processors,
        context.stats,
        context.stop,
    )
    with caplog.at_level(logging.WARNING, "spate.observability"):
        await poller.poll(broken)
        await poller.poll(broken)
    assert context.stats["copy"].lag == lag
    failures = [r.getMessage() for r in caplog.records if "lag_poll_failed" in r.getMessage()]
    assert failures == [
        "event=lag_poll_failed app=web processor=copy error=ConnectError: the broker is away"
    ]


class UnreachableLag(LocalBroker):
    """A broker whose lag cannot be asked right now, as during an outage."""

    async def lag(self, group: str, topics: Sequence[str] | None = None) -> list[PartitionLag]:
        raise ConnectError("the broker is away")
