"""The first metadata request of a client: does the cluster answer at all?

librdkafka never says a broker is down: it retries connecting for ever, and a request
waits until its own timeout (spate's ``timeout_s``, 30 s, sized for slow admin and
transaction calls). A cluster that answers at all answers a metadata request in
milliseconds, so this first request gets a timeout of its own, ``connect_timeout_s``,
and a failure names the address, which is what the operator must check.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from confluent_kafka import KafkaException

from spate.brokers.kafka.errors import to_spate_error
from spate.errors import ConnectError

DEFAULT_CONNECT_TIMEOUT_S = 5.0


class _HasMetadata(Protocol):
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...


async def probe(client: _HasMetadata, url: str, timeout_s: float) -> Any:
    """The cluster's metadata (``ClusterMetadata``); ConnectError naming ``url`` if no
    broker answers within ``timeout_s``."""
    try:
        return await asyncio.to_thread(client.list_topics, None, timeout_s)
    except KafkaException as exc:
        error = to_spate_error(
            exc, f"cannot reach Kafka at {url} within {timeout_s:g} s", ConnectError
        )
        if not isinstance(error, ConnectError):
            raise error from exc
        raise ConnectError(
            f"{error}; check that a broker listens there "
            "(connect_timeout_s= waits longer for a slow one)"
        ) from exc
