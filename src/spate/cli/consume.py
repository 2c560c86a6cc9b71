"""``spate consume TOPIC``: print records as JSON lines.

Where it starts and when it stops (documented in docs/cli.md):

* Without ``--group`` it reads every partition with a :class:`~spate.brokers.base.Reader`
  (no group, no commits), so looking at a topic never moves or creates any group.
* ``--from-beginning`` starts a reader with no committed offset at the start of each
  partition; otherwise it starts at the end and waits for new records, like
  ``tail -f``. A named group that has committed resumes where it stopped.
* It stops after ``--limit`` records; with ``--from-beginning`` and no ``--follow`` it
  also stops once it has read everything that was in the topic when it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer

import spate
from spate.brokers.base import Broker, OffsetReset, ReaderStart, TopicInfo, require
from spate.cli.common import BrokerOption, missing_topic_hint, stdout
from spate.config import DEFAULT_BROKER
from spate.errors import ConfigError, TopicNotFoundError
from spate.record import Record, TopicPartition

FETCH_MAX = 500
FETCH_TIMEOUT_S = 0.5
IDLE_FETCHES_AT_END = 2


def decode_value(data: bytes) -> Any:
    """JSON when the bytes are JSON, else UTF-8 text (undecodable bytes escaped)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", errors="backslashreplace")


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def record_to_json(record: Record) -> dict[str, Any]:
    """One record as a readable JSON object; a repeated header becomes a list."""
    headers: dict[str, Any] = {}
    for name, raw in record.headers:
        text = _text(raw)
        if name not in headers:
            headers[name] = text
        elif isinstance(headers[name], list):
            headers[name].append(text)
        else:
            headers[name] = [headers[name], text]
    stamp = datetime.fromtimestamp(record.timestamp_ms / 1000, tz=UTC)
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": None if record.key is None else _text(record.key),
        "value": decode_value(record.value),
        "headers": headers,
        "timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


class CatchUp:
    """Knows when a reader has seen every record that existed when it started.

    A partition whose end offset is unknown (an adapter that reports no lag for a
    group without commits) is never caught up here; the idle check ends the read.
    """

    def __init__(
        self, partitions: Iterable[TopicPartition], end_offsets: Mapping[TopicPartition, int]
    ) -> None:
        self._remaining: dict[TopicPartition, int | None] = {
            tp: end_offsets.get(tp) for tp in partitions
        }
        for tp, end in list(self._remaining.items()):
            if end == 0:
                del self._remaining[tp]

    def start_at(self, tp: TopicPartition, position: int) -> None:
        """The reader resumes ``tp`` at ``position``: nothing before it is awaited."""
        self._reached(tp, position)

    def seen(self, record: Record) -> None:
        self._reached(record.topic_partition, record.offset + 1)

    def _reached(self, tp: TopicPartition, position: int) -> None:
        end = self._remaining.get(tp)
        if end is not None and end <= position:
            del self._remaining[tp]

    @property
    def done(self) -> bool:
        return not self._remaining


def _emit(record: Record, pretty: bool) -> None:
    line = orjson.dumps(record_to_json(record)).decode()
    if pretty:
        stdout.print_json(line, indent=None)
    else:
        sys.stdout.write(line + "\n")


async def _consume(
    broker_url: str,
    topic: str,
    group: str | None,
    from_beginning: bool,
    limit: int | None,
    follow: bool,
) -> None:
    # SIGTERM (a script stopping a follower) leaves the group cleanly, as Ctrl-C does.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    async with spate.connect(broker_url) as broker:
        if group is None:
            require(broker, "reader", "read a topic without --group")
        try:
            info = await broker.describe_topic(topic)
        except TopicNotFoundError:
            raise TopicNotFoundError(
                f"topic {topic!r} does not exist; {missing_topic_hint(topic)}"
            ) from None
        read = _read_partitions if group is None else _read_as_group
        await read(broker, info, group or "", from_beginning, limit, follow)


class _Printer:
    """Prints records up to ``limit`` and tracks the catch-up, one batch at a time."""

    def __init__(self, catch_up: CatchUp, limit: int | None) -> None:
        self.catch_up = catch_up
        self.limit = limit
        self.printed = 0
        self.pretty = stdout.is_terminal

    @property
    def wanted(self) -> int:
        return FETCH_MAX if self.limit is None else min(FETCH_MAX, self.limit - self.printed)

    @property
    def full(self) -> bool:
        return self.limit is not None and self.printed >= self.limit

    def print(self, batch: list[Record]) -> dict[TopicPartition, int]:
        """Print what fits under the limit; the last printed offset per partition."""
        through: dict[TopicPartition, int] = {}
        if self.limit is not None:
            batch = batch[: self.limit - self.printed]
        for record in batch:
            _emit(record, self.pretty)
            self.catch_up.seen(record)
            through[record.topic_partition] = record.offset
            self.printed += 1
        sys.stdout.flush()
        return through


