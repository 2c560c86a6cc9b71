"""One process's run of an App's processors, and what that run owns (DESIGN §2, §11).

``App.run()``, ``App.run_async()``, each worker process of ``spate run --workers N``
and :class:`~spate.testing.app.TestApp` all run processors through a
:class:`Lifecycle`, so the ways of running an App cannot drift apart. For one process
it owns:

* the user thread, where plain user functions run (:meth:`Lifecycle.user_thread`);
* the garbage collector's setting while processors run (:mod:`spate.runtime.garbage`);
* side services (:class:`Service`: a metrics or health server, a lag poller, the
  worker's watch on its parent), started before the processors and stopped after;
* with :meth:`Lifecycle.run` only, the process itself: logging, and stop signals
  (the first SIGINT/SIGTERM drains, a second exits at once).

Three layers, each adding its part and calling the next; callers enter at the layer
whose part they do not do themselves::

    run()                   logging, asyncio.run, signals    App.run, spate run's workers
    run_async(stop)         connect, create missing topics   App.run_async
    run_processors(...)     user thread, GC, services,       TestApp, the demo,
                            one Worker per processor         the benchmarks

The App sits above the runtime and is never imported here: a Lifecycle runs any
:class:`Runnable`, which the App is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from spate.brokers.base import Broker
from spate.brokers.url import parse_broker_url
from spate.clock import SYSTEM_CLOCK, Clock
from spate.config import Settings
from spate.observability.logs import formatter
from spate.observability.server import observability_services
from spate.record import Record
from spate.retry import Retry
from spate.runtime.errors import OnError
from spate.runtime.garbage import young_threshold_at_least
from spate.runtime.retrytopics import Route
from spate.runtime.stats import ProcessorStats
from spate.runtime.worker import Worker
from spate.state.changelog import changelog_topic
from spate.streams.stream import Stream
from spate.topic import Topic

log = logging.getLogger("spate.app")  # the lines of an App's run, wherever it runs


def _ignore_failure(record: Record, exc: Exception) -> None:
    """A pipeline compiled only to read what it declares never runs."""


@dataclass(frozen=True, slots=True)
class Processor:
    """One registered piece of user logic: its stream and what to do when it fails."""

    stream: Stream[Any]
    on_error: OnError
    retry: Retry | None = None
    timeout_s: float | None = None
    dead_letters: Mapping[str, str] = field(default_factory=dict)
    """The dead-letter topic per source topic (empty: no dead letters)."""
    retry_routes: Mapping[str, Route] = field(default_factory=dict)
    """Per source topic, the retry topic its failed records move to and their delay
    (``Retry(via_topics=...)``; empty: none, or this is the last level)."""
    delayed: bool = False
    """The processor of a retry topic: each batch waits until its records are due."""

    def changelog_topics(self, app: str) -> list[Topic[Any]]:
        """The changelog of every store the stream keeps, partitioned like its sources
        (a store is kept per source partition), to create on start."""
        names = self.stream.compile(_ignore_failure).stores
        partitions = max(t.partitions for t in self.stream.topics)
        return [
            Topic(name=changelog_topic(app, self.name, store), partitions=partitions)
            for store in names
        ]

    @property
    def dead_letter_topics(self) -> list[Topic[Any]]:
        """The dead-letter topics to create on start, partitioned like their sources."""
        found: dict[str, Topic[Any]] = {}
        for source in self.stream.topics:
            name = self.dead_letters.get(source.name)
            if name is not None and name not in found:
                found[name] = Topic(name=name, partitions=source.partitions)
        return list(found.values())

    @property
    def name(self) -> str:
        return self.stream.name

    @property
    def group(self) -> str:
        return self.stream.group


class Runnable(Protocol):
    """What a Lifecycle runs: an App, as the runtime sees it."""

    @property
    def name(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def processors(self) -> Sequence[Processor]: ...

    @property
    def stats(self) -> Mapping[str, ProcessorStats]:
        """Per-processor counters, by processor name: the run keeps them up to date."""

    def validate(self) -> None:
        """Raise ConfigError if there is nothing to run."""

    def services(self) -> Sequence[Service]:
        """What the App itself runs beside its processors (its tables), after the
        services the run was given: started, in order, before the processors."""

    def connect(self) -> Broker:
        """A broker, not yet started."""

    async def prepare(self, broker: Broker) -> None:
        """Check the guarantee against ``broker`` and create the missing topics."""


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """What a side service sees of the run it serves."""

    app_name: str
    broker: Broker
    """Started and prepared; shared with the processors, so never closed by a service."""
    settings: Settings
    processors: Sequence[Processor]
    stats: Mapping[str, ProcessorStats]
    stop: asyncio.Event
    """Setting it drains the processors and ends the run, as a stop signal does."""


class Service(Protocol):
    """A side service of the process: it runs beside the processors, never in their
    batch loop.

    The lifecycle starts the services in order once the broker is ready and before
    the first processor, and stops the started ones in reverse order once every
    processor has drained, also when one of them (or a later service's start) failed.
    ``start`` returns once the service runs (a server listens, a task is created)."""

    async def start(self, context: ServiceContext) -> None: ...

    async def stop(self) -> None: ...


class Lifecycle:
    """Runs ``app``'s processors in this process, owning what the run needs.

    ``settings`` replaces the App's once the broker is connected (TestApp shortens
    idle fetches); ``services`` run beside the processors, after the metrics server
    and lag poller that ``settings.metrics_port`` asks for; ``clock`` is the workers'
    (TestApp's manual one drives windows)."""

    def __init__(
        self,
        app: Runnable,
        *,
        settings: Settings | None = None,
        services: Sequence[Service] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.app = app
        self.settings = settings or app.settings
        self.clock = clock
        self.services = (*observability_services(self.settings), *services)

    def run(self) -> None:
        """Configure logging, then run in a new event loop until SIGINT/SIGTERM, drain
        and return; a second signal exits the process at once."""
        configure_logging(self.settings.log_level, self.settings.log_format)
        asyncio.run(self._run_until_signalled())

    async def _run_until_signalled(self) -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await self.run_async(stop)

    async def run_async(self, stop: asyncio.Event | None = None) -> None:
        """Connect, create the missing topics and run every processor until ``stop`` is
        set (or one fails), then drain and close."""
        self.app.validate()
        async with self.app.connect() as broker:
            await self.app.prepare(broker)
            await self.run_processors(broker, stop or asyncio.Event())

    async def run_processors(self, broker: Broker, stop: asyncio.Event) -> None:
        """Run a Worker per processor on a started, prepared broker until ``stop``.

        Draining finishes the current batch, flushes, commits and releases the
        partitions. If a processor fails, the others drain too and the error is raised.
        """
        app, settings = self.app, self.settings
        app.validate()
        executor = self.user_thread(broker)
        context = ServiceContext(app.name, broker, settings, app.processors, app.stats, stop)
        services = (*self.services, *app.services())
        try:
            with young_threshold_at_least(settings.gc_threshold):
                async with _services_running(services, context):
                    results = await self._run_workers(broker, stop, executor)
        finally:
            if executor is not None:
                executor.shutdown(wait=False)
        log.info("event=app_stop app=%s", app.name)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    async def _run_workers(
        self, broker: Broker, stop: asyncio.Event, executor: ThreadPoolExecutor | None
    ) -> list[BaseException | None]:
        """Each processor's worker until all stopped: their errors (None if it drained)."""
        app, settings = self.app, self.settings
        workers = [
            Worker(
                app.name,
                p.stream,
                broker,
                settings,
                on_error=p.on_error,
                retry=p.retry,
                timeout_s=p.timeout_s,
                dead_letters=p.dead_letters,
                retry_routes=p.retry_routes,
                delayed=p.delayed,
                stats=app.stats[p.name],
                executor=executor,
                clock=self.clock,
            )
            for p in app.processors
        ]
        log.info(
            "event=app_start app=%s broker=%s guarantee=%s processors=%s pid=%d instance=%s",
            app.name,
            parse_broker_url(broker.url).redacted,
            settings.processing_guarantee,
            ",".join(p.name for p in app.processors),
            os.getpid(),
            settings.instance_id or "-",
        )
        tasks = [asyncio.create_task(w.run(stop), name=f"spate:{w.stream.name}") for w in workers]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            stop.set()  # one processor failed (or we were cancelled): drain the others
            results = await asyncio.gather(*tasks, return_exceptions=True)
        return results

    def user_thread(self, broker: Broker) -> ThreadPoolExecutor | None:
        """Where plain user functions run: one thread for all of this App's processors
        (they never run concurrently), or None for the event loop itself.

        The thread keeps the loop free during long batches where spate's own lease
        heartbeats live on it (local, NATS, Redis). Where the broker keeps group
        membership itself (Kafka: librdkafka's threads heartbeat), the loop has
        nothing urgent to do during a batch, and handing each batch to a thread and
        back would cost more CPU than the rest of the per-batch work.
        """
        if broker.capabilities.native_groups:
            return None
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"spate-{self.app.name}")


@contextlib.asynccontextmanager
async def _services_running(
    services: Sequence[Service], context: ServiceContext
) -> AsyncIterator[None]:
    """Start ``services`` in order; on the way out stop the started ones in reverse.

    A service that fails to stop is logged and the others still stop: the processors
    have drained by then, and their own error, if any, is the one to raise."""
    started: list[Service] = []
    try:
        for service in services:
            await service.start(context)
            started.append(service)
        yield
    finally:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception as exc:
                log.warning(
                    "event=service_stop_failed app=%s service=%s error=%s: %s",
                    context.app_name,
                    type(service).__name__,
                    type(exc).__name__,
                    exc,
                )


def install_stop_signals(stop: asyncio.Event) -> None:
    """First SIGINT/SIGTERM sets ``stop`` (graceful drain); a second one exits now."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("event=forced_exit signal=%s", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("event=draining signal=%s", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)


def configure_logging(level: str, log_format: str = "text") -> None:
    """One line per event on stderr, as text or JSON (``log_format``), unless the
    program configured logging itself. Python's warnings go through the same handler
    (logger ``py.warnings``): printed on their own, they would be the lines of a JSON
    run that are not JSON."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter(log_format))
        logging.basicConfig(level=level, handlers=[handler])
        logging.captureWarnings(True)
    logging.getLogger("spate").setLevel(level)
