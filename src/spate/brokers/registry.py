"""Broker adapters by URL scheme, imported only when used.

Lazy imports keep ``import spate`` free of every client library: a user of the
embedded broker never needs confluent-kafka installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from spate.brokers.base import Broker
from spate.brokers.url import BrokerURL, parse_broker_url
from spate.errors import ConfigError

BrokerFactory = Callable[[BrokerURL, dict[str, Any]], Broker]

# scheme -> (module, factory attribute, extra that installs its client)
_ADAPTERS: dict[str, tuple[str, str, str | None]] = {
    "local": ("spate.brokers.local", "LocalBroker", None),
    "memory": ("spate.brokers.local", "LocalBroker", None),
    "kafka": ("spate.brokers.kafka", "KafkaBroker", "kafka"),
    "nats": ("spate.brokers.nats", "NatsBroker", "nats"),
    "tls": ("spate.brokers.nats", "NatsBroker", "nats"),
    "redis": ("spate.brokers.redis", "RedisBroker", "redis"),
    "rediss": ("spate.brokers.redis", "RedisBroker", "redis"),
    "mqtt": ("spate.brokers.mqtt", "MqttBroker", "mqtt"),
    "mqtts": ("spate.brokers.mqtt", "MqttBroker", "mqtt"),
}
_registered: dict[str, BrokerFactory] = {}


def register(scheme: str, factory: BrokerFactory) -> None:
    """Register a third-party adapter for ``scheme``."""
    _registered[scheme.lower()] = factory


def _factory(parsed: BrokerURL) -> BrokerFactory:
    if parsed.scheme in _registered:
        return _registered[parsed.scheme]
    module_name, attribute, extra = _ADAPTERS[parsed.scheme]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if extra is None or exc.name == module_name:
            raise ConfigError(
                f"broker URL {parsed.redacted!r}: no adapter for scheme {parsed.scheme!r} "
                "is available in this version of spate"
            ) from exc
        raise ConfigError(
            f"broker URL {parsed.redacted!r} needs the {extra!r} client library "
            f"({exc.name}); install it with: pip install 'spate-streams[{extra}]'"
        ) from exc
    factory: BrokerFactory = getattr(module, attribute).from_url
    return factory


def connect(url: str, **options: Any) -> Broker:
    """A broker for ``url``, not yet started: use ``async with spate.connect(url) as b``.

    ``options`` pass through to the adapter untouched (e.g. ``kafka_config={...}``).
    """
    parsed = parse_broker_url(url)
    return _factory(parsed)(parsed, dict(options))
