"""The one table of broker URL schemes: how each parses and which adapter serves it.

URL parsing and :func:`spate.connect` both read this table, so a scheme added with
:func:`register` parses and connects exactly like a built-in one. Built-in adapters
are imported only when their scheme is first connected: ``import spate`` stays free of
every client library, and a user of the embedded broker never needs confluent-kafka.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spate.errors import ConfigError

if TYPE_CHECKING:
    from spate.brokers.base import Broker
    from spate.brokers.url import BrokerURL

BrokerFactory = Callable[["BrokerURL", dict[str, Any]], "Broker"]
"""Builds a broker, not yet started, from a parsed URL and the options of ``connect``."""

_SCHEME_NAME = re.compile(r"[a-z][a-z0-9+.-]*")

# Schemes users may try that have no adapter yet, and what to call them in the error.
_PLANNED = {"mqtt": "MQTT", "mqtts": "MQTT"}


@dataclass(frozen=True, slots=True)
class Scheme:
    """One row of the table."""

    factory: BrokerFactory
    takes_path: bool
    """``scheme://PATH`` (local, memory) rather than ``scheme://[user@]host[:port],…``."""


def _lazy(module_name: str, attribute: str, extra: str | None) -> BrokerFactory:
    """A factory that imports its adapter on first use, naming the extra it needs."""

    def factory(parsed: BrokerURL, options: dict[str, Any]) -> Broker:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if extra is None or (exc.name or "").startswith("spate"):
                raise
            raise ConfigError(
                f"broker URL {parsed.redacted!r} needs the {extra!r} client library "
                f"({exc.name}); install it with: pip install 'spate-streams[{extra}]'"
            ) from exc
        broker: Broker = getattr(module, attribute).from_url(parsed, options)
        return broker

    return factory


_local = _lazy("spate.brokers.local", "LocalBroker", None)
_kafka = _lazy("spate.brokers.kafka", "KafkaBroker", "kafka")
_nats = _lazy("spate.brokers.nats", "NatsBroker", "nats")
_redis = _lazy("spate.brokers.redis", "RedisBroker", "redis")

_SCHEMES: dict[str, Scheme] = {
    "local": Scheme(_local, takes_path=True),
    "memory": Scheme(_local, takes_path=True),
    "kafka": Scheme(_kafka, takes_path=False),
    "nats": Scheme(_nats, takes_path=False),
    "tls": Scheme(_nats, takes_path=False),
    "redis": Scheme(_redis, takes_path=False),
    "rediss": Scheme(_redis, takes_path=False),
}


def register(scheme: str, factory: BrokerFactory, *, takes_path: bool = False) -> None:
    """Serve ``scheme://`` URLs with ``factory``, e.g. a third-party adapter's ``from_url``.

    ``takes_path=True`` parses the URL as ``scheme://PATH`` (as ``local://``), otherwise
    as ``scheme://[user[:password]@]host[:port][,…][/path]``. Registering a scheme that
    exists replaces its adapter.
    """
    name = scheme.lower() if isinstance(scheme, str) else scheme
    if not isinstance(name, str) or not _SCHEME_NAME.fullmatch(name):
        raise ConfigError(
            f"broker scheme {scheme!r} is not valid; use a letter followed by letters, "
            "digits, '+', '-' or '.', e.g. 'myq'"
        )
    if not callable(factory):
        raise ConfigError(
            f"broker scheme {name!r}: factory {factory!r} is not callable; pass a "
            "function (BrokerURL, options) -> Broker, e.g. MyBroker.from_url"
        )
    _SCHEMES[name] = Scheme(factory, takes_path=takes_path)


def find(scheme: str) -> Scheme:
    """The row for ``scheme``; ConfigError listing every known scheme if there is none."""
    try:
        return _SCHEMES[scheme]
    except KeyError:
        problem = (
            f"is not supported yet ({_PLANNED[scheme]} has no adapter in this version)"
            if scheme in _PLANNED
            else "is unknown"
        )
        raise ConfigError(
            f"scheme {scheme!r} {problem}; use one of {', '.join(_SCHEMES)}, or register "
            "an adapter with spate.brokers.registry.register()"
        ) from None
