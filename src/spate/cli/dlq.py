"""``spate dlq list|show|replay|purge``: look at dead letters and re-drive them.

Every command reads the dead-letter topic with partition readers (no group, nothing
committed), so looking never moves a consumer. Records are read and decoded in full
before anything is published, so a record that is no dead letter stops a replay
before its first send rather than halfway through.

Purging deletes each partition's oldest records through ``Broker.delete_before``
(a log only loses its head), so it goes by when a dead letter was written — its
record timestamp, which is its failure time — and a broker without
``Capabilities.delete_records`` refuses with a CapabilityError naming it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

import spate
from spate.brokers.base import Broker, TopicInfo, require
from spate.cli.common import BrokerOption, missing_topic_hint, stderr, stdout
from spate.cli.when import parse_time
from spate.config import DEFAULT_BROKER
from spate.deadletter import ERROR_HEADERS, DeadLetter
from spate.errors import BrokerError, ConfigError, TopicNotFoundError
from spate.record import Headers, Record

HEADER_REPLAYED_FROM = "spate-replayed-from"
"""Put on every replayed record: ``<dlq topic>/<partition>/<offset>`` it came from."""
READ_TIMEOUT_S = 30.0
FETCH_TIMEOUT_S = 2.0
FLUSH_EVERY = 1000
MESSAGE_WIDTH = 60

app = typer.Typer(
    help="Inspect, replay and purge dead letters (records whose processing failed).",
    no_args_is_help=True,
)


async def _topic(broker: Broker, topic: str) -> TopicInfo:
    require(broker, "reader", "read dead letters")
    try:
        return await broker.describe_topic(topic)
    except TopicNotFoundError:
        raise TopicNotFoundError(
            f"topic {topic!r} does not exist; dead letters of topic T are in T.dlq "
            f"(or the topic named by dead_letter=...), or {missing_topic_hint(topic)}"
        ) from None


async def _read(broker: Broker, info: TopicInfo) -> list[DeadLetter]:
    """Every dead letter in the topic as it is now, partition by partition."""
    letters: list[DeadLetter] = []
    for partition in range(info.partitions):
        async with broker.reader(info.name, partition, "earliest") as reader:
            try:
                records = await reader.read_to_end(READ_TIMEOUT_S)
            except TimeoutError as exc:
                raise BrokerError(f"reading {info.name!r} from {broker.url}: {exc}") from None
        letters.extend(DeadLetter.from_record(record) for record in records)
    return letters


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MESSAGE_WIDTH else line[: MESSAGE_WIDTH - 1] + "…"


def _source(letter: DeadLetter) -> str:
    return f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"


def _summary(letter: DeadLetter) -> dict[str, Any]:
    return {
        "partition": letter.record.partition,
        "offset": letter.record.offset,
        "failed_at": _stamp(letter.failed_at),
        "error_type": letter.error_type,
        "error_message": letter.error_message,
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "processor": letter.processor,
        "attempts": letter.attempts,
    }


def _table(letters: Iterable[DeadLetter]) -> Table:
    table = Table()
    for name in ("partition", "offset", "failed at"):
        table.add_column(name, no_wrap=True)
    table.add_column("error type", overflow="fold", min_width=10)
    table.add_column("message", overflow="fold", min_width=12)
    table.add_column("source", overflow="fold", min_width=12)
    for letter in letters:
        table.add_row(
            str(letter.record.partition),
            str(letter.record.offset),
            _stamp(letter.failed_at),
            escape(letter.error_type),
            escape(_short(letter.error_message)),
            escape(_source(letter)),
        )
    return table


def _positive(value: int | None, option: str) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{option} {value} must be 1 or more")


@app.command("list")
def list_dead_letters(
    topic: Annotated[str, typer.Argument(help="Dead-letter topic, e.g. orders.dlq.")],
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="Show only the first N dead letters.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line instead of a table.")
    ] = False,
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """List dead letters: when, error type, message and where the record came from."""
    _positive(limit, "--limit")

    async def body() -> list[DeadLetter]:
        async with spate.connect(broker) as b:
            return await _read(b, await _topic(b, topic))

    letters = asyncio.run(body())[:limit]
    if as_json:
        sys.stdout.write("".join(orjson.dumps(_summary(x)).decode() + "\n" for x in letters))
        return
    if not letters:
        stdout.print(f"no dead letters in {topic!r}")
        return
    stdout.print(_table(letters))


def render_bytes(data: bytes) -> str:
    """Bytes for a person: indented JSON, else UTF-8 text, else hex."""
    try:
        return orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return f"(hex) {data.hex()}"


@app.command("show")
def show(
    topic: Annotated[str, typer.Argument(help="Dead-letter topic, e.g. orders.dlq.")],
    offset: Annotated[int, typer.Argument(help="Offset of the dead letter (see dlq list).")],
    partition: Annotated[
        int, typer.Option("--partition", "-p", help="Partition of the dead-letter topic.")
    ] = 0,
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """Show one dead letter in full: key, value, every header and the traceback."""
    if offset < 0:
        raise ConfigError(f"OFFSET {offset} must be 0 or more")

    async def body() -> Record:
        async with spate.connect(broker) as b:
            await _topic(b, topic)
            async with b.reader(topic, partition, offset) as reader:
                got = await reader.fetch(1, FETCH_TIMEOUT_S)
                if not got or got[0].offset != offset:
                    first, end = await reader.bounds()
                    raise ConfigError(
                        f"no record at offset {offset} in {topic}[{partition}]; its records "
                        f"are at offsets {first}..{end - 1} (see spate dlq list {topic})"
                    )
                return got[0]

    record = asyncio.run(body())
    letter = DeadLetter.from_record(record)
    key = "-" if record.key is None else render_bytes(record.key)
    stdout.print(f"[bold]{escape(topic)}[{partition}]@{offset}[/bold]")
    stdout.print(f"failed at   {_stamp(letter.failed_at)}")
    stdout.print(f"error       {escape(letter.error_type)}: {escape(letter.error_message)}")
    stdout.print(f"source      {escape(_source(letter))}")
    stdout.print(f"processor   {escape(letter.processor or '-')}")
    stdout.print(f"attempts    {letter.attempts if letter.attempts is not None else '-'}")
    stdout.print(f"key         {escape(key)}")
    stdout.print("[bold]value[/bold]")
    stdout.print(escape(render_bytes(record.value)))
    headers = Table("header", "value")
    for name, raw in record.headers:
        headers.add_row(escape(name), escape(raw.decode("utf-8", errors="replace")))
    stdout.print(headers)
    stdout.print("[bold]traceback[/bold]")
    stdout.print(escape(letter.traceback or "(none recorded)"))


def matches(letter: DeadLetter, error_type: str | None) -> bool:
    """``--where``: the error type as written, or its last dotted part
    (``ValueError`` matches ``builtins.ValueError``)."""
    if error_type is None:
        return True
    return error_type in (letter.error_type, letter.error_type.rsplit(".", 1)[-1])


def replay_headers(letter: DeadLetter) -> Headers:
    """The record's own headers without the dead-letter ones, plus where it came from."""
    record = letter.record
    kept = tuple((name, value) for name, value in record.headers if name not in ERROR_HEADERS)
    origin = f"{record.topic}/{record.partition}/{record.offset}"
    return (*kept, (HEADER_REPLAYED_FROM, origin.encode()))


