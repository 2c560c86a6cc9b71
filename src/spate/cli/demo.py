"""``spate demo``: a live access-log pipeline on the embedded broker, no server needed.

A generator writes synthetic access logs (with an incident and malformed lines) into
``demo-access-logs``; the App in :mod:`spate.demo.pipeline` parses, counts and raises
5xx alerts; the screen shows it live. Without ``--broker`` the data goes to a fresh
temporary directory (``local://<tmp>/spate-demo-…``) that is removed at the end.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
from contextlib import ExitStack
from typing import Annotated

import typer
from rich.live import Live

import spate
from spate.brokers.base import Broker
from spate.brokers.url import parse_broker_url
from spate.cli.common import stdout
from spate.clock import SystemClock
from spate.demo.analysis import ErrorRateAlert, Stats
from spate.demo.logs import AccessLogGenerator, Incident
from spate.demo.pipeline import ALERTS_TOPIC, GROUPS, LOGS_TOPIC, build_app
from spate.demo.view import RateMeter, Snapshot, render
from spate.errors import ConfigError

TICK_S = 0.05
"""How often the generator publishes a batch."""
REFRESH_S = 0.25
DRAIN_TIMEOUT_S = 5.0
"""How long the pipeline may take, after the generator stops, to catch up."""


class LogFeed:
    """Publishes ``rate`` generated lines a second for ``duration_s``, in small batches."""

    def __init__(self, rate: int, duration_s: float, seed: int | None) -> None:
        self.rate = rate
        self.duration_s = duration_s
        self.produced = 0
        self.elapsed_s = 0.0
        self._generator = AccessLogGenerator(Incident.within(duration_s), seed=seed)

    async def run(self, broker: Broker, finish: asyncio.Event) -> None:
        """Publish until ``duration_s`` has passed or ``finish`` is set."""
        clock = SystemClock()
        started = clock.monotonic()
        async with broker.producer() as producer:
            while (
                not finish.is_set() and (elapsed := clock.monotonic() - started) < self.duration_s
            ):
                self.elapsed_s = elapsed
                due = int(elapsed * self.rate) - self.produced
                if due > 0:
                    lines = self._generator.lines(
                        due, elapsed_s=elapsed, timestamp_ms=clock.time_ms()
                    )
                    for line in lines:
                        client = line.split(" ", 1)[0]
                        producer.send(LOGS_TOPIC, line.encode(), key=client.encode())
                    await producer.flush()
                    self.produced += due
                await asyncio.sleep(TICK_S)


def _finish_on_signals(finish: asyncio.Event) -> None:
    """The first Ctrl-C (or SIGTERM) ends the run early, still with a drain and a
    summary; after it, the signals act as usual again, so a second one stops at once."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal() -> None:
        finish.set()
        for signum in signals:
            loop.remove_signal_handler(signum)

    for signum in signals:
        loop.add_signal_handler(signum, on_signal)


async def _total_lag(broker: Broker) -> dict[str, int]:
    return {group: sum(x.lag for x in await broker.lag(group)) for group in GROUPS}


async def run_demo(
    broker_url: str, *, duration_s: float, rate: int, live: Live | None, seed: int | None = None
) -> tuple[Snapshot, Stats]:
    """Run the generator, the App and the view for ``duration_s``; drain; return the end."""
    stats = Stats()
    app = build_app(broker_url, stats, ErrorRateAlert())
    snap = Snapshot(broker=broker_url, elapsed_s=0.0, duration_s=duration_s)
    feed = LogFeed(rate, duration_s, seed)
    stop, finish = asyncio.Event(), asyncio.Event()
    _finish_on_signals(finish)
    input_meter, processed_meter = RateMeter(), RateMeter()
    loop = asyncio.get_running_loop()
    async with spate.connect(broker_url) as broker:
        await app.prepare(broker)
        pipeline = asyncio.create_task(app.run_processors(broker, stop))
        generator = asyncio.create_task(feed.run(broker, finish))
        started = loop.time()
        drain_deadline: float | None = None
        try:
            while not pipeline.done():
                now = loop.time()
                snap.elapsed_s = now - started
                snap.produced = feed.produced
                snap.input_rate = input_meter.update(now, feed.produced)
                snap.processed_rate = processed_meter.update(now, stats.lines)
                snap.lag = await _total_lag(broker)
                if live is not None:
                    live.update(render(snap, stats))
                if generator.done():
                    generator.result()  # a failed generator ends the demo with its error
                    drain_deadline = drain_deadline or now + DRAIN_TIMEOUT_S
                    if not any(snap.lag.values()) or now >= drain_deadline:
                        break
                await asyncio.sleep(REFRESH_S)
        finally:
            stop.set()
            generator.cancel()
            await asyncio.gather(generator, return_exceptions=True)
            await pipeline
        snap.lag = await _total_lag(broker)
    # The summary shows averages over the whole run rather than the last seconds.
    snap.produced = feed.produced
    snap.input_rate = feed.produced / max(feed.elapsed_s, TICK_S)
    snap.processed_rate = stats.lines / max(loop.time() - started, TICK_S)
    snap.done = True
    return snap, stats


def demo(
    duration: Annotated[
        float, typer.Option("--duration", "-d", help="Seconds to generate logs for.")
    ] = 20.0,
    rate: Annotated[int, typer.Option("--rate", "-r", help="Log lines per second.")] = 500,
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker",
            "-b",
            envvar="SPATE_BROKER",
            show_envvar=True,
            help="Broker URL (default: a fresh local:// temporary directory, removed at the end).",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed for the generator, for a repeatable run.")
    ] = None,
) -> None:
    """Watch a live access-log pipeline: parsing, counts, latency and 5xx alerts."""
    if duration <= 0:
        raise ConfigError(f"--duration {duration:g} must be more than 0 seconds")
    if rate < 1:
        raise ConfigError(f"--rate {rate} must be 1 or more lines per second")
    keep_data = broker is not None and parse_broker_url(broker).scheme != "memory"
    with ExitStack() as stack:
        if broker is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="spate-demo-"))
            broker = f"local://{directory}"
        live = None
        if stdout.is_terminal:
            live = stack.enter_context(Live(console=stdout, refresh_per_second=4))
        snap, stats = asyncio.run(
            run_demo(broker, duration_s=duration, rate=rate, live=live, seed=seed)
        )
        if live is not None:
            live.update(render(snap, stats))
    if live is None:
        stdout.print(render(snap, stats))
    firing = sum(1 for a in stats.alerts if a["state"] == "firing")
    stdout.print(
        f"done: {stats.lines:,} lines, {stats.malformed:,} malformed, "
        f"{stats.requests:,} requests, {firing} alert(s) fired "
        f"({len(stats.alerts)} record(s) in {ALERTS_TOPIC!r})"
    )
    if keep_data:
        stdout.print(f"explore: spate consume {ALERTS_TOPIC} --from-beginning --broker {broker}")
