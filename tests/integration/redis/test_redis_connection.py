"""URLs, credentials, options and error mapping of the Redis adapter against a real server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

import spate
from spate.brokers.redis import RedisBroker
from spate.clock import ManualClock
from spate.errors import ConfigError, ConnectError, PublishError
from spate.testing.redis_server import RedisServer, free_port


def _with_db(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


async def test_database_number_selects_the_redis_database(redis_url: str) -> None:
    other = _with_db(redis_url, 3)
    redis.Redis.from_url(other).flushdb()
    async with spate.connect(other, retention_interval_s=0) as broker:
        await broker.create_topic("in-db-3", 2)
    assert redis.Redis.from_url(other).exists("in-db-3:0", "in-db-3:1") == 2
    assert redis.Redis.from_url(redis_url).exists("in-db-3:0") == 0


async def test_acl_user_and_password(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "spate-app", "on", ">s3cret", "~*", "+@all")
    try:
        host_port = redis_url.split("://", 1)[1].split("/", 1)[0]
        good = f"redis://spate-app:s3cret@{host_port}/0"
        async with spate.connect(good, retention_interval_s=0) as broker:
            await broker.create_topic("acl-topic")
            assert [t.name for t in await broker.list_topics()] == ["acl-topic"]
        bad = spate.connect(f"redis://spate-app:wrong@{host_port}/0")
        with pytest.raises(ConnectError, match="credentials") as caught:
            await bad.start()
        assert "wrong" not in str(caught.value)
    finally:
        admin.execute_command("ACL", "DELUSER", "spate-app")


async def test_unreachable_server_is_a_connect_error() -> None:
    broker = spate.connect(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    with pytest.raises(ConnectError, match="cannot reach Redis"):
        await broker.start()


def test_options_pass_through_to_redis_py_and_spate_options_are_taken_out() -> None:
    broker = spate.connect(
        "redis://u:p@127.0.0.1:6390/2?socket_timeout=7&dedup_window_s=60",
        health_check_interval=5,
        lease_ttl_s=3,
    )
    assert isinstance(broker, RedisBroker)
    kwargs = broker.client.redis.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 7.0
    assert kwargs["health_check_interval"] == 5
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("u", "p", 2)
    assert "dedup_window_s" not in kwargs
    assert broker.options.dedup_window_s == 60.0
    assert broker.options.lease_ttl_s == 3.0
    assert broker.url == "redis://u:***@127.0.0.1:6390/2?socket_timeout=7&dedup_window_s=60"


def test_rediss_uses_tls() -> None:
    broker = spate.connect("rediss://127.0.0.1:6390/0?ssl_cert_reqs=none")
    assert isinstance(broker, RedisBroker)
    pool = broker.client.redis.connection_pool
    assert pool.connection_class.__name__ == "SSLConnection"
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("redis://a:1,b:2/0", {}, "exactly one host"),
        ("redis://127.0.0.1/zero", {}, "not a number"),
        ("redis://127.0.0.1/0", {"lease_ttl_s": "soon"}, "lease_ttl_s"),
    ],
)
def test_bad_urls_and_options_are_config_errors(
    url: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        spate.connect(url, **options)


async def test_unknown_redis_option_is_a_config_error(redis_url: str) -> None:
    broker = spate.connect(redis_url, no_such_option=1)
    with pytest.raises(ConfigError, match="bad Redis option"):
        await broker.start()


async def test_a_stalled_server_is_a_publish_error_and_dropped_connections_recover(
    redis_url: str,
) -> None:
    admin = redis.Redis.from_url(redis_url)
    async with spate.connect(redis_url, retention_interval_s=0, socket_timeout=2) as broker:
        await broker.create_topic("t", 2)
        producer = broker.producer()
        producer.send("t", b"x", key=b"k")
        await producer.flush()
        admin.execute_command("CLIENT", "PAUSE", "1500")
        producer.send("t", b"y", key=b"k")
        with pytest.raises(PublishError):
            await producer.flush(timeout_s=0.5)
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert (await broker.describe_topic("t")).partitions == 2, "reconnects by itself"


async def test_a_command_waits_through_a_restart_and_the_broker_says_it_is_unavailable(
    tmp_path: Path,
) -> None:
    """By default a command retries a lost connection until the server is back
    (``reconnect_timeout_s`` unset), and ``available`` is False meanwhile."""
    with RedisServer.start(tmp_path) as server:
        async with spate.connect(server.url, retention_interval_s=0) as broker:
            await broker.create_topic("t", 1)
            assert broker.available
            server.kill()
            listing = asyncio.create_task(broker.list_topics())
            async with asyncio.timeout(10):
                while broker.available:
                    await asyncio.wait([listing], timeout=0.05)
            assert not listing.done()
            server.restart()
            async with asyncio.timeout(15):
                await listing
            assert broker.available


async def test_a_bounded_reconnect_timeout_gives_up_for_good(tmp_path: Path) -> None:
    with RedisServer.start(tmp_path) as server:
        async with spate.connect(server.url, retention_interval_s=0, reconnect_timeout_s=1) as b:
            server.kill()
            with pytest.raises(ConnectError, match="reconnect_timeout_s=1") as caught:
                await b.list_topics()
            assert not caught.value.transient


async def test_reconnect_backoff_waits_on_the_brokers_clock(tmp_path: Path) -> None:
    """The pauses between reconnect attempts are the broker clock's: a ManualClock sees
    the doubling, jittered schedule and the give-up, without any real waiting."""
    clock = ManualClock()
    with RedisServer.start(tmp_path) as server:
        async with spate.connect(
            server.url, retention_interval_s=0, reconnect_timeout_s=2, clock=clock
        ) as broker:
            server.kill()
            listing = asyncio.create_task(broker.list_topics())
            async with asyncio.timeout(10):
                while not listing.done():
                    asked = asyncio.ensure_future(clock.asked(len(clock.sleeps) + 1))
                    await asyncio.wait([listing, asked], return_when=asyncio.FIRST_COMPLETED)
                    if asked.done():
                        clock.advance(asked.result())
                    asked.cancel()
            with pytest.raises(ConnectError, match="reconnect_timeout_s=2"):
                await listing
    # backoff_s: 0.1 s doubling, the last half jittered; no pause may end past 2 s, and
    # with these bounds the 4th always fits and a 6th never does.
    assert 4 <= len(clock.sleeps) <= 5
    assert sum(clock.sleeps) <= 2
    for attempt, pause in enumerate(clock.sleeps):
        assert 0.05 * 2**attempt <= pause <= 0.1 * 2**attempt
