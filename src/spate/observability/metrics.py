"""The Prometheus text exposition (format 0.0.4) of an App's processors.

Written here rather than through ``prometheus-client``: every value already lives in
:class:`~spate.runtime.stats.ProcessorStats`, updated once per batch, so a registry
of client-side metric objects would only copy them; rendering the text at scrape
time costs the batch loop nothing and the install no dependency.

Counters and histograms are per processor (labels ``app``, ``processor``): splitting
them by topic would cost work per record. Partition counts are per topic, and lag per
partition (labels ``topic``, ``partition``), where the numbers differ. The count of
partitions restoring state is per processor, present (0) even when none restores, so
a dashboard or an alert finds the series before the first restore.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from spate.runtime.stats import Histogram, ProcessorStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_COUNTERS: tuple[tuple[str, str, Callable[[ProcessorStats], int]], ...] = (
    ("spate_records_consumed_total", "Records fetched and decoded.", lambda s: s.consumed),
    (
        "spate_records_produced_total",
        "Records the pipeline's sinks handed to the producer.",
        lambda s: s.produced,
    ),
    (
        "spate_processing_errors_total",
        "Records that failed: skipped, or the one that stopped the processor.",
        lambda s: s.errors,
    ),
    ("spate_dead_letters_total", "Records sent to a dead-letter topic.", lambda s: s.dead_letters),
    ("spate_retries_total", "Retried attempts of failed records.", lambda s: s.retries),
    (
        "spate_delayed_retries_total",
        "Failed records moved to a retry topic, to be called again once due.",
        lambda s: s.delayed_retries,
    ),
    (
        "spate_dedup_dropped_total",
        "Records dropped because their dedup key was processed before.",
        lambda s: s.deduplicated,
    ),
    ("spate_rebalances_total", "Partition assignment changes seen.", lambda s: s.rebalances),
    ("spate_commits_total", "Offset commits (or transactions) done.", lambda s: s.commits),
    (
        "spate_commit_failures_total",
        "Offset commits (or transactions) the broker refused or that failed.",
        lambda s: s.commit_failures,
    ),
    (
        "spate_partitions_lost_total",
        "Partitions taken from this worker without a revoke (lease expired or taken).",
        lambda s: s.partitions_lost,
    ),
    (
        "spate_late_records_total",
        "Records that came for windows already closed (dropped or dead-lettered).",
        lambda s: s.late_records,
    ),
    (
        "spate_state_restore_records_total",
        "Records replayed to restore state.",
        lambda s: s.state_restored,
    ),
)

_HISTOGRAMS: tuple[tuple[str, str, Callable[[ProcessorStats], Histogram]], ...] = (
    (
        "spate_batch_duration_seconds",
        "Time to decode, process and hand one batch to delivery.",
        lambda s: s.batch_duration,
    ),
    ("spate_batch_size_records", "Records per processed batch.", lambda s: s.batch_size),
    (
        "spate_commit_duration_seconds",
        "Time of one successful offset commit (or transaction commit).",
        lambda s: s.commit_duration,
    ),
    (
        "spate_end_to_end_latency_seconds",
        "Time from a batch's last record's timestamp to the end of its processing.",
        lambda s: s.end_to_end_latency,
    ),
)


def render(app: str, stats: Mapping[str, ProcessorStats]) -> str:
    """Every metric of ``app``'s processors, as a Prometheus scrape body."""
    return "".join(_lines(app, stats))


def _lines(app: str, stats: Mapping[str, ProcessorStats]) -> Iterator[str]:
    processors = [(_labels(app=app, processor=name), s) for name, s in stats.items()]
    for name, help_text, value in _COUNTERS:
        yield from _header(name, help_text, "counter")
        for labels, s in processors:
            yield f"{name}{{{labels}}} {value(s)}\n"
    for name, help_text, histogram in _HISTOGRAMS:
        yield from _header(name, help_text, "histogram")
        for labels, s in processors:
            yield from _histogram(name, labels, histogram(s))
    yield from _header(
        "spate_assigned_partitions", "Partitions this worker holds, per topic.", "gauge"
    )
    for name, s in stats.items():
        per_topic = Counter(tp.topic for tp in s.assigned)
        for topic, count in sorted(per_topic.items()):
            labels = _labels(app=app, processor=name, topic=topic)
            yield f"spate_assigned_partitions{{{labels}}} {count}\n"
    yield from _header(
        "spate_state_restoring_partitions",
        "Assigned partitions whose state is still being restored from its changelog.",
        "gauge",
    )
    for labels, s in processors:
        yield f"spate_state_restoring_partitions{{{labels}}} {len(s.restoring)}\n"
    yield from _header(
        "spate_consumer_lag_records",
        "Records the processor's group has not committed yet, per partition.",
        "gauge",
    )
    for name, s in stats.items():
        for tp, lag in sorted(s.lag.items()):
            labels = _labels(app=app, processor=name, topic=tp.topic, partition=str(tp.partition))
            yield f"spate_consumer_lag_records{{{labels}}} {lag.lag}\n"
    yield from _header(
        "spate_processor_up", "1 while the processor runs and reaches its broker.", "gauge"
    )
    for labels, s in processors:
        yield f"spate_processor_up{{{labels}}} {int(s.running and s.connected)}\n"


def _header(name: str, help_text: str, kind: str) -> Iterator[str]:
    yield f"# HELP {name} {help_text}\n"
    yield f"# TYPE {name} {kind}\n"


def _histogram(name: str, labels: str, histogram: Histogram) -> Iterator[str]:
    cumulative = 0
    for bound, count in zip(histogram.bounds, histogram.counts, strict=False):
        cumulative += count
        yield f'{name}_bucket{{{labels},le="{_number(bound)}"}} {cumulative}\n'
    yield f'{name}_bucket{{{labels},le="+Inf"}} {histogram.count}\n'
    yield f"{name}_sum{{{labels}}} {_number(histogram.total)}\n"
    yield f"{name}_count{{{labels}}} {histogram.count}\n"


def _labels(**labels: str) -> str:
    return ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value))
