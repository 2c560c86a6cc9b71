"""``spate bench`` through the real entry point on the embedded brokers (memory://
and local://), and on Tansu for Kafka; NATS and Redis are in test_cli_on_nats.py and
test_cli_on_redis.py beside their servers."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from bench_checks import FIELDS, bench, every_mode_counts_what_it_did
from cli_helpers import one_line_error, spate
from spate.testing.kafka_server import free_port, session_server

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


@pytest.fixture
def broker(tmp_path: Path) -> str:
    return f"local://{tmp_path / 'broker'}"


def test_every_mode_on_local(broker: str) -> None:
    every_mode_counts_what_it_did(broker, "bench", "readers")


def test_every_mode_on_memory() -> None:
    """memory:// lives in one process: the bench creates and fills its own topic, and
    e2e reads in a task instead of a child process."""
    produced = bench("produce", "t", "--create", "-n", "500", "--batch", broker="memory://")
    assert produced["records"] == 500
    consumed = bench("consume", "t", "--create", "--fill", "-n", "700", broker="memory://")
    assert (consumed["records"], consumed["bytes"]) == (700, 700 * 100)
    e2e = bench("e2e", "-n", "300", "--rate", "300", "--partitions", "3", broker="memory://")
    assert e2e["records"] == 300


def test_throughput_holds_the_rate(broker: str) -> None:
    """500 records/s for 3 s: the tool's own elapsed time says the rate was kept
    within 10%, both ways of flushing."""
    ok_topic = spate("topics", "create", "paced", broker=broker)
    assert ok_topic.returncode == 0, ok_topic.stderr
    for extra in ([], ["--batch"]):
        paced = bench(
            "produce", "paced", "-n", "1500", "--throughput", "500", *extra, broker=broker
        )
        assert paced["target_rate"] == 500
        assert 450 <= paced["records_per_s"] <= 550, paced
        assert 2.7 <= paced["elapsed_s"] <= 3.4, paced


def test_missing_topic_unreachable_broker_and_bad_options(broker: str) -> None:
    one_line_error(
        spate("bench", "produce", "nowhere", "-n", "5", broker=broker),
        1,
        "'nowhere' does not exist",
        "spate topics create nowhere",
    )
    one_line_error(
        spate("bench", "consume", "nowhere", "-n", "5", broker=broker),
        1,
        "spate topics create nowhere",
    )
    one_line_error(
        spate(
            "bench", "consume", "empty", "--create", "-n", "5", "--timeout-s", "0.5", broker=broker
        ),
        1,
        "only 0 of 5 records arrived on 'empty'",
    )
    port = free_port()
    one_line_error(
        spate("bench", "e2e", "-n", "5", broker=f"redis://127.0.0.1:{port}"),
        1,
        f"127.0.0.1:{port}",
    )
    one_line_error(spate("bench", "produce", "t", "-n", "0", broker=broker), 2, "--records")
    one_line_error(
        spate("bench", "produce", "t", "--throughput", "0", broker=broker), 2, "--throughput"
    )
    one_line_error(spate("bench", "e2e", "--record-size", "4", broker=broker), 2, "--record-size")
    one_line_error(
        spate("bench", "consume", "t", "--create", "-p", "0", broker=broker), 2, "--partitions"
    )


def test_every_mode_on_kafka_tansu() -> None:
    """Kafka's group protocol through Tansu, which starts in milliseconds; short
    session timeouts because Tansu holds a JoinGroup for half of one."""
    pytest.importorskip("confluent_kafka")
    server = session_server("tansu")
    url = f"{server.url}?session.timeout.ms=6000&heartbeat.interval.ms=500"
    every_mode_counts_what_it_did(url, f"bench-{uuid.uuid4().hex[:8]}", "readers")


def test_the_json_fields_checked_are_the_documented_ones() -> None:
    section = DOCS.read_text().split("## `spate bench`", 1)[1].split("\n### ", 1)[0]
    table = section.split("| field | meaning |", 1)[1].split("\n\n", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    documented = {name for cell in first_cells for name in re.findall(r"`([a-z_]+)`", cell)}
    assert documented == FIELDS
