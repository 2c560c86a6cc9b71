"""Every adapter reads its own options the same way (spate.brokers.options)."""

from __future__ import annotations

import pytest

from spate.brokers.kafka.config import KafkaSettings
from spate.brokers.local.broker import LocalBroker, LocalOptions
from spate.brokers.nats.broker import NatsBroker
from spate.brokers.nats.client import NatsOptions
from spate.brokers.options import AdapterOptions
from spate.brokers.redis.client import RedisOptions, redis_py_url
from spate.brokers.url import parse_broker_url
from spate.clock import ManualClock
from spate.errors import ConfigError

ADAPTERS: list[tuple[type[AdapterOptions], str]] = [
    (LocalOptions, "local://.spate"),
    (NatsOptions, "nats://localhost:4222"),
    (RedisOptions, "redis://localhost:6379/0"),
]


@pytest.mark.parametrize(("options", "url"), ADAPTERS)
def test_a_keyword_wins_over_the_query(options: type[AdapterOptions], url: str) -> None:
    parsed = parse_broker_url(f"{url}?lease_ttl_s=5")
    own, passthrough = options.split(parsed, {"lease_ttl_s": "7", "socket_timeout": 3})
    assert own.lease_ttl_s == 7.0  # type: ignore[attr-defined]
    assert passthrough == {"socket_timeout": 3}
    own, _ = options.split(parsed, {})
    assert own.lease_ttl_s == 5.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(("options", "url"), ADAPTERS)
def test_a_bad_value_names_the_option_and_the_fix(options: type[AdapterOptions], url: str) -> None:
    parsed = parse_broker_url(f"{url}?lease_ttl_s=soon")
    with pytest.raises(
        ConfigError, match=r"lease_ttl_s='soon' is not a positive number.*lease_ttl_s=10"
    ):
        options.split(parsed, {})
    with pytest.raises(ConfigError, match=r"lease_ttl_s=0 is not a positive number of seconds"):
        options.split(parse_broker_url(url), {"lease_ttl_s": 0})


@pytest.mark.parametrize(("options", "url"), ADAPTERS)
def test_an_injected_clock_is_kept_as_it_is(options: type[AdapterOptions], url: str) -> None:
    clock = ManualClock()
    own, _ = options.split(parse_broker_url(f"{url}?clock=x"), {"clock": clock})
    assert own.clock is clock  # type: ignore[attr-defined]
    assert own.as_kwargs()["clock"] is clock


def test_spates_own_query_options_do_not_reach_the_client_library() -> None:
    parsed = parse_broker_url("redis://localhost/0?lease_ttl_s=5&socket_timeout=3")
    assert redis_py_url(parsed) == "redis://localhost:6379/0?socket_timeout=3"
    broker = NatsBroker.from_url(parse_broker_url("nats://localhost?max_ack_pending=7"), {})
    assert broker.max_ack_pending == 7


def test_the_local_broker_refuses_names_it_does_not_know() -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'socket_timeout'.*knows busy_timeout_s"):
        LocalBroker.from_url(parse_broker_url("memory://x"), {"socket_timeout": 1})
    with pytest.raises(ConfigError, match="synchronous='off' is not one of full, normal"):
        LocalBroker.from_url(parse_broker_url("memory://x?synchronous=off"), {})


def test_kafka_reads_its_options_the_same_way_and_leaves_the_query_to_librdkafka() -> None:
    parsed = parse_broker_url("kafka://h:9092?timeout_s=5&linger.ms=20")
    settings = KafkaSettings.from_url(parsed, {"connect_timeout_s": "2"})
    assert (settings.timeout_s, settings.connect_timeout_s) == (5.0, 2.0)
    assert settings.producer(None)["linger.ms"] == "20"
    assert "timeout_s" not in settings.admin()
    assert KafkaSettings.from_url(parsed, {"timeout_s": 3}).connect_timeout_s == 3.0
    with pytest.raises(ConfigError, match=r"unknown option\(s\) linger\.ms; .* kafka_config"):
        KafkaSettings.from_url(parsed, {"linger.ms": 5})
