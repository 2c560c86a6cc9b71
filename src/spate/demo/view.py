"""The demo's rich view: the same renderable serves the live screen and the summary."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from spate.demo.analysis import Stats

ALERTS_SHOWN = 6


class RateMeter:
    """Events per second over the last ``window_s``, from (time, running total) samples."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, now_s: float, total: int) -> float:
        self._samples.append((now_s, total))
        while len(self._samples) > 2 and now_s - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        first_s, first_total = self._samples[0]
        span = now_s - first_s
        return (total - first_total) / span if span > 0 else 0.0


@dataclass
class Snapshot:
    """What the view shows besides the statistics themselves."""

    broker: str
    elapsed_s: float
    duration_s: float
    produced: int = 0
    input_rate: float = 0.0
    processed_rate: float = 0.0
    lag: dict[str, int] = field(default_factory=dict)
    done: bool = False


def _pipeline_table(snap: Snapshot, stats: Stats) -> Table:
    table = Table("pipeline", "", title="throughput", title_justify="left")
    table.add_row("produced", f"{snap.produced:,}")
    table.add_row("input rate", f"{snap.input_rate:,.0f}/s")
    table.add_row("parsed", f"{stats.lines:,}")
    table.add_row("parse rate", f"{snap.processed_rate:,.0f}/s")
    table.add_row("malformed", f"{stats.malformed:,} dropped")
    table.add_row("requests", f"{stats.requests:,}")
    for group, lag in sorted(snap.lag.items()):
        table.add_row(f"lag {group.removeprefix('demo-')}", f"{lag:,}")
    return table


def _status_table(stats: Stats) -> Table:
    table = Table("status", "requests", "share", title="status codes", title_justify="left")
    for status, count in sorted(stats.by_status.items()):
        share = count / stats.requests if stats.requests else 0.0
        style = "red" if status >= 500 else "yellow" if status >= 400 else ""
        table.add_row(Text(str(status), style=style), f"{count:,}", f"{share:.1%}")
    return table


def _path_table(stats: Stats) -> Table:
    table = Table("path", "requests", "avg ms", "p95 ms", title="paths", title_justify="left")
    ranked = sorted(stats.by_path.items(), key=lambda item: -item[1].count)
    for path, path_stats in ranked:
        table.add_row(
            path, f"{path_stats.count:,}", f"{path_stats.avg_ms:.1f}", f"{path_stats.p95_ms:.1f}"
        )
    return table


def _alerts_table(stats: Stats) -> RenderableType:
    if not stats.alerts:
        return Text("alerts: none so far", style="green")
    table = Table("at", "alert", "state", "5xx share", "requests", title="alerts (demo-alerts)")
    table.title_justify = "left"
    for alert in stats.alerts[-ALERTS_SHOWN:]:
        style = "bold red" if alert["state"] == "firing" else "green"
        table.add_row(
            str(alert["at"]),
            str(alert["alert"]),
            Text(str(alert["state"]), style=style),
            f"{alert['share_5xx']:.1%}",
            str(alert["requests_in_window"]),
        )
    return table


def render(snap: Snapshot, stats: Stats) -> RenderableType:
    """The whole view for one moment of the run."""
    state = "finished" if snap.done else "running"
    header = Text.assemble(
        ("spate demo ", "bold"),
        f"{state}: {min(snap.elapsed_s, snap.duration_s):.1f} s of {snap.duration_s:g} s "
        f"on {snap.broker}",
    )
    tables = [_pipeline_table(snap, stats), _status_table(stats), _path_table(stats)]
    return Group(header, Columns(tables, padding=(0, 2)), _alerts_table(stats))
