"""W3C trace context in record headers, for code that produces records itself.

A record sent with ``headers=spate.tracing.inject()`` inside the caller's span
carries ``traceparent`` (and ``tracestate``), so a spate processor with tracing on
continues that trace when it processes the record (see docs/observability.md).

OpenTelemetry is an optional extra (``pip install 'spate-streams[tracing]'``):
without it, or with no span current, :func:`inject` returns the headers unchanged,
so calling it costs a producer nothing to keep.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from spate.record import Headers

if TYPE_CHECKING:
    from opentelemetry.context import Context

TRACE_HEADERS = ("traceparent", "tracestate")


@cache
def _propagator() -> Any:
    """The W3C trace-context propagator, or None without the tracing extra."""
    try:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None
    return TraceContextTextMapPropagator()


def inject(headers: Headers = (), context: Context | None = None) -> Headers:
    """``headers`` plus the ``traceparent``/``tracestate`` of the current span (or of
    ``context``); any trace headers already there are replaced, never repeated."""
    propagator = _propagator()
    if propagator is None:
        return headers
    carrier: dict[str, str] = {}
    propagator.inject(carrier, context=context)
    if not carrier:
        return headers
    kept = tuple(h for h in headers if h[0] not in TRACE_HEADERS)
    return kept + tuple((name, value.encode()) for name, value in carrier.items())


def extract(headers: Headers) -> Context | None:
    """The trace context ``headers`` carry, or None when they carry none (or without
    the tracing extra): use it as a span's parent or link."""
    carrier = {name: value for name, value in headers if name in TRACE_HEADERS}
    propagator = _propagator() if "traceparent" in carrier else None
    if propagator is None:
        return None
    text = {name: value.decode("latin-1") for name, value in carrier.items()}
    context: Context = propagator.extract(text)
    return context
