"""The CLI speaks only the broker contract, so the same commands work on NATS
JetStream: one round trip through every command against a real nats-server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from bench_checks import every_mode_counts_what_it_did
from cli_helpers import ok, one_line_error, records, spate
from dlq_checks import check_replay_after_fix, dlq_round_trip
from spate.testing.nats_server import nats_test_url

pytest.importorskip("nats")


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    with nats_test_url() as url:
        yield url


def test_every_command_on_nats(nats_url: str) -> None:
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex[:8]}"
    ok(spate("topics", "create", topic, "--partitions", "2", broker=nats_url))
    assert topic in ok(spate("topics", "list", broker=nats_url))
    assert "end offset" in ok(spate("topics", "describe", topic, broker=nats_url))
    lines = "".join(json.dumps({"user": f"u{i}", "n": i}) + "\n" for i in range(4))
    ok(spate("produce", topic, "--key-field", "user", broker=nats_url, stdin=lines))

    everything = records(ok(spate("consume", topic, "--from-beginning", broker=nats_url)))
    assert sorted(r["value"]["n"] for r in everything) == [0, 1, 2, 3]
    assert {r["key"] for r in everything} == {"u0", "u1", "u2", "u3"}
    assert "spate-cli" not in ok(spate("groups", "list", broker=nats_url))  # read, no group

    first = records(
        ok(spate("consume", topic, "-g", group, "--from-beginning", "-n", "3", broker=nats_url))
    )
    assert len(first) == 3
    assert group in ok(spate("groups", "list", broker=nats_url))
    lag = ok(spate("groups", "lag", group, broker=nats_url))
    assert next(line for line in lag.splitlines() if "total" in line).split()[-2] == "1"

    one_line_error(
        spate("produce", "missing-topic", "x", broker=nats_url), 1, "spate topics create"
    )
    ok(spate("topics", "delete", topic, broker=nats_url))


def test_bench_every_mode_on_nats(nats_url: str) -> None:
    every_mode_counts_what_it_did(
        nats_url, f"bench-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    )


def test_dlq_commands_on_nats(nats_url: str) -> None:
    dlq_round_trip(nats_url, f"dl-{uuid.uuid4().hex[:8]}")


def test_replay_after_the_fix_redrives_every_dead_letter_on_nats(nats_url: str) -> None:
    check_replay_after_fix(nats_url)
