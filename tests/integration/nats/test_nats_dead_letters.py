"""Dead letters on NATS JetStream: the poison-record scenario of issue 11 (see
:mod:`dead_letter_checks`), through the App runtime on a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from dead_letter_checks import check_poison_and_failures, check_transient_failure
from dead_letter_kills import kill_during_retry_topics
from dedup_checks import check_the_same_keys_twice_across_a_restart
from retry_topic_checks import check_retry_topics


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_poison_and_failing_records_are_dead_lettered_and_the_rest_flows(
    nats_url: str, guarantee: str
) -> None:
    check_poison_and_failures(nats_url, guarantee)


def test_a_record_failing_for_3_s_is_retried_via_the_retry_topics(nats_url: str) -> None:
    check_retry_topics(nats_url)


def test_a_transient_failure_succeeds_on_the_third_attempt_without_a_dead_letter(
    nats_url: str,
) -> None:
    check_transient_failure(nats_url)


def test_the_same_keys_twice_across_a_restart_are_processed_once(
    nats_url: str, tmp_path: Path
) -> None:
    check_the_same_keys_twice_across_a_restart(nats_url, tmp_path)


@pytest.mark.slow
def test_kill_9_during_retries_neither_loses_nor_duplicates_a_dead_letter(
    tmp_path: Path, nats_url: str
) -> None:
    """Effectively-once: the dead letters and retry moves carry ids the broker drops a
    replay's copies by, as outputs do."""
    kill_during_retry_topics(tmp_path, f"{nats_url}?lease_ttl_s=1.0")
