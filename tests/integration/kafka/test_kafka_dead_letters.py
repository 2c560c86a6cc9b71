"""Issue 11 on the Kafka protocol, through the App runtime, on Tansu and on Apache
Kafka: poison records and failures dead-lettered, retry topics, replay after a fix,
a transient failure, and dedup across a restart (see :mod:`dead_letter_checks`,
:mod:`retry_topic_checks`, :mod:`dlq_checks`, :mod:`dedup_checks`)."""

from __future__ import annotations

import uuid
from pathlib import Path

from dead_letter_checks import check_poison_and_failures, check_transient_failure
from dedup_checks import check_the_same_keys_twice_across_a_restart
from dlq_checks import check_replay_after_fix, dlq_round_trip
from retry_topic_checks import check_retry_topics
from spate.testing.kafka_server import ServerProcess


def test_poison_and_failing_records_are_dead_lettered_on_tansu(
    tansu_url: str,
) -> None:
    check_poison_and_failures(tansu_url, "at-least-once", count=2_000)


def test_a_record_failing_for_3_s_is_retried_via_the_retry_topics_on_tansu(
    tansu_url: str,
) -> None:
    check_retry_topics(tansu_url)


def test_a_record_failing_for_3_s_is_retried_via_the_retry_topics_on_apache_kafka(
    kafka_server: ServerProcess,
) -> None:
    """At-least-once: under exactly-once the moves are in their batches' transactions,
    and each retry topic's group then commits up to the last record, short of the
    transaction's marker after it, so its lag stays 1 and TestApp never sees it idle
    (the Kafka adapter's commit, not the retry topics: see the SIGKILL test for
    exactly-once on Kafka)."""
    check_retry_topics(kafka_server.url)


def test_replay_after_the_fix_redrives_every_dead_letter_on_tansu(
    tansu_url: str,
) -> None:
    check_replay_after_fix(tansu_url)


def test_poison_and_failing_records_are_dead_lettered_on_apache_kafka_exactly_once(
    kafka_server: ServerProcess,
) -> None:
    """The reference run: 10,000 records on Apache Kafka, dead letters in the batches'
    transactions."""
    check_poison_and_failures(kafka_server.url, "exactly-once")


def test_a_transient_failure_succeeds_on_the_third_attempt_on_tansu(
    tansu_url: str,
) -> None:
    check_transient_failure(tansu_url)


def test_a_transient_failure_succeeds_on_the_third_attempt_on_apache_kafka(
    kafka_server: ServerProcess,
) -> None:
    check_transient_failure(kafka_server.url, "exactly-once")


def test_the_same_keys_twice_across_a_restart_on_apache_kafka(
    kafka_url: str, tmp_path: Path
) -> None:
    check_the_same_keys_twice_across_a_restart(kafka_url, tmp_path)


def test_the_same_keys_twice_across_a_restart_on_tansu(tansu_url: str, tmp_path: Path) -> None:
    check_the_same_keys_twice_across_a_restart(tansu_url, tmp_path)


def test_replay_after_the_fix_redrives_every_dead_letter_on_apache_kafka(kafka_url: str) -> None:
    check_replay_after_fix(kafka_url)


def test_dlq_commands_on_apache_kafka(kafka_url: str) -> None:
    """list, show, replay and purge (DeleteRecords, which Tansu lacks) through the CLI."""
    dlq_round_trip(kafka_url, f"dl-{uuid.uuid4().hex[:8]}")
