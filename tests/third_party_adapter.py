"""A stand-in third-party adapter, registered the way a plugin would register its own."""

from __future__ import annotations

from typing import Any, Self

from spate.brokers.local import LocalBroker
from spate.brokers.url import BrokerURL


class QueueBroker(LocalBroker):
    """``myq://HOST:PORT``: an in-memory broker named by its address, outside spate."""

    @classmethod
    def from_url(cls, parsed: BrokerURL, options: dict[str, Any]) -> Self:
        (host, port), *_ = parsed.host_list(1234)
        return cls(None, memory_name=f"myq-{host}-{port}", **options)
