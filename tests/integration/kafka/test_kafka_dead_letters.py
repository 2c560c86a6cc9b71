"""Dead letters on the Kafka protocol, served by Tansu: the poison-record scenario of
issue 11 (see :mod:`dead_letter_checks`), through the App runtime."""

from __future__ import annotations

from dead_letter_checks import check_poison_and_failures
from spate.testing.kafka_server import ServerProcess


def test_poison_and_failing_records_are_dead_lettered_on_tansu(
    tansu_server: ServerProcess,
) -> None:
    check_poison_and_failures(tansu_server.url, "at-least-once", count=2_000)
