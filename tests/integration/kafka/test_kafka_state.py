"""Stores on Apache Kafka: per-key running sums and tumbling-window counts through
three SIGKILLs, exactly-once; a commit that fails after the changelog was written
leaks nothing into the restore, under either guarantee.

The changelog records go into each batch's transaction with its outputs and offsets;
a restore reads the changelog ``read_committed``, so an aborted batch (a killed
worker's open transaction) leaves nothing in a restored store, and it reads until that
transaction has ended, so the batches committed after it are not left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from failed_commit_checks import SumsNames, check_a_failed_commit_leaks_nothing_into_the_restore
from spate.testing.kafka_server import ServerProcess
from state_checks import recovers_through_kills, rescales_three_one_two, state_workers

FAST_TAKEOVER = (
    "session.timeout.ms=2000&heartbeat.interval.ms=300&max.poll.interval.ms=10000"
    "&transaction.timeout.ms=6000"
)


@pytest.mark.slow
def test_running_sums_are_exact_after_three_sigkills(
    tmp_path: Path, kafka_server: ServerProcess
) -> None:
    # With the tumbling-window processor: a worker killed inside one of its
    # transactions leaves it open until transaction.timeout.ms, and the stores restored
    # meanwhile must still see every flush committed after it (Reader.settled_end).
    workers = state_workers(
        tmp_path, f"{kafka_server.url}?{FAST_TAKEOVER}", app="kafkastate", windows=True
    )
    recovers_through_kills(workers, 3000, exactly_once=True, timeout_s=120)


@pytest.mark.slow
def test_rescaling_three_then_one_then_two_workers_keeps_the_per_key_sums_exactly_once(
    tmp_path: Path, kafka_server: ServerProcess
) -> None:
    url = f"{kafka_server.url}?{FAST_TAKEOVER}"
    workers = state_workers(tmp_path, url, app="kafkarescale", windows=False)
    rescales_three_one_two(workers, 1800, exactly_once=True, timeout_s=120, every_s=0.5)


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_a_commit_failing_after_the_changelog_was_written_leaks_nothing_into_the_restore(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kafka_url: str, guarantee: str
) -> None:
    # Exactly-once: the failed batch's changelog records are in its aborted transaction,
    # in the log (read_uncommitted finds them) but never read back by the restore.
    # At-least-once: they are committed records, and the restore skips them by their
    # source offsets.
    uncommitted = f"{kafka_url}?isolation.level=read_uncommitted"
    check_a_failed_commit_leaks_nothing_into_the_restore(
        kafka_url,
        tmp_path / "state",
        caplog,
        names=SumsNames.fresh(),
        guarantee=guarantee,
        uncommitted_url=uncommitted if guarantee == "exactly-once" else None,
        timeout_s=60,
    )
