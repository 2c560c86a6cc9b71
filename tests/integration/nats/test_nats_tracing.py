"""Trace context from producer to processor through NATS JetStream message headers."""

from __future__ import annotations

from tracing_checks import check_trace_context


async def test_trace_context_on_nats(nats_url: str) -> None:
    await check_trace_context(nats_url)


async def test_trace_context_with_effectively_once_outputs(nats_url: str) -> None:
    """exactly-once on NATS sends each output with a dedup id: the headers go too."""
    await check_trace_context(nats_url, guarantee="exactly-once")
