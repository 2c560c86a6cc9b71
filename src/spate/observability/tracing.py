"""OpenTelemetry spans around each processed batch (DESIGN §9), off unless asked.

With ``tracing=True`` (``SPATE_TRACING=1``) a worker runs each batch inside one
CONSUMER span, ``spate process <topic>``, with the messaging semantic conventions'
attributes. Records get spans of their own only where it is worth it: every record
whose headers carry a W3C ``traceparent`` gets one that continues the producer's
trace (its parent is the producer's span; the batch span is a link), and of the
others a ``tracing_sample_ratio`` share gets one under the batch span. The batch
span also links to the producers' spans, and the batch's outputs carry its context
(:data:`OUTPUT_HEADERS`), so the next processor continues it. Record spans last as
long as their batch: the pipeline runs a batch at once, so there is no per-record
time to measure.

The batch loop pays almost nothing for this when tracing is off: :func:`traced` then
hands the worker its plain ``_process`` back, and the send step reads one (empty)
context variable per batch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from spate.brokers.base import Producer
from spate.config import Settings
from spate.errors import ConfigError
from spate.record import Headers, Record
from spate.streams.stages import Output
from spate.streams.stream import Stream
from spate.tracing import extract, inject

OUTPUT_HEADERS: ContextVar[Headers] = ContextVar("spate_output_headers", default=())
"""The trace headers of the batch being processed (empty with tracing off): the
delivery's send step puts them on every output, so the next processor continues
the batch's trace."""

MAX_LINKS = 64
"""Most producer spans one batch span links to (every one still gets a record span)."""

P = TypeVar("P", bound=Callable[..., Awaitable[None]])


def traced(process: P, settings: Settings, app: str, stream: Stream[Any]) -> P:
    """``process(records, ...)`` wrapped in the batch's spans; ``process`` itself when
    tracing is off. A ConfigError names the extra to install when it is missing."""
    if not settings.tracing:
        return process
    try:
        from opentelemetry import trace
        from opentelemetry.trace import Link, SpanKind
    except ImportError:
        raise ConfigError(
            "tracing=True needs OpenTelemetry; install it with "
            "pip install 'spate-streams[tracing]' or turn tracing off"
        ) from None
    tracer = trace.get_tracer("spate")
    topics, group = [topic.name for topic in stream.topics], stream.group
    system = settings.broker.partition("://")[0]
    name = f"spate process {','.join(topics)}"
    base = {
        "messaging.system": system,
        "messaging.destination.name": ",".join(topics),
        "messaging.consumer.group.name": group,
        "messaging.operation.type": "process",
        "spate.app": app,
        "spate.processor": stream.name,
    }
    ratio = settings.tracing_sample_ratio
    sample = random.random

    def record_spans(
        records: Sequence[Record], parents: list[Any], batch_span: Any, start: int
    ) -> list[Any]:
        spans: list[Any] = []
        batch_link = [Link(batch_span.get_span_context())]
        batch_context = trace.set_span_in_context(batch_span)
        for record, parent in zip(records, parents, strict=True):
            if parent is None:
                if sample() >= ratio:
                    continue
                parent = batch_context
            attributes: dict[str, Any] = {
                "messaging.system": system,
                "messaging.destination.name": record.topic,
                "messaging.consumer.group.name": group,
                "messaging.operation.type": "process",
                "messaging.destination.partition.id": str(record.partition),
                "spate.offset": record.offset,
            }
            spans.append(
                tracer.start_span(
                    f"spate process {record.topic}",
                    context=parent,
                    kind=SpanKind.CONSUMER,
                    attributes=attributes,
                    links=batch_link,
                    start_time=start,
                )
            )
        return spans

    def links(parents: list[Any]) -> list[Any]:
        contexts = [parent for parent in parents if parent is not None][:MAX_LINKS]
        return [Link(trace.get_current_span(parent).get_span_context()) for parent in contexts]

    async def process_traced(records: Sequence[Record], *args: Any) -> None:
        start = time.time_ns()
        parents = [extract(record.headers) if record.headers else None for record in records]
        with tracer.start_as_current_span(
            name,
            kind=SpanKind.CONSUMER,
            attributes={**base, "messaging.batch.message_count": len(records)},
            links=links(parents),
            start_time=start,
        ) as batch_span:
            spans = record_spans(records, parents, batch_span, start)
            token = OUTPUT_HEADERS.set(inject())
            try:
                await process(records, *args)
            except BaseException as exc:
                for span in spans:
                    span.record_exception(exc)
                    span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                raise
            finally:
                OUTPUT_HEADERS.reset(token)
                for span in spans:
                    span.end()

    return process_traced  # type: ignore[return-value]


def send_traced(producer: Producer, outputs: Sequence[Output], headers: Headers) -> None:
    """A batch's outputs, each with the batch's trace ``headers`` (``send_many`` has
    no headers: tracing pays one ``send`` call per output instead)."""
    send = producer.send
    for topic, value, key, _ in outputs:
        send(topic, value, key=key, headers=headers)
