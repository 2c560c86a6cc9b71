"""``spate groups list`` and ``spate groups lag [GROUP]``."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

import spate
from spate.brokers.base import PartitionLag, require
from spate.cli.common import BrokerOption, stdout
from spate.config import DEFAULT_BROKER
from spate.errors import ConfigError

app = typer.Typer(help="Inspect consumer groups and their lag.", no_args_is_help=True)


async def _lags(broker_url: str, group: str | None) -> dict[str, list[PartitionLag]]:
    """Per-partition lag of ``group``, or of every known group."""
    async with spate.connect(broker_url) as broker:
        require(broker, "lag", "list groups and their lag")
        known = await broker.groups()
        if group is not None and group not in known:
            listed = ", ".join(known) if known else "none yet"
            raise ConfigError(f"group {group!r} is unknown; known groups: {listed}")
        wanted = [group] if group is not None else known
        return {name: await broker.lag(name) for name in wanted}


def lag_table(group: str, lags: list[PartitionLag]) -> Table:
    """One group's lag as a table, one row per partition, with a total."""
    table = Table("topic", "partition", "committed", "end", "lag", title=f"group {group}")
    for item in sorted(lags, key=lambda x: (x.topic, x.partition)):
        committed = "-" if item.committed is None else str(item.committed)
        table.add_row(
            item.topic, str(item.partition), committed, str(item.end_offset), str(item.lag)
        )
    table.add_section()
    table.add_row("total", "", "", "", str(sum(x.lag for x in lags)))
    return table


@app.command("list")
def list_groups(broker: BrokerOption = DEFAULT_BROKER) -> None:
    """List known consumer groups with the topics they read and their total lag."""
    lags = asyncio.run(_lags(broker, None))
    if not lags:
        stdout.print("no consumer groups yet")
        return
    table = Table("group", "topics", "lag")
    for name, items in lags.items():
        topics = ", ".join(sorted({x.topic for x in items})) or "-"
        table.add_row(name, topics, str(sum(x.lag for x in items)))
    stdout.print(table)


@app.command("lag")
def lag(
    group: Annotated[
        str | None, typer.Argument(help="Group to show (default: every known group).")
    ] = None,
    broker: BrokerOption = DEFAULT_BROKER,
) -> None:
    """Show committed offset, end offset and lag per partition."""
    lags = asyncio.run(_lags(broker, group))
    if not lags:
        stdout.print("no consumer groups yet")
        return
    for name, items in lags.items():
        stdout.print(lag_table(name, items))
