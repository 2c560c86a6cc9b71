"""Trace context through a real run, shared by every broker's tracing test.

A test span produces a record whose headers carry ``traceparent`` (via
``spate.tracing.inject``); an App with ``tracing=True`` copies it to another topic.
The spans land in the SDK's in-memory exporter: the record must be processed in a
span of the same trace, whose parent is the producer's span, under a batch span
with the messaging attributes that links to it; and a second processor, reading
the copies, must continue the trace of the batch that wrote them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import spate
from spate.app import App
from spate.runtime.lifecycle import Lifecycle
from spate.runtime.stats import ProcessorStats
from spate.tracing import inject

DEADLINE_S = 60.0


@cache
def exporter() -> InMemorySpanExporter:
    """The process's one exporter: OpenTelemetry lets a process set its provider once."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return memory


def spans_of(trace_id: int) -> list[ReadableSpan]:
    return [
        s for s in exporter().get_finished_spans() if s.context and s.context.trace_id == trace_id
    ]


async def _until(
    app: App, name: str, condition: Callable[[ProcessorStats], bool], what: str
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while (stats := app.stats.get(name)) is None or not condition(stats):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def check_trace_context(
    broker_url: str, guarantee: str = "at-least-once", **broker_options: Any
) -> None:
    """Produce one traced and some untraced records; check the spans of processing them."""
    memory, suffix = exporter(), uuid.uuid4().hex[:8]
    app = App(
        "traced",
        broker=broker_url,
        processing_guarantee=guarantee,
        tracing=True,
        tracing_sample_ratio=0.0,
        fetch_timeout_s=0.05,
        broker_options=broker_options,
    )
    source, copies = app.topic(f"in{suffix}", partitions=2), app.topic(f"out{suffix}")
    app.handler(source, group=f"g{suffix}", output=copies, name="copy")(lambda v: v)
    app.handler(copies, group=f"h{suffix}", name="sink")(lambda v: None)
    stop = asyncio.Event()
    run = asyncio.create_task(Lifecycle(app).run_async(stop))
    try:
        for name in ("copy", "sink"):
            await _until(app, name, lambda stats: bool(stats.assigned), "partitions assigned")
        async with (
            spate.connect(broker_url, **broker_options) as broker,
            broker.producer() as producer,
        ):
            with trace.get_tracer("test").start_as_current_span("checkout") as span:
                producer.send(source.name, b'{"n": 0}', key=b"k", headers=inject())
            for i in range(1, 5):
                producer.send(source.name, b'{"n": %d}' % i, key=b"k%d" % i)
            await producer.flush()
        await _until(app, "sink", lambda stats: stats.consumed == 5, "5 records copied")
    finally:
        stop.set()
        await run
    producer_context = span.get_span_context()
    mine = spans_of(producer_context.trace_id)
    (record_span,) = (s for s in mine if s.name == f"spate process {source.name}" and s.parent)
    assert record_span.parent is not None
    assert record_span.parent.span_id == producer_context.span_id
    assert record_span.kind is trace.SpanKind.CONSUMER
    attributes = dict(record_span.attributes or {})
    assert attributes["messaging.destination.name"] == source.name
    assert attributes["messaging.consumer.group.name"] == f"g{suffix}"
    assert attributes["messaging.system"] == broker_url.partition("://")[0]
    batches = [s for s in memory.get_finished_spans() if _batch_of(s, f"g{suffix}")]
    assert sum(_count(s) for s in batches) == 5
    (linking,) = (b for b in batches if producer_context.trace_id in _linked_traces(b))
    assert linking.context is not None
    assert [link.context.span_id for link in record_span.links] == [linking.context.span_id]
    # The copies carry their batch's context: the next processor continues that trace.
    downstream = [s for s in memory.get_finished_spans() if _record_of(s, f"h{suffix}")]
    assert len(downstream) == 5
    batch_ids = {(b.context.trace_id, b.context.span_id) for b in batches if b.context}
    assert {(s.parent.trace_id, s.parent.span_id) for s in downstream if s.parent} <= batch_ids
    assert all(s.parent for s in downstream)


def _record_of(span: ReadableSpan, group: str) -> bool:
    attributes = span.attributes or {}
    return attributes.get("messaging.consumer.group.name") == group and "spate.offset" in attributes


def _batch_of(span: ReadableSpan, group: str) -> bool:
    attributes = span.attributes or {}
    return (
        attributes.get("messaging.consumer.group.name") == group
        and "messaging.batch.message_count" in attributes
    )


def _count(batch: ReadableSpan) -> int:
    return int(str((batch.attributes or {})["messaging.batch.message_count"]))


def _linked_traces(batch: ReadableSpan) -> set[int]:
    return {link.context.trace_id for link in batch.links}
