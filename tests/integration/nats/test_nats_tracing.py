"""Trace context from producer to processor through NATS JetStream message headers."""

from __future__ import annotations

from tracing_checks import check_trace_context


async def test_trace_context_on_nats(nats_url: str) -> None:
    await check_trace_context(nats_url)
