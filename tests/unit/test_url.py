"""Broker URLs parse strictly, and every error names the part to fix."""

from __future__ import annotations

import pytest

import spate
from spate.brokers.url import parse_broker_url
from spate.errors import ConfigError


def test_kafka_url_with_several_hosts_and_options() -> None:
    url = parse_broker_url("kafka://a:9092,b:9093?linger.ms=5")
    assert url.scheme == "kafka"
    assert url.hosts == (("a", 9092), ("b", 9093))
    assert url.query == {"linger.ms": "5"}


def test_credentials_path_and_default_port() -> None:
    url = parse_broker_url("redis://user:s%40cret@localhost/3")
    assert (url.username, url.password, url.path) == ("user", "s@cret", "3")
    assert url.host_list(6379) == [("localhost", 6379)]
    assert "s%40cret" not in url.redacted


def test_ipv6_host() -> None:
    assert parse_broker_url("nats://[::1]:4222").hosts == (("::1", 4222),)


def test_local_url_keeps_the_path() -> None:
    url = parse_broker_url("local://var/spate?synchronous=normal")
    assert (url.scheme, url.path, url.query) == ("local", "var/spate", {"synchronous": "normal"})
    assert parse_broker_url("memory://").path == ""


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("", "empty"),
        ("localhost:9092", "scheme"),
        ("kafak://localhost:9092", "scheme 'kafak'"),
        ("kafka://", "host"),
        ("kafka://localhost:90x2", "port '90x2'"),
        ("kafka://localhost:70000", "port '70000'"),
        ("kafka://a:1,,b:2", "empty entry"),
        ("nats://[::1:4222", "closing"),
        ("kafka://h:1?a=1&&", "query"),
        ("local://", "local://.spate"),
        ("local:///", "local:///abs/path"),
        ("local://?synchronous=normal", "path"),
    ],
)
def test_malformed_urls_name_the_part(raw: str, names: str) -> None:
    with pytest.raises(ConfigError, match=r".") as info:
        parse_broker_url(raw)
    assert names in str(info.value)


def test_connect_rejects_a_malformed_url_with_config_error() -> None:
    with pytest.raises(ConfigError, match="port"):
        spate.connect("kafka://localhost:port")
