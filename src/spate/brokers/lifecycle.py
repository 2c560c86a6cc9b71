"""The lifecycle of a broker whose producers and consumers share its connection.

The local, NATS and Redis producers and consumers work through their broker's
database or client. Closing the broker under them would leave them failing with
connection errors, so :class:`OwningBroker` remembers every producer and consumer it
made and closes them *first*, while the connection still works: producers flush,
consumers revoke (the runtime commits) and leave their groups. Only then does the
adapter release its connection (:meth:`OwningBroker._disconnect`).

Kafka's clients each have a librdkafka connection of their own, but the same order
still matters to a user who closes only the broker: producers flush and consumers
commit and leave their group rather than being dropped mid-flight.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from spate.brokers.base import Broker, Consumer, Producer, Reader
from spate.clock import Clock
from spate.errors import ClosedError, SpateError

_Client = TypeVar("_Client", bound=Producer | Consumer | Reader)


class OwningBroker(Broker):
    """A broker that closes the producers and consumers it made before its connection."""

    def __init__(self) -> None:
        self._clients: set[Producer | Consumer | Reader] = set()
        self._retention_task: asyncio.Task[None] | None = None
        self._closed = False

    def _check_open(self) -> None:
        """Refuse work after ``close``: the connection is gone."""
        if self._closed:
            raise ClosedError(f"broker {self.url} is closed")

    def _track(self, client: _Client) -> _Client:
        """Remember ``client`` so that :meth:`close` closes it."""
        self._clients.add(client)
        return client

    def forget(self, client: Producer | Consumer | Reader) -> None:
        """Called by a producer or consumer when it closes, so the broker lets it go."""
        self._clients.discard(client)

    def _start_retention(
        self,
        enforce: Callable[[], Awaitable[object]],
        *,
        every_s: float,
        clock: Clock,
        log: logging.Logger,
    ) -> None:
        """Run ``enforce`` every ``every_s`` until :meth:`close`, for brokers whose
        storage does not expire records by itself. A failed round is logged, not
        fatal: the next round tries again."""

        async def loop() -> None:
            while True:
                await clock.sleep(every_s)
                try:
                    await enforce()
                except SpateError as exc:
                    log.warning("event=retention_failed url=%s error=%s", self.url, exc)

        self._retention_task = asyncio.get_running_loop().create_task(
            loop(), name=f"spate-retention-{self.url}"
        )

    async def close(self) -> None:
        """Stop retention, close every producer and consumer, then disconnect; idempotent.

        A client that fails to close (the server unreachable, say) must not keep the
        broker's connection open, so its error is dropped."""
        if self._closed:
            return
        self._closed = True
        task, self._retention_task = self._retention_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            for client in list(self._clients):
                with contextlib.suppress(SpateError):
                    await client.close()
        finally:
            await self._disconnect()

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Release the broker's own connection; its producers and consumers are closed."""