async def _read_partitions(
    broker: Broker,
    info: TopicInfo,
    _group: str,
    from_beginning: bool,
    limit: int | None,
    follow: bool,
) -> None:
    """One reader per partition, merged as their batches arrive; nothing is committed.

    Every partition keeps one fetch outstanding, so a busy partition is printed as soon
    as it has records while an idle one waits out its fetch timeout.
    """
    stop_when_caught_up = from_beginning and not follow
    start: ReaderStart = "earliest" if from_beginning else "latest"
    async with contextlib.AsyncExitStack() as stack:
        readers = [
            await stack.enter_async_context(broker.reader(info.name, p, start))
            for p in range(info.partitions)
        ]
        ends = {r.topic_partition: (await r.bounds())[1] for r in readers}
        printer = _Printer(CatchUp(list(ends), ends), limit)
        for r in readers:
            printer.catch_up.start_at(r.topic_partition, r.position)
        idle = dict.fromkeys(range(len(readers)), 0)
        pending: dict[int, asyncio.Task[list[Record]]] = {}
        try:
            while not printer.full and not (stop_when_caught_up and printer.catch_up.done):
                for index, r in enumerate(readers):
                    if index not in pending:
                        pending[index] = asyncio.create_task(r.fetch(FETCH_MAX, FETCH_TIMEOUT_S))
                done, _ = await asyncio.wait(pending.values(), return_when=asyncio.FIRST_COMPLETED)
                batch: list[Record] = []
                for index in sorted(i for i, task in pending.items() if task in done):
                    got = pending.pop(index).result()
                    idle[index] = 0 if got else idle[index] + 1
                    batch.extend(got)
                # Where retention removed records up to an end offset, or transaction
                # markers sit at the end, the end is where every partition is idle.
                if stop_when_caught_up and min(idle.values()) >= IDLE_FETCHES_AT_END:
                    break
                printer.print(batch)
        finally:
            for task in pending.values():
                task.cancel()
            await asyncio.gather(*pending.values(), return_exceptions=True)


async def _read_as_group(
    broker: Broker,
    info: TopicInfo,
    group: str,
    from_beginning: bool,
    limit: int | None,
    follow: bool,
) -> None:
    """A member of ``group`` that commits what it printed and resumes where it stopped."""
    stop_when_caught_up = from_beginning and not follow
    topic = info.name
    lags = await broker.lag(group, [topic]) if broker.capabilities.lag else []
    printer = _Printer(
        CatchUp(
            [TopicPartition(topic, p) for p in range(info.partitions)],
            {TopicPartition(x.topic, x.partition): x.end_offset for x in lags},
        ),
        limit,
    )
    for x in lags:
        if x.committed is not None:
            printer.catch_up.start_at(TopicPartition(x.topic, x.partition), x.committed)
    reset: OffsetReset = "earliest" if from_beginning else "latest"
    idle_fetches = 0
    async with broker.consumer([topic], group, offset_reset=reset) as consumer:
        while not printer.full and not (stop_when_caught_up and printer.catch_up.done):
            batch = await consumer.fetch(printer.wanted, FETCH_TIMEOUT_S)
            # When retention removed records up to an end offset, or the broker
            # reported none, the end is where every partition is owned and idle.
            owns_all = len(consumer.assignment()) == info.partitions
            idle_fetches = idle_fetches + 1 if owns_all and not batch else 0
            if stop_when_caught_up and idle_fetches >= IDLE_FETCHES_AT_END:
                break
            through = printer.print(batch)
            if through:
                await consumer.commit(through)


def consume(
    topic: Annotated[str, typer.Argument(help="Topic to read.")],
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            "-g",
            help="Read as this consumer group and commit what was printed "
            "(default: an anonymous reader that commits nothing).",
        ),
    ] = None,
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning",
            help="Start at the first record (where the group has no committed offset) and "
            "stop at the end unless --follow.",
        ),
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="Stop after this many records.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep waiting for new records.")
    ] = False,
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """Print records as JSON lines: topic, partition, offset, key, value, headers, timestamp."""
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit} must be 1 or more")
    try:
        asyncio.run(_consume(broker, topic, group, from_beginning, limit, follow))
    except asyncio.CancelledError:
        raise typer.Exit(128 + signal.SIGTERM) from None
