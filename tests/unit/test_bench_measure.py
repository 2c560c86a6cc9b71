"""The measuring parts of ``spate bench``, with no broker and no sleeping: latency
percentiles, the open-loop schedule, interval lines and the summary's two forms."""

from __future__ import annotations

import pytest

from spate.bench.latency import Latencies
from spate.bench.report import IntervalReport, Summary, summary_line
from spate.bench.schedule import Schedule
from spate.errors import ConfigError


def test_percentiles_are_nearest_rank_over_weighted_samples() -> None:
    latencies = Latencies()
    latencies.extend([0.001 * i for i in range(1, 101)])  # 1 ms .. 100 ms
    assert latencies.count == 100
    assert latencies.percentiles() == pytest.approx(
        {50.0: 0.050, 95.0: 0.095, 99.0: 0.099, 99.9: 0.100}
    )
    assert latencies.max_s == pytest.approx(0.1)
    assert latencies.mean_s == pytest.approx(0.0505)


def test_a_batch_counts_once_per_record_it_stands_for() -> None:
    latencies = Latencies()
    latencies.add(0.002, 98)
    latencies.add(0.050, 2)
    latencies.add(0.1, 0)
    assert latencies.count == 100
    assert latencies.percentiles() == {50.0: 0.002, 95.0: 0.002, 99.0: 0.050, 99.9: 0.050}
    assert latencies.mean_s == pytest.approx((0.002 * 98 + 0.1) / 100)


def test_no_samples_give_zeros() -> None:
    latencies = Latencies()
    latencies.extend([])
    assert latencies.percentiles() == dict.fromkeys((50.0, 95.0, 99.0, 99.9), 0.0)
    assert latencies.mean_s == 0.0


def test_open_loop_schedule_is_due_by_the_clock_not_by_what_was_sent() -> None:
    schedule = Schedule(total=1000, rate=500, start_s=10.0)
    assert schedule.due_by(9.0) == 0
    assert schedule.due_by(10.0) == 1
    assert schedule.due_by(11.0) == 501
    assert schedule.due_by(100.0) == 1000
    assert schedule.due_at(500) == pytest.approx(11.0)
    # a stalled sender that sent 10 by t=11 owes 491 at once: no wait
    assert schedule.wait_s(10, 11.0) == 0.0
    assert schedule.wait_s(501, 11.0) == pytest.approx(0.002)
    assert schedule.wait_s(1000, 11.0) == 0.0


def test_unthrottled_schedule_has_everything_due_at_once() -> None:
    schedule = Schedule(total=7, rate=None, start_s=5.0)
    assert schedule.due_by(5.0) == 7
    assert schedule.wait_s(3, 5.0) == 0.0


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="rate"):
        Schedule(total=1, rate=0, start_s=0.0)


def test_interval_line_only_once_the_interval_has_passed() -> None:
    report = IntervalReport("sent", interval_s=5.0, start_s=100.0)
    report.add(1000, 1024 * 1024)
    report.add_latencies(total_s=2.0, count=1000, max_s=0.01)
    assert report.line(104.9) is None
    assert report.line(105.0) == (
        "1,000 records sent, 200.0 records/s (0.20 MB/s), 2.00 ms avg latency, 10.00 ms max latency"
    )
    report.add(10, 10)
    assert report.line(107.0) is None
    assert report.line(110.0) == "10 records sent, 2.0 records/s (0.00 MB/s)"


def test_summary_json_and_the_text_made_from_it() -> None:
    latencies = Latencies()
    latencies.add(0.004, 4)
    summary = Summary(
        mode="produce",
        topic="t",
        records=4,
        bytes=4 * 1024 * 1024,
        elapsed_s=2.0,
        latency=latencies,
        target_rate=2.0,
    )
    data = summary.to_json()
    assert (data["mode"], data["topic"], data["records"], data["bytes"]) == (
        "produce",
        "t",
        4,
        4 * 1024 * 1024,
    )
    assert data["elapsed_s"] == 2.0
    assert data["target_rate"] == 2.0
    assert data["records_per_s"] == 2.0
    assert data["mb_per_s"] == 2.0
    assert data["latency_ms"] == pytest.approx(
        {"avg": 4.0, "max": 4.0, "p50": 4.0, "p95": 4.0, "p99": 4.0, "p99.9": 4.0}
    )
    assert summary_line(data) == (
        "4 records sent in 2.00 s, 2.0 records/s (2.00 MB/s), 4.00 ms avg latency, "
        "4.00 ms max latency, 4.00 ms p50, 4.00 ms p95, 4.00 ms p99, 4.00 ms p99.9"
    )
    consumed = Summary(mode="consume", topic="t", records=0, bytes=0, elapsed_s=0.0)
    assert consumed.to_json()["latency_ms"] is None
    assert summary_line(consumed.to_json()) == (
        "0 records received in 0.00 s, 0.0 records/s (0.00 MB/s)"
    )
