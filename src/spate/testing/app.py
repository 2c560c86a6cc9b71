"""TestApp: drive an App on the in-memory broker, deterministically.

It runs the real runtime — the same :class:`~spate.runtime.lifecycle.Lifecycle`,
workers, pipelines, delivery strategies and commits as production — on a real
``memory://`` broker (the embedded broker on an
in-memory database). Only the clock of waiting changes: instead of running until a
signal, :meth:`TestApp.run_until_idle` runs until every processor has consumed and
committed everything there is, including what other processors published meanwhile.

Synchronous tests::

    def test_billing():
        with TestApp(app) as t:
            t.send(orders, {"id": 1, "amount": 30}, key="ann")
            t.run_until_idle()
            assert t.outputs(invoices) == [{"order": 1, "total": 30}]

Async tests use ``async with TestApp(app) as t`` and the ``*_async`` methods;
:meth:`TestApp.send` only buffers, so it is the same in both.

Windows are driven by event time and a manual clock: send records with their event
times (``timestamp_ms=``), :meth:`TestApp.advance` the clock (an idle partition's
windows close after their ``idle_timeout_s``), and read the closed windows::

    with TestApp(app, clock=ManualClock(start_ms=0)) as t:
        t.send(orders, {"amount": 5}, key="ann", timestamp_ms=1_000)
        t.send(orders, {"amount": 7}, key="ann", timestamp_ms=12_000)  # closes [0 s, 10 s)
        t.run_until_idle()
        assert t.outputs(totals) == [{"key": "ann", "start": 0, "end": 10_000, "n": 1}]
        t.advance(60)  # idle: [10 s, 20 s) closes too
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from spate.app import App
from spate.brokers.base import Broker, CapabilityName, Producer, Reader, require
from spate.brokers.registry import connect
from spate.clock import SYSTEM_CLOCK, Clock, ManualClock
from spate.errors import ConfigError
from spate.observability.server import MetricsServer
from spate.record import Headers, Record
from spate.runtime.lifecycle import Lifecycle, Service
from spate.serde import encode_key
from spate.topic import Topic

IDLE_POLL_S = 0.005
_NEEDS: tuple[tuple[CapabilityName, str], ...] = (
    ("admin", "create the App's topics for TestApp"),
    ("lag", "tell when the processors are idle (TestApp.run_until_idle)"),
    ("reader", "read outputs without a group (TestApp.outputs)"),
)


class TestApp:
    """Runs ``app``'s processors on a fresh ``memory://`` broker (or ``broker``).

    The App's own settings apply (guarantee, batch size, …) except the broker and a
    short idle fetch, so stopping and idling are quick. ``services`` run beside the
    processors as they would in production (started before them, stopped after).
    ``clock`` is the processors' clock: a :class:`~spate.clock.ManualClock` lets the
    test :meth:`advance` time (retry backoffs then wait for it too).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: App,
        *,
        broker: str | None = None,
        timeout_s: float = 10.0,
        services: Sequence[Service] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        broker = broker or f"memory://testapp-{secrets.token_hex(4)}"
        self.app = app
        self.timeout_s = timeout_s
        self.clock = clock
        self.settings = dataclasses.replace(app.settings, broker=broker, fetch_timeout_s=0.02)
        self._lifecycle = Lifecycle(app, settings=self.settings, services=services, clock=clock)
        self._broker_url = broker
        self._broker: Broker | None = None
        self._producer: Producer | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._error_seen = False
        self._readers: dict[str, list[Reader]] = {}
        self._read: dict[str, list[Record]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def metrics_url(self) -> str:
        """``http://HOST:PORT`` of this run's metrics server (``/metrics``, ``/healthz``,
        ``/readyz``, ``/status``), for an App whose settings ask for one
        (``metrics_port=0``: any free port), once the processors run (after
        :meth:`run_until_idle`, say)."""
        for service in self._lifecycle.services:
            if isinstance(service, MetricsServer):
                if not service.port:
                    raise ConfigError(
                        "TestApp.metrics_url: the metrics server is not listening yet"
                    )
                return f"http://{service.host}:{service.port}"
        raise ConfigError(
            "TestApp.metrics_url: this App serves no metrics; "
            "give it metrics_port=0 (any free port)"
        )

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create the App's topics and start every processor."""
        self.app.validate()
        broker = connect(self._broker_url)
        for capability, action in _NEEDS:
            require(broker, capability, action)
        await broker.start()
        try:
            await self.app.prepare(broker)
            self._producer = broker.producer()
            await self._producer.start()
        except BaseException:
            await broker.close()
            raise
        self._broker = broker
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(
            self._lifecycle.run_processors(broker, self._stop), name="spate-testapp"
        )

    async def close(self) -> None:
        """Drain the processors (finish, commit, release) and close everything.

        Raises a processor's error unless :meth:`run_until_idle` already raised it.
        """
        error: BaseException | None = None
        self._stop.set()
        if self._task is not None:
            try:
                await self._task
            except Exception as exc:
                error = exc
        for readers in self._readers.values():
            for reader in readers:
                await reader.close()
        if self._producer is not None:
            await self._producer.close()
        if self._broker is not None:
            await self._broker.close()
        if error is not None and not self._error_seen:
            raise error

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._error_seen = True
        await self.close()

    def __enter__(self) -> Self:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self.start())
        except BaseException:
            self._loop.close()
            self._loop = None
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._error_seen = True
        try:
            self._sync(self.close())
        finally:
            assert self._loop is not None
            self._loop.close()
            self._loop = None

    def _sync(self, coro: Any) -> Any:
        if self._loop is None:
            coro.close()
            raise ConfigError("use `with TestApp(app) as t:` for the synchronous methods")
        return self._loop.run_until_complete(coro)

    def _started(self) -> tuple[Broker, Producer]:
        if self._broker is None or self._producer is None:
            raise ConfigError("TestApp is not started; use `with TestApp(app) as t:`")
        return self._broker, self._producer

    # --- input ------------------------------------------------------------------------------

    def _topic(self, topic: Topic[Any] | str) -> Topic[Any]:
        if isinstance(topic, Topic):
            return topic
        try:
            return self.app.topics[topic]
        except KeyError:
            raise ConfigError(f"topic {topic!r} is not declared on app {self.app.name!r}") from None

    def send(
        self,
        topic: Topic[Any] | str,
        value: Any,
        key: Any = None,
        headers: Headers = (),
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """Publish ``value`` (encoded with the topic's serde) with ``key`` (any key type);
        ``timestamp_ms`` is the record's timestamp (its event time, for windows), the
        clock's time when omitted."""
        t = self._topic(topic)
        self._started()[1].send(
            t.name,
            t.serde.encode(value),
            key=encode_key(key),
            headers=headers,
            partition=partition,
            timestamp_ms=self.clock.time_ms() if timestamp_ms is None else timestamp_ms,
        )

    # --- running ----------------------------------------------------------------------------

    async def run_until_idle_async(self) -> None:
        """Wait until every processor has committed everything in its topics and every
        table has applied everything in its topic, twice in a row with no new record
        anywhere; raise a processor's error if one stopped."""
        broker, producer = self._started()
        await producer.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        previous: tuple[int, ...] | None = None
        behind: list[str] = []
        while True:
            self._raise_if_failed()
            ends: list[int] = []
            behind = []
            for processor in self.app.processors:
                lags = await broker.lag(processor.group, [t.name for t in processor.stream.topics])
                for lag in lags:
                    ends.append(lag.end_offset)
                    if lag.lag:
                        behind.append(
                            f"{processor.name}: {lag.topic}[{lag.partition}] lag {lag.lag}"
                        )
            for table in self.app.tables:
                if not table.restored:
                    behind.append(f"table {table.name}: restoring")
                elif missing := await table.behind():
                    behind.append(f"table {table.name}: {missing} records to apply")
            signature = tuple(ends)
            if not behind and signature == previous:
                return
            previous = signature
            if loop.time() > deadline:
                raise TimeoutError(
                    f"processors not idle after {self.timeout_s}s: {'; '.join(behind) or 'busy'}"
                )
            await asyncio.sleep(IDLE_POLL_S)

    def _raise_if_failed(self) -> None:
        task = self._task
        if task is not None and task.done():
            self._error_seen = True
            error = task.exception()
            if error is not None:
                raise error
            raise ConfigError("the App's processors stopped before they were idle")

    def run_until_idle(self) -> None:
        """Synchronous :meth:`run_until_idle_async`."""
        self._sync(self.run_until_idle_async())

    async def advance_async(self, seconds: float) -> None:
        """Move the manual clock ``seconds`` on, wait until every processor that acts on
        time (windows) has seen it, then until everything is idle."""
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise ConfigError(
                "TestApp.advance needs a manual clock: TestApp(app, clock=ManualClock())"
            )
        await self.run_until_idle_async()
        clock.advance(seconds)
        now_s = clock.monotonic()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        ticking = [p.name for p in self.app.processors if p.stream.ticks]
        while any(self._ticked_before(name, now_s) for name in ticking):
            self._raise_if_failed()
            if loop.time() > deadline:
                raise TimeoutError(f"processors did not act on the clock after {self.timeout_s}s")
            await asyncio.sleep(IDLE_POLL_S)
        await self.run_until_idle_async()

    def _ticked_before(self, processor: str, now_s: float) -> bool:
        ticked_s = self.app.stats[processor].ticked_s
        return ticked_s is None or ticked_s < now_s

    def advance(self, seconds: float) -> None:
        """Synchronous :meth:`advance_async`."""
        self._sync(self.advance_async(seconds))

    # --- output -----------------------------------------------------------------------------

    async def records_async(self, topic: Topic[Any] | str) -> list[Record]:
        """Every record in ``topic`` so far, in partition then offset order.

        One :class:`~spate.brokers.base.Reader` per partition (no group, no commits)
        reads on from where the previous call stopped up to the partition's end, once
        every transaction written before the call has ended (so outputs the processors
        committed are all there, whenever the broker writes their markers).
        """
        broker = self._started()[0]
        name = self._topic(topic).name if not isinstance(topic, str) else topic
        readers = self._readers.get(name)
        if readers is None:
            info = await broker.describe_topic(name)
            readers = []
            for partition in range(info.partitions):
                reader = broker.reader(name, partition)
                await reader.start()
                readers.append(reader)
            self._readers[name] = readers
            self._read[name] = []
        seen = self._read[name]
        for reader in readers:
            seen.extend(await reader.read_to_end(self.timeout_s, settled=True))
        seen.sort(key=lambda r: (r.partition, r.offset))
        return list(seen)

    def records(self, topic: Topic[Any] | str) -> list[Record]:
        """Synchronous :meth:`records_async`."""
        result: list[Record] = self._sync(self.records_async(topic))
        return result

    async def outputs_async(self, topic: Topic[Any] | str) -> list[Any]:
        """The decoded values of :meth:`records_async`."""
        decode = self._topic(topic).serde.decode
        return [decode(r.value) for r in await self.records_async(topic)]

    def outputs(self, topic: Topic[Any] | str) -> list[Any]:
        """Synchronous :meth:`outputs_async`."""
        result: list[Any] = self._sync(self.outputs_async(topic))
        return result
