"""Trace context from producer to processor on the embedded brokers (local://, memory://)."""

from __future__ import annotations

from pathlib import Path

from tracing_checks import check_trace_context


async def test_trace_context_on_the_local_broker(tmp_path: Path) -> None:
    await check_trace_context(f"local://{tmp_path / 'log'}")


async def test_trace_context_on_the_memory_broker() -> None:
    await check_trace_context("memory://tracing")


async def test_trace_context_through_a_transaction(tmp_path: Path) -> None:
    """exactly-once on local:// sends the outputs in a transaction: the headers go too."""
    await check_trace_context(f"local://{tmp_path / 'log'}", guarantee="exactly-once")
