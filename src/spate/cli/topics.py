"""``spate topics list|create|describe|delete``."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

import spate
from spate.brokers.base import TopicInfo, require
from spate.cli.common import BrokerOption, parse_pairs, stdout
from spate.config import DEFAULT_BROKER
from spate.errors import ConfigError
from spate.topic import validate_topic_name

app = typer.Typer(help="List, create, describe and delete topics.", no_args_is_help=True)


def _config_text(info: TopicInfo) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(info.config.items())) or "-"


@app.command("list")
def list_topics(broker: BrokerOption = DEFAULT_BROKER) -> None:
    """List every topic with its partition count and config."""

    async def body() -> list[TopicInfo]:
        async with spate.connect(broker) as b:
            require(b, "admin", "list topics")
            return await b.list_topics()

    topics = asyncio.run(body())
    if not topics:
        stdout.print("no topics; create one with: spate topics create NAME --partitions N")
        return
    table = Table("topic", "partitions", "config")
    for info in topics:
        table.add_row(info.name, str(info.partitions), _config_text(info))
    stdout.print(table)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Topic name.")],
    partitions: Annotated[
        int, typer.Option("--partitions", "-p", help="Number of partitions (>= 1).")
    ] = 1,
    config: Annotated[
        list[str] | None,
        typer.Option("--config", "-c", help="Broker topic config KEY=VALUE (repeatable)."),
    ] = None,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="Succeed if the topic exists already.")
    ] = False,
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """Create a topic."""
    validate_topic_name(name)
    if partitions < 1:
        raise ConfigError(f"--partitions {partitions} must be 1 or more")
    settings = dict(parse_pairs(config or [], "--config"))

    async def body() -> TopicInfo:
        async with spate.connect(broker) as b:
            require(b, "admin", "create topics")
            return await b.create_topic(name, partitions, settings, exist_ok=exist_ok)

    info = asyncio.run(body())
    stdout.print(
        f"topic {info.name!r}: {info.partitions} partition(s), config {_config_text(info)}"
    )


@app.command("describe")
def describe(
    name: Annotated[str, typer.Argument(help="Topic name.")],
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """Show a topic's config and the end offset of each partition."""

    async def body() -> tuple[TopicInfo, list[int]]:
        async with spate.connect(broker) as b:
            require(b, "admin", "describe topics")
            info = await b.describe_topic(name)
            if not b.capabilities.reader:
                return info, []
            ends = []
            for partition in range(info.partitions):
                async with b.reader(name, partition) as reader:
                    ends.append((await reader.bounds())[1])
            return info, ends

    info, ends = asyncio.run(body())
    stdout.print(f"topic {info.name}: {info.partitions} partition(s), config {_config_text(info)}")
    if ends:
        table = Table("partition", "end offset")
        for partition, end in enumerate(ends):
            table.add_row(str(partition), str(end))
        stdout.print(table)


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Topic name.")],
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """Delete a topic and all its records."""

    async def body() -> None:
        async with spate.connect(broker) as b:
            require(b, "admin", "delete topics")
            await b.delete_topic(name)

    asyncio.run(body())
    stdout.print(f"deleted topic {name!r}")
