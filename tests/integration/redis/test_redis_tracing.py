"""Trace context from producer to processor through Redis Streams record headers."""

from __future__ import annotations

from tracing_checks import check_trace_context


async def test_trace_context_on_redis(redis_url: str) -> None:
    await check_trace_context(redis_url)
