"""App: topics, processors and their lifecycle (DESIGN §4, §6).

An App is a declaration — topics and processors — until it runs. Running connects to
the broker, creates missing topics, and starts one :class:`~spate.runtime.worker.Worker`
per processor in this process, all through a :class:`~spate.runtime.lifecycle.Lifecycle`;
``spate run --workers N`` starts N such processes and the broker's group protocol
splits the partitions between them.

Example::

    from spate import App

    app = App("shop")
    orders = app.topic("orders", partitions=4, value_type=Order)
    invoices = app.topic("invoices", value_type=Invoice)

    @app.handler(orders, group="billing", output=invoices)
    def bill(order: Order) -> Invoice | None:
        return Invoice(order.id, order.amount) if order.amount else None

    (app.stream(orders, group="big-orders")
        .filter(lambda o: o.amount >= 100)
        .key_by(lambda o: o.user)
        .to(app.topic("big-orders", value_type=Order)))

    if __name__ == "__main__":
        app.run()

A handler is sugar for ``app.stream(topic, group=group).map(fn).to(output)`` with one
difference: it may return ``None`` (publish nothing), a value (publish it) or a
``list`` (publish each element; to publish one JSON array value, return it inside a
list). Outputs keep the key of the record they came from; ``key=`` (or ``key_by`` on
a stream) gives them another.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

from spate.brokers.base import Broker
from spate.brokers.registry import connect
from spate.brokers.url import parse_broker_url
from spate.config import Settings, load_settings
from spate.errors import CapabilityError, ConfigError
from spate.retry import Retry
from spate.runtime.deadletters import resolve_on_error
from spate.runtime.errors import OnError, error_policy
from spate.runtime.lifecycle import Lifecycle, Processor, Service
from spate.runtime.retryprocessors import with_retry_topics
from spate.runtime.stats import ProcessorStats
from spate.serde import Serde
from spate.state.table import Table
from spate.streams.dedup import Dedup
from spate.streams.stages import is_async_callable
from spate.streams.stream import Stream
from spate.topic import Topic

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

log = logging.getLogger("spate.app")

_VALID_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class App:
    """A stream service: topics and processors, run with :meth:`run` or ``spate run``.

    ``broker`` and ``processing_guarantee`` left as None come from ``SPATE_BROKER`` /
    ``SPATE_PROCESSING_GUARANTEE`` or the defaults (``local://.spate``,
    ``"at-least-once"``); other keyword arguments override the remaining
    :class:`~spate.config.Settings` fields (``batch_size=``, ``fetch_timeout_s=``, …).

    Broker-native options stay apart from spate's settings and pass through to the
    adapter untouched in ``broker_options``, which takes what ``spate.connect(url,
    **options)`` takes: ``broker_options={"kafka_config": {"linger.ms": 20}}`` for
    librdkafka. ``kafka_config=`` is the deprecated spelling of that one option.
    """

    def __init__(
        self,
        name: str,
        broker: str | None = None,
        processing_guarantee: str | None = None,
        *,
        kafka_config: Mapping[str, Any] | None = None,
        broker_options: Mapping[str, Any] | None = None,
        **settings_overrides: Any,
    ) -> None:
        if not isinstance(name, str) or not _VALID_APP_NAME.match(name):
            raise ConfigError(
                f"app name {name!r} is not valid; use letters, digits, '.', '_' or '-'"
            )
        self.name = name
        self.settings: Settings = load_settings(
            {"broker": broker, "processing_guarantee": processing_guarantee, **settings_overrides}
        )
        self.broker_options: dict[str, Any] = dict(broker_options or {})
        if kafka_config is not None:
            warnings.warn(
                "App(kafka_config=...) is deprecated; pass "
                "broker_options={'kafka_config': {...}} instead",
                DeprecationWarning,
                stacklevel=2,
            )
            if "kafka_config" in self.broker_options:
                raise ConfigError(
                    "App got kafka_config twice, as kafka_config= and in broker_options; "
                    "keep only broker_options={'kafka_config': {...}}"
                )
            self.broker_options["kafka_config"] = dict(kafka_config)
        self.topics: dict[str, Topic[Any]] = {}
        self.tables: list[Table[Any]] = []
        """Every ``app.table(...)``: restored before the processors start, followed
        while they run (see :mod:`spate.state.table`)."""
        self.processors: list[Processor] = []
        self.stats: dict[str, ProcessorStats] = {}
        """Per-processor counters of every run in this process, by processor name."""

    def __repr__(self) -> str:
        return f"<App {self.name!r} broker={parse_broker_url(self.settings.broker).redacted!r}>"

    def configure(self, **overrides: Any) -> None:
        """Override settings after construction (``spate run`` flags win over the code)."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(changes) - {f.name for f in dataclasses.fields(Settings)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        self.settings = dataclasses.replace(self.settings, **changes)

    # --- declaration --------------------------------------------------------------------

    # Typed for checkers: ``value_type=Order`` (a class) gives a ``Topic[Order]``, a serde
    # object its value type; no value_type, a named serde or a value_type that is not a
    # class (``int | None``) the last overload's ``Topic[Any]``.
    @overload
    def topic(
        self,
        name: str,
        partitions: int = 1,
        *,
        value_type: type[T],
        serde: Serde[Any] | str | None = None,
        config: Mapping[str, str] | None = None,
    ) -> Topic[T]: ...
    @overload
    def topic(
        self,
        name: str,
        partitions: int = 1,
        *,
        serde: Serde[T],
        config: Mapping[str, str] | None = None,
    ) -> Topic[T]: ...
    @overload
    def topic(
        self,
        name: str,
        partitions: int = 1,
        value_type: Any = None,
        serde: Serde[Any] | str | None = None,
        config: Mapping[str, str] | None = None,
    ) -> Topic[Any]: ...
    def topic(
        self,
        name: str,
        partitions: int = 1,
        value_type: Any = None,
        serde: Serde[Any] | str | None = None,
        config: Mapping[str, str] | None = None,
    ) -> Topic[Any]:
        """Declare a topic; it is created on start if missing (an existing one is kept)."""
        topic = Topic.of(
            name,
            partitions=partitions,
            value_type=value_type,
            serde=serde,
            config=config,
        )
        known = self.topics.get(name)
        if known is not None and known.partitions != topic.partitions:
            raise ConfigError(
                f"topic {name!r} declared twice with partitions={known.partitions} and "
                f"partitions={topic.partitions}; declare it once and reuse the object"
            )
        self.topics[name] = topic
        return topic

    @overload
    def stream(
        self,
        topic: Topic[T] | Sequence[Topic[T]],
        group: str | None = None,
        *,
        name: str | None = None,
        on_error: OnError | None = None,
        retry: Retry | None = None,
        dead_letter: bool | str | None = None,
        timeout_s: float | None = None,
    ) -> Stream[T]: ...
    @overload
    def stream(
        self,
        topic: Sequence[Topic[Any]],
        group: str | None = None,
        *,
        name: str | None = None,
        on_error: OnError | None = None,
        retry: Retry | None = None,
        dead_letter: bool | str | None = None,
        timeout_s: float | None = None,
    ) -> Stream[Any]: ...
    def stream(
        self,
        topic: Topic[Any] | Sequence[Topic[Any]],
        group: str | None = None,
        *,
        name: str | None = None,
        on_error: OnError | None = None,
        retry: Retry | None = None,
        dead_letter: bool | str | None = None,
        timeout_s: float | None = None,
    ) -> Stream[Any]:
        """A new processor reading ``topic`` (or several) as ``group``; chain operators on it.

        The group is where its progress is kept, so it must stay the same across
        deployments: give ``group`` (``name`` defaults to it), or ``name`` (the group
        is then ``"<app>.<name>"``). A ``Topic[T]`` gives a ``Stream[T]`` (several topics
        of different types: ``Stream[Any]``).

        When a user function raises for a record (DESIGN §7, docs/errors.md): ``retry``
        calls it again with backoff; then ``dead_letter=True`` (topic
        ``<source>.dlq``) or ``dead_letter="topic"`` publishes the record there and
        moves on, else ``on_error`` stops the processor (``"stop"``, the default) or
        drops the record (``"skip"``). ``timeout_s`` fails an ``async`` function's
        call that takes longer (a plain function runs in a thread, which cannot be
        cancelled: it gets no timeout).
        """
        topics = [topic] if isinstance(topic, Topic) else list(topic)
        for t in topics:
            if not isinstance(t, Topic):
                raise ConfigError(f"app.stream() needs Topic objects from app.topic(), got {t!r}")
        if name is None:
            if group is None:
                raise ConfigError(
                    "app.stream() needs group='...': the consumer group that keeps its progress"
                )
            name = group
        stream: Stream[Any] = Stream(
            topics, group if group is not None else f"{self.name}.{name}", name
        )
        stream.hops = self
        resolved, dead_letters = resolve_on_error(
            name, [t.name for t in topics], on_error, dead_letter
        )
        checked = Processor(
            stream,
            resolved,
            retry=_checked_retry(name, retry),
            timeout_s=_checked_timeout(name, timeout_s),
            dead_letters=dead_letters,
        )
        for processor in with_retry_topics(checked):
            self._register(processor)
        return stream

    def handler(
        self,
        topic: Topic[Any] | Sequence[Topic[Any]],
        group: str | None = None,
        output: Topic[Any] | None = None,
        *,
        on_error: OnError | None = None,
        retry: Retry | None = None,
        dead_letter: bool | str | None = None,
        timeout_s: float | None = None,
        key: Callable[[Any], Any] | None = None,
        name: str | None = None,
        dedup: Dedup | None = None,
    ) -> Callable[[F], F]:
        """Decorate a function (``def`` or ``async def``) that handles each record's value.

        Its result — None, a value, or a list of values — is published to ``output``
        (or dropped without one), keyed like the input unless ``key(value)`` is given.
        ``on_error``, ``retry``, ``dead_letter`` and ``timeout_s`` are as for
        :meth:`stream`. A function with a parameter named ``state`` is called as
        ``fn(value, state)`` with the :class:`~spate.State` kept for the record's key,
        as :meth:`Stream.stateful_map` does (docs/state.md).
        ``dedup=Dedup(key=..., ttl_s=...)`` calls the function only for
        records whose key was not handled before on their partition (``Stream.dedup``).
        """

        def register(fn: F) -> F:
            if not callable(fn):
                raise ConfigError(f"app.handler() decorates a function, got {fn!r}")
            if dedup is not None and not isinstance(dedup, Dedup):
                raise ConfigError(
                    f"app.handler(dedup={dedup!r}) needs a spate.Dedup, "
                    "e.g. dedup=Dedup(key=lambda order: order.id, ttl_s=3600)"
                )
            processor_name = name or getattr(fn, "__name__", None) or repr(fn)
            if timeout_s is not None and not is_async_callable(fn):
                raise ConfigError(
                    f"handler {processor_name!r}: timeout_s={timeout_s} needs an 'async def' "
                    "function (a thread cannot be cancelled); make it async, or give the "
                    "blocking call its own timeout"
                )
            stream = self.stream(
                topic,
                group,
                name=processor_name,
                on_error=on_error,
                retry=retry,
                dead_letter=dead_letter,
                timeout_s=timeout_s,
            )
            if dedup is not None:
                stream.dedup(dedup.key, dedup.ttl_s)
            if _takes_state(fn):
                stream._stateful_emit(fn)
            else:
                stream._emit(fn)
            if key is not None:
                stream.key_by(key)
            if output is not None:
                stream.to(output)
            return fn

        return register

    def table(self, topic: Topic[T]) -> Table[T]:
        """The latest value per key of ``topic``, for ``stream.join(table)``: a global
        table, restored by every worker before its processors start and followed while
        they run. A None (or empty) value deletes its key. Where the broker compacts
        topics (Kafka), a topic spate creates for a table is created compacted."""
        if not isinstance(topic, Topic):
            raise ConfigError(f"app.table() needs a Topic from app.topic(), got {topic!r}")
        for known in self.tables:
            if known.name == topic.name:
                raise ConfigError(
                    f"app {self.name!r} has a table of topic {topic.name!r} already; "
                    "reuse that Table object"
                )
        self.topics.setdefault(topic.name, topic)
        table = Table(topic, self.name)
        self.tables.append(table)
        return table

    def services(self) -> list[Service]:
        """What runs beside this App's processors: its tables, which start (restored)
        before the processors do."""
        return list(self.tables)

    # --- hops (spate.streams.hops): group_by and join_stream add processors -------------

    def internal_topic(
        self, stream: Stream[Any], kind: str, partitions: int, serde: Serde[Any]
    ) -> Topic[Any]:
        topic: Topic[Any] = Topic(
            name=f"{self.name}-{stream.name}-{kind}", partitions=partitions, serde=serde
        )
        if topic.name in self.topics:
            raise ConfigError(
                f"stream {stream.name!r} needs the internal topic {topic.name!r}, which is "
                "declared already; give the stream another name"
            )
        self.topics[topic.name] = topic
        return topic

    def continue_in(self, upstream: Stream[Any], suffix: str, topic: Topic[Any]) -> Stream[Any]:
        before = next(p for p in self.processors if p.stream is upstream)
        name = f"{upstream.name}.{suffix}"
        stream: Stream[Any] = Stream([topic], f"{upstream.group}.{suffix}", name)
        stream.hops = self
        dead_letter = next(iter(before.dead_letters.values()), None)
        self._register(
            Processor(
                stream,
                before.on_error,
                retry=before.retry,
                timeout_s=before.timeout_s,
                dead_letters={} if dead_letter is None else {topic.name: dead_letter},
            )
        )
        return stream

    def _register(self, processor: Processor) -> None:
        if not processor.dead_letters:
            error_policy(processor.on_error, processor.name)  # validates on_error now
        for other in self.processors:
            if other.name == processor.name:
                raise ConfigError(
                    f"app {self.name!r} has two processors named {processor.name!r}; "
                    "pass name=... to tell them apart"
                )
            if other.group == processor.group:
                raise ConfigError(
                    f"processors {other.name!r} and {processor.name!r} share group "
                    f"{processor.group!r}; each processor needs its own group"
                )
        for t in processor.stream.topics:
            self.topics.setdefault(t.name, t)
        self.processors.append(processor)
        self.stats[processor.name] = ProcessorStats(processor=processor.name, group=processor.group)

    # --- running ------------------------------------------------------------------------

    def connect(self) -> Broker:
        """A (not yet started) broker for this App's settings."""
        return connect(self.settings.broker, **self.broker_options)

    async def prepare(self, broker: Broker) -> None:
        """Check the guarantee against the broker and create every missing topic."""
        guarantee = self.settings.processing_guarantee
        capabilities = broker.capabilities
        if guarantee == "exactly-once" and not (
            capabilities.transactions or capabilities.dedup_on_publish
        ):
            raise CapabilityError(
                f"app {self.name!r}: broker {parse_broker_url(broker.url).redacted!r} has "
                f"neither transactions nor deduplication on publish, so "
                f"processing_guarantee={guarantee!r} is not possible there; use "
                "'at-least-once', or a broker with transactions (local, memory, kafka) or "
                "deduplication (nats, redis: effectively-once)"
            )
        declared = dict(self.topics)
        for processor in self.processors:
            for t in (
                *processor.stream.output_topics,
                *processor.dead_letter_topics,
                *processor.changelog_topics(self.name),
            ):
                declared.setdefault(t.name, t)
        compacted = {table.name for table in self.tables} if capabilities.compaction else set()
        for t in declared.values():
            config = dict(t.config)
            if t.name in compacted:
                config.setdefault("cleanup.policy", "compact")
            info = await broker.create_topic(t.name, t.partitions, config, exist_ok=True)
            if info.partitions != t.partitions:
                log.warning(
                    "event=partitions_differ app=%s topic=%s declared=%d existing=%d",
                    self.name,
                    t.name,
                    t.partitions,
                    info.partitions,
                )

    async def run_async(self, stop: asyncio.Event | None = None) -> None:
        """Run every processor until ``stop`` is set (or one fails), then drain.

        Draining finishes the current batch, flushes, commits and releases the
        partitions. If a processor fails, the others drain too and the error is raised.
        """
        await Lifecycle(self).run_async(stop)

    async def run_processors(
        self, broker: Broker, stop: asyncio.Event, settings: Settings | None = None
    ) -> None:
        """Run a Worker per processor on a started, prepared broker until ``stop``.

        ``settings`` replaces the App's own for this run (TestApp shortens idle fetches).
        """
        await Lifecycle(self, settings=settings).run_processors(broker, stop)

    def validate(self) -> None:
        """Raise ConfigError if this App cannot run (no processors, or a window or
        windowed join that dead-letters late records in a processor without a
        dead-letter topic)."""
        if not self.processors:
            raise ConfigError(
                f"app {self.name!r} has no processors; add @app.handler(...) or app.stream(...)"
            )
        for processor in self.processors:
            if processor.stream.late_dead_letters and not processor.dead_letters:
                raise ConfigError(
                    f"processor {processor.name!r}: late='dead_letter' (of a window or a "
                    "join_stream) needs a dead-letter topic; pass dead_letter=True to "
                    "app.stream(...)"
                )

    def run(self) -> None:
        """Run until SIGINT/SIGTERM, then drain and return. A second signal exits at once.

        This is one process: several workers need ``spate run``, which can start a fresh
        interpreter per worker because it knows the App's ``MODULE:APP``."""
        if self.settings.workers != 1:
            raise ConfigError(
                f"app {self.name!r}: workers={self.settings.workers} needs "
                f"`spate run MODULE:APP`; app.run() runs this one process (drop workers= "
                "or unset SPATE_WORKERS to run it here)"
            )
        Lifecycle(self).run()


def _takes_state(fn: Callable[..., Any]) -> bool:
    """A handler that keeps state per key names a parameter ``state``."""
    try:
        return "state" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature keeps no state
        return False


def _checked_retry(processor: str, retry: object) -> Retry | None:
    if retry is None or isinstance(retry, Retry):
        return retry
    raise ConfigError(
        f"processor {processor!r}: retry={retry!r} must be a spate.Retry, "
        "e.g. retry=Retry(attempts=3, backoff_s=0.5)"
    )


def _checked_timeout(processor: str, timeout_s: object) -> float | None:
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
        raise ConfigError(
            f"processor {processor!r}: timeout_s={timeout_s!r} must be a number of seconds > 0"
        )
    return float(timeout_s)
