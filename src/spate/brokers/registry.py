"""``spate.connect``: a broker for a URL, by the scheme table of :mod:`spate.brokers.schemes`.

Third-party adapters plug in with :func:`register`; their URLs then parse, connect and
run Apps like the built-in ones.
"""

from __future__ import annotations

from typing import Any

from spate.brokers import schemes
from spate.brokers.base import Broker
from spate.brokers.schemes import BrokerFactory, register
from spate.brokers.url import parse_broker_url

__all__ = ["BrokerFactory", "connect", "register"]


def connect(url: str, **options: Any) -> Broker:
    """A broker for ``url``, not yet started: use ``async with spate.connect(url) as b``.

    ``options`` pass through to the adapter untouched (e.g. ``kafka_config={...}``).
    """
    parsed = parse_broker_url(url)
    return schemes.find(parsed.scheme).factory(parsed, dict(options))
