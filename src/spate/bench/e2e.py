"""``spate bench e2e``: a producer here, a consumer in another process.

The consumer is ``python -m spate bench _e2e-consumer`` with the same broker URL, so
its fetching never shares a CPU-bound event loop with the producer. It says ``ready``
once it owns every partition, and the producer starts only then: joining a group is
not end-to-end latency. ``memory://`` lives inside one process, so there the consumer
is a task beside the producer instead.

Each run uses a fresh topic, deleted afterwards, so no earlier record is measured.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from dataclasses import dataclass
from typing import Any

import orjson

import spate
from spate.bench import runs
from spate.brokers.base import Broker
from spate.brokers.url import parse_broker_url
from spate.errors import BrokerError


@dataclass(frozen=True, kw_only=True, slots=True)
class E2ESettings:
    reading: runs.ReadSettings
    """The consumer's side; its topic is created for the run and deleted after it."""
    rate: float
    record_size: int
    partitions: int


async def _in_process(
    broker: Broker,
    group: str,
    settings: E2ESettings,
    on_batch: runs.OnBatch,
    on_line: runs.OnLine,
) -> dict[str, Any]:
    ready = asyncio.Event()
    topic = settings.reading.topic
    async with broker.consumer([topic], group) as consumer:
        receiving = asyncio.create_task(
            runs.e2e_receive(
                consumer,
                settings.reading,
                settings.partitions,
                ready=ready.set,
                on_line=on_line,
            )
        )
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({receiving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not receiving.done():
            await _send(broker, settings, on_batch)
        return (await receiving).to_json()


async def _send(broker: Broker, settings: E2ESettings, on_batch: runs.OnBatch) -> None:
    reading = settings.reading
    await runs.e2e_send(
        broker, reading.topic, reading.records, settings.rate, settings.record_size, on_batch
    )


async def _in_child(
    broker: Broker,
    url: str,
    group: str,
    settings: E2ESettings,
    on_batch: runs.OnBatch,
) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "spate",
        "bench",
        "_e2e-consumer",
        settings.reading.topic,
        "--group",
        group,
        "--records",
        str(settings.reading.records),
        "--partitions",
        str(settings.partitions),
        "--timeout-s",
        str(settings.reading.timeout_s),
        "--interval-s",
        str(settings.reading.interval_s),
        "--broker",
        url,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        if await child.stdout.readline() == b"ready\n":
            await _send(broker, settings, on_batch)
        output = await child.stdout.read()
        code = await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if code != 0 or not output.strip():
        # its own error is already on stderr, which it shares with this process
        raise BrokerError(f"the e2e consumer process failed (exit code {code})")
    result: dict[str, Any] = orjson.loads(output)
    return result


async def run_e2e(
    url: str, settings: E2ESettings, on_batch: runs.OnBatch, on_line: runs.OnLine
) -> dict[str, Any]:
    """One e2e run on its own topic, created here and deleted after; the consumer's
    summary (``Summary.to_json``)."""
    group = f"spate-bench-{secrets.token_hex(4)}"
    topic = settings.reading.topic
    async with spate.connect(url) as broker:
        await broker.create_topic(topic, settings.partitions)
        try:
            if parse_broker_url(url).scheme == "memory":
                summary = await _in_process(broker, group, settings, on_batch, on_line)
            else:
                summary = await _in_child(broker, url, group, settings, on_batch)
        finally:
            await broker.delete_topic(topic)
    summary["target_rate"] = settings.rate
    return summary
