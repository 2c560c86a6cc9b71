"""``spate bench produce|consume|e2e``: load tests on any broker, through the contract.

Each mode prints a line per ``--interval-s`` on stderr (with a progress bar on a
terminal) and a summary on stdout: one line of text, or one JSON object with
``--json`` (fields in docs/cli.md). The measuring is in :mod:`spate.bench`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import spate
from spate.bench import runs
from spate.bench.e2e import E2ESettings, run_e2e
from spate.bench.report import summary_line
from spate.brokers.base import Broker
from spate.cli.common import BrokerOption, missing_topic_hint, stderr
from spate.config import DEFAULT_BROKER
from spate.errors import ConfigError, TopicNotFoundError

app = typer.Typer(
    help="Load tests: publish and consume rates, acknowledgement and end-to-end latency.",
    no_args_is_help=True,
)

RecordsOption = Annotated[int, typer.Option("--records", "-n", help="How many records.")]
RecordSizeOption = Annotated[
    int, typer.Option("--record-size", "-s", help="Bytes in each record's value.")
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the summary as one JSON object on stdout.")
]
IntervalOption = Annotated[
    float, typer.Option("--interval-s", help="Seconds between progress lines on stderr.")
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout-s", help="Give up when no record arrived for this many seconds."),
]
CreateOption = Annotated[
    bool,
    typer.Option("--create", help="Create the topic (with --partitions) when it does not exist."),
]
PartitionsOption = Annotated[
    int, typer.Option("--partitions", "-p", help="Partitions of a topic the bench creates.")
]


def _at_least(value: float, minimum: float, option: str) -> None:
    if value < minimum:
        raise ConfigError(f"{option} {value:g} must be {minimum:g} or more")


def _positive(value: float | None, option: str) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{option} {value:g} must be a positive number of records a second")


async def _open_topic(broker: Broker, topic: str, create: bool, partitions: int) -> None:
    """Check that ``topic`` exists, or create it: a missing topic is a clean error."""
    if create:
        await broker.create_topic(topic, partitions, exist_ok=True)
        return
    try:
        await broker.describe_topic(topic)
    except TopicNotFoundError:
        raise TopicNotFoundError(
            f"topic {topic!r} does not exist; {missing_topic_hint(topic)} (or pass --create)"
        ) from None


@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[runs.OnBatch]:
    """A progress bar on a terminal; the callback the loops call per batch."""
    bar = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        disable=not stderr.is_terminal,
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


def _line(text: str) -> None:
    stderr.print(text)


def _print(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    else:
        sys.stdout.write(summary_line(summary) + "\n")
    sys.stdout.flush()


@app.command("produce")
def produce(
    topic: Annotated[str, typer.Argument(help="Topic to publish to.")],
    records: RecordsOption = 100_000,
    record_size: RecordSizeOption = 100,
    throughput: Annotated[
        float | None,
        typer.Option("--throughput", "-t", help="Records a second at most (default: no limit)."),
    ] = None,
    keys: Annotated[
        int, typer.Option("--keys", "-k", help="Distinct keys used in turn (0: no keys).")
    ] = 0,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch", help="Flush once per --batch-size records instead of once per record."
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Records per flush.")] = 1000,
    create: CreateOption = False,
    partitions: PartitionsOption = 1,
    interval_s: IntervalOption = 5.0,
    as_json: JsonOption = False,
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """Publish N records and report records/s, MB/s and acknowledgement latency."""
    _at_least(records, 1, "--records")
    _at_least(record_size, 0, "--record-size")
    _at_least(keys, 0, "--keys")
    _at_least(batch_size, 1, "--batch-size")
    _at_least(partitions, 1, "--partitions")
    _positive(throughput, "--throughput")
    settings = runs.ProduceSettings(
        topic=topic,
        records=records,
        record_size=record_size,
        throughput=throughput,
        keys=keys,
        batch_size=batch_size if batch else 1,
        interval_s=interval_s,
    )

    async def main() -> dict[str, Any]:
        async with spate.connect(broker) as connected:
            await _open_topic(connected, topic, create, partitions)
            with _progress("produce", records) as on_batch:
                summary = await runs.produce(connected, settings, on_batch, _line)
            return summary.to_json()

    _print(asyncio.run(main()), as_json)


@app.command("consume")
def consume(
    topic: Annotated[str, typer.Argument(help="Topic to read from its start.")],
    records: RecordsOption = 100_000,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            "-g",
            help="Read as this group and commit each batch (default: "
            "an anonymous group that commits nothing).",
        ),
    ] = None,
    fill: Annotated[
        bool,
        typer.Option(
            "--fill", help="Publish --records records of --record-size bytes first (not timed)."
        ),
    ] = False,
    record_size: RecordSizeOption = 100,
    create: CreateOption = False,
    partitions: PartitionsOption = 1,
    timeout_s: TimeoutOption = 30.0,
    interval_s: IntervalOption = 5.0,
    as_json: JsonOption = False,
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """Read N records and report records/s and MB/s of consumption."""
    _at_least(records, 1, "--records")
    _at_least(record_size, 0, "--record-size")
    _at_least(timeout_s, 0, "--timeout-s")
    _at_least(partitions, 1, "--partitions")
    reading = runs.ReadSettings(
        topic=topic, records=records, timeout_s=timeout_s, interval_s=interval_s
    )

    async def main() -> dict[str, Any]:
        async with spate.connect(broker) as connected:
            await _open_topic(connected, topic, create, partitions)
            if fill:
                filler = runs.ProduceSettings(
                    topic=topic, records=records, record_size=record_size, batch_size=1000
                )
                await runs.produce(connected, filler, lambda _done: None, lambda _line: None)
            with _progress("consume", records) as on_batch:
                summary = await runs.consume(
                    connected,
                    reading,
                    group or f"spate-bench-{secrets.token_hex(4)}",
                    commit=group is not None,
                    on_batch=on_batch,
                    on_line=_line,
                )
            return summary.to_json()

    _print(asyncio.run(main()), as_json)


@app.command("e2e")
def e2e(
    records: RecordsOption = 10_000,
    rate: Annotated[float, typer.Option("--rate", "-r", help="Records a second to send.")] = 1000,
    record_size: RecordSizeOption = 100,
    partitions: PartitionsOption = 1,
    timeout_s: TimeoutOption = 30.0,
    interval_s: IntervalOption = 5.0,
    as_json: JsonOption = False,
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """Send N records at a steady rate to a fresh topic, read them in another process,
    and report end-to-end latency from each record's intended send time."""
    _at_least(records, 1, "--records")
    _at_least(record_size, runs.SEND_TIME.size, "--record-size")
    _at_least(partitions, 1, "--partitions")
    _positive(rate, "--rate")
    reading = runs.ReadSettings(
        topic=f"spate-bench-e2e-{secrets.token_hex(4)}",
        records=records,
        timeout_s=timeout_s,
        interval_s=interval_s,
    )
    settings = E2ESettings(
        reading=reading, rate=rate, record_size=record_size, partitions=partitions
    )
    with _progress("e2e", records) as on_batch:
        summary = asyncio.run(run_e2e(broker, settings, on_batch, _line))
    _print(summary, as_json)


@app.command("_e2e-consumer", hidden=True)
def e2e_consumer(
    topic: str,
    group: Annotated[str, typer.Option("--group")],
    records: RecordsOption,
    partitions: PartitionsOption,
    timeout_s: TimeoutOption,
    interval_s: IntervalOption,
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """The consumer side of ``bench e2e``, in its own process: ``ready`` on stdout once
    it owns every partition, then its summary as JSON."""

    def ready() -> None:
        sys.stdout.write("ready\n")
        sys.stdout.flush()

    async def main() -> dict[str, Any]:
        async with (
            spate.connect(broker) as connected,
            connected.consumer([topic], group) as consumer,
        ):
            reading = runs.ReadSettings(
                topic=topic, records=records, timeout_s=timeout_s, interval_s=interval_s
            )
            summary = await runs.e2e_receive(
                consumer, reading, partitions, ready=ready, on_line=_line
            )
            return summary.to_json()

    _print(asyncio.run(main()), as_json=True)
