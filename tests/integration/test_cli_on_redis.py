"""The CLI speaks only the broker contract, so the same commands work on Redis Streams:
one round trip through every command against a real redis-server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from bench_checks import every_mode_counts_what_it_did
from cli_helpers import ok, one_line_error, records, spate
from dlq_checks import check_replay_after_fix, dlq_round_trip
from spate.testing.redis_server import (
    flush_database,
    server_url_for_tests,
    server_versions_for_tests,
)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    newest = server_versions_for_tests()[0]
    with server_url_for_tests(newest, tmp_path_factory.mktemp("redis")) as url:
        flush_database(url)
        yield url


def test_every_command_on_redis(redis_url: str) -> None:
    ok(spate("topics", "create", "clicks", "--partitions", "2", broker=redis_url))
    assert "clicks" in ok(spate("topics", "list", broker=redis_url))
    assert "end offset" in ok(spate("topics", "describe", "clicks", broker=redis_url))
    lines = "".join(json.dumps({"user": f"u{i}", "n": i}) + "\n" for i in range(4))
    ok(spate("produce", "clicks", "--key-field", "user", broker=redis_url, stdin=lines))

    everything = records(ok(spate("consume", "clicks", "--from-beginning", broker=redis_url)))
    assert sorted(r["value"]["n"] for r in everything) == [0, 1, 2, 3]
    assert {r["key"] for r in everything} == {"u0", "u1", "u2", "u3"}

    first = records(
        ok(spate("consume", "clicks", "-g", "cli", "--from-beginning", "-n", "3", broker=redis_url))
    )
    assert len(first) == 3
    assert "cli" in ok(spate("groups", "list", broker=redis_url))
    lag = ok(spate("groups", "lag", "cli", broker=redis_url))
    assert next(line for line in lag.splitlines() if "total" in line).split()[-2] == "1"

    one_line_error(spate("produce", "missing", "x", broker=redis_url), 1, "spate topics create")
    ok(spate("topics", "delete", "clicks", broker=redis_url))
    assert "clicks" not in ok(spate("topics", "list", broker=redis_url))


def test_bench_every_mode_on_redis(redis_url: str) -> None:
    every_mode_counts_what_it_did(redis_url, "bench", "readers")


def test_dlq_commands_on_redis(redis_url: str) -> None:
    dlq_round_trip(redis_url, f"dl-{uuid.uuid4().hex[:8]}")


def test_replay_after_the_fix_redrives_every_dead_letter_on_redis(redis_url: str) -> None:
    check_replay_after_fix(redis_url)
