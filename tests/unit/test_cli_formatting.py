"""CLI helpers that need no broker: JSON output, key extraction, KEY=VALUE options,
catch-up tracking, exit codes, and the demo view."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from spate.cli.common import EXIT_FAILURE, EXIT_USAGE, exit_code_for, parse_pairs
from spate.cli.consume import CatchUp, decode_value, record_to_json
from spate.cli.produce import KeyExtractor, iter_lines
from spate.demo.analysis import ErrorRateAlert, Stats
from spate.demo.logs import AccessLogGenerator, Incident
from spate.demo.view import RateMeter, Snapshot, render
from spate.errors import ConfigError, PublishError, TopicNotFoundError
from spate.record import Record, TopicPartition


def test_record_to_json_decodes_json_values_and_text() -> None:
    record = Record(
        topic="t",
        partition=2,
        offset=7,
        key=b"user-1",
        value=b'{"amount": 3}',
        headers=(("source", b"cli"), ("tag", b"a"), ("tag", b"b")),
        timestamp_ms=1_700_000_000_123,
    )
    assert record_to_json(record) == {
        "topic": "t",
        "partition": 2,
        "offset": 7,
        "key": "user-1",
        "value": {"amount": 3},
        "headers": {"source": "cli", "tag": ["a", "b"]},
        "timestamp": "2023-11-14T22:13:20.123Z",
    }


def test_decode_value_falls_back_to_text() -> None:
    assert decode_value(b"hello world") == "hello world"
    assert decode_value(b"42") == 42
    assert decode_value(b"\xff\xfe") == "\\xff\\xfe"


def test_key_extractor_reads_nested_fields() -> None:
    assert KeyExtractor("user").key(b'{"user": "ann"}', 1) == b"ann"
    assert KeyExtractor("a.b").key(b'{"a": {"b": 5}}', 1) == b"5"


@pytest.mark.parametrize(
    ("line", "message"),
    [(b"not json", "line 3 is not JSON"), (b'{"other": 1}', "line 3 has no field 'user'")],
)
def test_key_extractor_names_the_bad_line(line: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KeyExtractor("user").key(line, 3)


def test_key_extractor_rejects_an_empty_field() -> None:
    with pytest.raises(ConfigError, match="--key-field"):
        KeyExtractor("a..b")


def test_iter_lines_skips_blank_lines_and_keeps_numbers() -> None:
    stream = io.BytesIO(b"one\r\n\ntwo\nthree")
    assert list(iter_lines(stream)) == [(1, b"one"), (3, b"two"), (4, b"three")]


def test_parse_pairs() -> None:
    assert parse_pairs(["a=1", "b=x=y", "c="], "--config") == [("a", "1"), ("b", "x=y"), ("c", "")]
    with pytest.raises(ConfigError, match="--config 'oops' must look like KEY=VALUE"):
        parse_pairs(["oops"], "--config")


def test_exit_codes() -> None:
    assert exit_code_for(ConfigError("x")) == EXIT_USAGE == 2
    assert exit_code_for(TopicNotFoundError("x")) == EXIT_FAILURE == 1
    assert exit_code_for(PublishError("x")) == 1


def _record(partition: int, offset: int) -> Record:
    return Record(topic="t", partition=partition, offset=offset, key=None, value=b"")


def test_catch_up_waits_for_every_partition_end() -> None:
    t0, t1, t2 = (TopicPartition("t", p) for p in range(3))
    catch_up = CatchUp([t0, t1, t2], {t0: 2, t1: 1, t2: 0})
    catch_up.start_at(t1, 1)  # already committed through the end
    assert not catch_up.done
    catch_up.seen(_record(0, 0))
    assert not catch_up.done
    catch_up.seen(_record(0, 1))
    assert catch_up.done


def test_catch_up_never_guesses_an_unknown_end() -> None:
    t0 = TopicPartition("t", 0)
    catch_up = CatchUp([t0], {})
    catch_up.seen(_record(0, 100))
    assert not catch_up.done


def test_rate_meter() -> None:
    meter = RateMeter(window_s=2.0)
    assert meter.update(0.0, 0) == 0.0
    assert meter.update(1.0, 100) == 100.0
    assert meter.update(2.0, 300) == 150.0
    assert meter.update(4.0, 500) == 100.0


def test_simulated_default_run_raises_an_alert() -> None:
    """The schedule of the default 20 s run (and of a 3 s one) makes the alert fire."""
    for duration_s, rate in ((20.0, 500), (3.0, 500)):
        generator = AccessLogGenerator(Incident.within(duration_s), seed=1)
        stats, detector = Stats(), ErrorRateAlert()
        tick_s = 0.05
        for step in range(int(duration_s / tick_s)):
            elapsed = step * tick_s
            lines = generator.lines(
                int(rate * tick_s), elapsed_s=elapsed, timestamp_ms=int(elapsed * 1000)
            )
            for request in (r for line in lines for r in stats.parse(line)):
                stats.observe(request)
                for alert in detector.observe(request):
                    stats.record_alert(alert)
        assert [a["state"] for a in stats.alerts][:1] == ["firing"], duration_s
        assert stats.malformed > 0


def test_render_shows_counts_and_alerts() -> None:
    stats = Stats()
    for line in AccessLogGenerator(Incident.within(1), seed=5).lines(
        200, elapsed_s=0.0, timestamp_ms=0
    ):
        for request in stats.parse(line):
            stats.observe(request)
    stats.record_alert(
        {
            "alert": "high-5xx-share",
            "state": "firing",
            "share_5xx": 0.31,
            "requests_in_window": 120,
            "at": "2026-11-27T01:02:03.000Z",
        }
    )
    snap = Snapshot(broker="memory://x", elapsed_s=1.0, duration_s=3.0, lag={"demo-parser": 4})
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(render(snap, stats))
    text = console.export_text()
    for expected in ("spate demo", "/api/orders", "p95 ms", "firing", "31.0%", "lag parser"):
        assert expected in text
