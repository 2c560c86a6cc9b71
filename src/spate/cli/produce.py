"""``spate produce TOPIC [VALUE]``: publish one value, or one record per line of a file
or of stdin."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import orjson
import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

import spate
from spate.cli.common import BrokerOption, missing_topic_hint, parse_pairs, stderr
from spate.config import DEFAULT_BROKER
from spate.errors import ConfigError, TopicNotFoundError
from spate.record import Headers
from spate.serde import encode_key

FLUSH_EVERY = 5000
"""Records buffered before waiting for acknowledgement: bounds memory on big files."""


class KeyExtractor:
    """Takes a record key from a field of a JSON line (``a.b`` reaches into objects)."""

    def __init__(self, field: str) -> None:
        if not field or any(not part for part in field.split(".")):
            raise ConfigError(f"--key-field {field!r} must be a field name such as user or a.b")
        self.field = field
        self._path = field.split(".")

    def key(self, line: bytes, line_number: int) -> bytes | None:
        try:
            value: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ConfigError(
                f"line {line_number} is not JSON, so --key-field {self.field!r} cannot be read"
            ) from None
        for part in self._path:
            if not isinstance(value, dict) or part not in value:
                raise ConfigError(f"line {line_number} has no field {self.field!r} for the key")
            value = value[part]
        return encode_key(value)


def iter_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Non-empty lines without their line ending, with 1-based line numbers."""
    for number, raw in enumerate(stream, start=1):
        line = raw.rstrip(b"\r\n")
        if line:
            yield number, line


def _open_input(file: Path | None, stack: ExitStack) -> tuple[BinaryIO, int | None]:
    """The input stream and its size in bytes when known (for the progress bar)."""
    if file is None or str(file) == "-":
        if sys.stdin.isatty():
            stderr.print("reading records from stdin, one per line; end with Ctrl-D")
        return sys.stdin.buffer, None
    try:
        stream = stack.enter_context(file.open("rb"))
        return stream, os.fstat(stream.fileno()).st_size
    except OSError as exc:
        raise ConfigError(f"--file {str(file)!r} cannot be read: {exc.strerror}") from None


def _progress(total: int | None) -> Progress:
    return Progress(
        TextColumn("[bold]produce"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[records]:,} records, {task.fields[rate]:,.0f} records/s"),
        TimeElapsedColumn(),
        console=stderr,
        disable=total is None or not stderr.is_terminal,
    )


async def _produce(
    broker_url: str,
    topic: str,
    source: str | tuple[BinaryIO, int | None],
    key: str | None,
    key_field: KeyExtractor | None,
    headers: Headers,
) -> int:
    """Publish ``source`` (one value, or a stream and its size); returns the count."""
    async with spate.connect(broker_url) as broker:
        try:
            await broker.describe_topic(topic)
        except TopicNotFoundError:
            raise TopicNotFoundError(
                f"topic {topic!r} does not exist; {missing_topic_hint(topic)}"
            ) from None
        async with broker.producer() as producer:
            fixed_key = encode_key(key)
            if isinstance(source, str):
                line = source.encode()
                record_key = key_field.key(line, 1) if key_field else fixed_key
                producer.send(topic, line, key=record_key, headers=headers)
                await producer.flush()
                return 1
            stream, size = source
            with _progress(size) as progress:
                task = progress.add_task("produce", total=size, records=0, rate=0.0)
                loop = asyncio.get_running_loop()
                started = loop.time()
                sent = 0
                for number, line in iter_lines(stream):
                    try:
                        record_key = key_field.key(line, number) if key_field else fixed_key
                    except ConfigError as exc:
                        await producer.flush()
                        raise ConfigError(
                            f"{exc}; the {sent} record(s) before it were sent"
                        ) from None
                    producer.send(topic, line, key=record_key, headers=headers)
                    sent += 1
                    if sent % FLUSH_EVERY == 0:
                        await producer.flush()
                        elapsed = max(loop.time() - started, 1e-9)
                        position = stream.tell() if size is not None else None
                        progress.update(task, completed=position, records=sent, rate=sent / elapsed)
                await producer.flush()
                elapsed = max(loop.time() - started, 1e-9)
                progress.update(task, completed=size, records=sent, rate=sent / elapsed)
                return sent


def produce(
    topic: Annotated[str, typer.Argument(help="Topic to publish to (it must exist).")],
    value: Annotated[
        str | None,
        typer.Argument(help="One value to publish; without it, lines come from --file or stdin."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Publish each non-empty line of this file ('-': stdin)."),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", "-k", help="Key for every record.")] = None,
    key_field: Annotated[
        str | None,
        typer.Option("--key-field", help="Take each record's key from this JSON field (a.b)."),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="Header NAME=VALUE on every record (repeatable)."),
    ] = None,
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """Publish records: a VALUE argument, or one record per line of --file or stdin."""
    if value is not None and file is not None:
        raise ConfigError("give either a VALUE argument or --file, not both")
    if key is not None and key_field is not None:
        raise ConfigError("give either --key or --key-field, not both")
    extractor = KeyExtractor(key_field) if key_field is not None else None
    headers: Headers = tuple(
        (name, text.encode()) for name, text in parse_pairs(header or [], "--header")
    )
    with ExitStack() as stack:
        source = value if value is not None else _open_input(file, stack)
        sent = asyncio.run(_produce(broker, topic, source, key, extractor, headers))
    stderr.print(f"sent {sent:,} record{'s' if sent != 1 else ''} to {topic!r}")