async def _replay(
    broker_url: str, topic: str, to: str | None, where: str | None, limit: int | None, dry_run: bool
) -> list[tuple[DeadLetter, str]]:
    async with spate.connect(broker_url) as broker:
        chosen = [x for x in await _read(broker, await _topic(broker, topic)) if matches(x, where)]
        plan = [(x, to or x.source_topic) for x in chosen[:limit]]
        for destination in sorted({d for _, d in plan}):
            try:
                await broker.describe_topic(destination)
            except TopicNotFoundError:
                raise TopicNotFoundError(
                    f"replay target topic {destination!r} does not exist; "
                    f"{missing_topic_hint(destination)}, or pick another with --to"
                ) from None
        if dry_run or not plan:
            return plan
        progress = Progress(
            TextColumn("[bold]replay"),
            BarColumn(),
            MofNCompleteColumn(),
            console=stderr,
            disable=not stderr.is_terminal,
        )
        async with broker.producer() as producer:
            with progress:
                task = progress.add_task("replay", total=len(plan))
                for done, (letter, destination) in enumerate(plan, start=1):
                    record = letter.record
                    producer.send(
                        destination, record.value, key=record.key, headers=replay_headers(letter)
                    )
                    if done % FLUSH_EVERY == 0:
                        await producer.flush()
                        progress.update(task, completed=done)
                await producer.flush()
                progress.update(task, completed=len(plan))
        return plan


@app.command("replay")
def replay(
    topic: Annotated[str, typer.Argument(help="Dead-letter topic, e.g. orders.dlq.")],
    to: Annotated[
        str | None,
        typer.Option("--to", help="Publish here instead of each record's source topic."),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option("--where", help="Only dead letters of this error type (e.g. ValueError)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="Replay at most N dead letters.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be replayed; publish nothing.")
    ] = False,
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """Re-publish dead letters to their source topic (or --to), oldest first, with a
    spate-replayed-from header; the dead letters stay where they are."""
    _positive(limit, "--limit")
    plan = asyncio.run(_replay(broker, topic, to, where, limit, dry_run))
    count = f"{len(plan):,} dead letter{'s' if len(plan) != 1 else ''}"
    if dry_run:
        if plan:
            stdout.print(_table(letter for letter, _ in plan))
        stderr.print(f"would replay {count} from {topic!r} (dry run: nothing sent)")
        return
    targets = ", ".join(repr(d) for d in sorted({d for _, d in plan})) or "-"
    stderr.print(f"replayed {count} from {topic!r} to {targets}")


@app.command("purge")
def purge(
    topic: Annotated[str, typer.Argument(help="Dead-letter topic, e.g. orders.dlq.")],
    before: Annotated[
        str,
        typer.Option(
            "--before",
            help="Remove dead letters written before this time: ISO-8601 "
            "(2026-12-04T16:30:00Z) or an age (90s, 15m, 1h, 2d, 1w).",
        ),
    ],
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """Remove the dead letters written before --before (each partition's oldest)."""
    cutoff = parse_time(before, datetime.now(UTC), "--before")

    async def body() -> int:
        async with spate.connect(broker) as b:
            require(b, "delete_records", "purge dead letters")
            await _topic(b, topic)
            return await b.delete_before(topic, int(cutoff.timestamp() * 1000))

    removed = asyncio.run(body())
    if removed == 0:
        stderr.print(
            f"nothing to purge: no dead letter in {topic!r} was written before {_stamp(cutoff)}"
        )
        return
    plural = "s" if removed != 1 else ""
    stderr.print(
        f"purged {removed:,} dead letter{plural} written before {_stamp(cutoff)} from {topic!r}"
    )
