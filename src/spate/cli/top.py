"""``spate top``: a live terminal view of running apps, read from their ``/status``.

Each worker of ``spate run --workers N`` serves its own ``/status`` (on port + i), so
the view takes several URLs and merges them: processors are summed across workers,
and each partition row names the worker that owns it (the partition distribution).
A worker that does not answer (killed, or not started yet) is a row saying so, and
the rest of the view stays; the command gives up only when no URL answers at the
start. Rendering is a pure function of the fetched documents, so it is tested without
a terminal; the command only fetches, renders and repeats.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from spate.cli.common import stdout
from spate.errors import ConnectError

DEFAULT_URL = "http://127.0.0.1:9100"
FETCH_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One worker's ``/status`` document, with the URL it came from."""

    url: str
    status: dict[str, Any]
    error: str | None = None
    """Why the URL did not answer (its worker is down or unreachable; ``status`` is
    then empty), or None."""


def fetch(url: str, timeout_s: float = FETCH_TIMEOUT_S) -> Snapshot:
    """``GET url/status``; anything but a JSON answer is a ConnectError naming the URL."""
    target = url.rstrip("/") + "/status"
    try:
        with urllib.request.urlopen(target, timeout=timeout_s) as answer:
            return Snapshot(url, json.loads(answer.read()))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectError(
            f"cannot read {target}: {reason} (is the app running with --metrics-port?)"
        ) from exc


def fetch_all(urls: Sequence[str]) -> list[Snapshot]:
    """A snapshot per URL; one that does not answer is a snapshot saying why, so a
    dead worker shows as a row of its own while the others are still shown."""
    snapshots = []
    for url in urls:
        try:
            snapshots.append(fetch(url))
        except ConnectError as exc:
            snapshots.append(Snapshot(url, {}, str(exc)))
    return snapshots


def answering(snapshots: Sequence[Snapshot]) -> Sequence[Snapshot]:
    """``snapshots``, unless none answered: then there is nothing to show, and the
    ConnectError says which URLs were asked."""
    if all(snap.error for snap in snapshots):
        raise ConnectError("; ".join(snap.error or "" for snap in snapshots))
    return snapshots


def _rate(errors: int, consumed: int) -> str:
    return f"{errors / consumed:.2%}" if consumed else "-"


def _value(value: object) -> str:
    return "-" if value is None else str(value)


def _workers(snapshots: Sequence[Snapshot]) -> Table:
    table = Table(title="workers", title_justify="left", expand=False)
    for column in ("worker", "app", "ready", "broker", "uptime s"):
        table.add_column(column)
    for snap in snapshots:
        status = snap.status
        if snap.error:
            table.add_row(escape(snap.url), "?", "[red]unreachable[/]", "-", "-")
            continue
        table.add_row(
            escape(snap.url),
            escape(str(status.get("app", "?"))),
            "[green]ready[/]" if status.get("ready") else "[red]not ready[/]",
            "up" if status.get("broker_available") else "[red]down[/]",
            f"{status.get('uptime_s', 0):.0f}",
        )
    return table


def _processors(snapshots: Sequence[Snapshot]) -> Table:
    """One row per processor, its counts and rates summed over the workers."""
    totals: dict[str, dict[str, Any]] = {}
    keys = ("consumed", "produced", "errors", "rebalances", "consumed_per_s", "produced_per_s")
    for snap in snapshots:
        for proc in snap.status.get("processors", []):
            total = totals.setdefault(
                proc["name"], {"group": proc["group"], "running": 0, **dict.fromkeys(keys, 0)}
            )
            total["running"] += bool(proc.get("running"))
            for key in keys:
                total[key] += proc.get(key, 0)
    table = Table(title="processors", title_justify="left")
    columns = ("processor", "group", "running", "in/s", "out/s", "consumed", "produced")
    for column in (*columns, "errors", "error rate", "rebalances"):
        table.add_column(column, justify="left" if column in ("processor", "group") else "right")
    for name, t in totals.items():
        table.add_row(
            escape(name),
            escape(t["group"]),
            f"{t['running']}/{len(snapshots)}",
            f"{t['consumed_per_s']:.1f}",
            f"{t['produced_per_s']:.1f}",
            str(t["consumed"]),
            str(t["produced"]),
            f"[red]{t['errors']}[/]" if t["errors"] else "0",
            _rate(t["errors"], t["consumed"]),
            str(t["rebalances"]),
        )
    return table


def _partitions(snapshots: Sequence[Snapshot]) -> Table:
    """One row per partition a worker owns or has lag for, and the worker it is on."""
    table = Table(title="partitions", title_justify="left")
    for column in ("processor", "partition", "worker", "committed", "end", "lag", "state"):
        table.add_column(
            column, justify="left" if column in ("processor", "worker", "state") else "right"
        )
    rows: list[tuple[str, str, int, str, dict[str, Any]]] = []
    for snap in snapshots:
        for proc in snap.status.get("processors", []):
            for part in proc.get("partitions", []):
                if part.get("assigned"):
                    rows.append((proc["name"], part["topic"], part["partition"], snap.url, part))
    for name, topic, number, url, part in sorted(rows, key=lambda r: r[:3]):
        lag = part.get("lag")
        table.add_row(
            escape(name),
            escape(f"{topic}[{number}]"),
            escape(url),
            _value(part.get("committed")),
            _value(part.get("end_offset")),
            f"[yellow]{lag}[/]" if lag else _value(lag),
            "[yellow]restoring[/]" if part.get("restoring") else "",
        )
    return table


def render(snapshots: Sequence[Snapshot]) -> RenderableType:
    """The whole view of ``snapshots`` (one per worker): workers, processors, partitions."""
    return Group(_workers(snapshots), _processors(snapshots), _partitions(snapshots))


def top(
    urls: Annotated[
        list[str] | None,
        typer.Argument(
            help=f"/status base URL of each worker (default {DEFAULT_URL}); "
            "give one per worker of `spate run --workers N` (port, port+1, ...).",
            show_default=False,
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Print one snapshot and exit (for scripts).")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between refreshes.")
    ] = 2.0,
) -> None:
    """Live view of running apps: throughput, errors, lag per partition, distribution."""
    targets = urls or [DEFAULT_URL]
    first = render(answering(fetch_all(targets)))
    if once:
        stdout.print(first)
        return
    with Live(first, console=stdout, screen=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(render(fetch_all(targets)))
        except KeyboardInterrupt:
            pass
