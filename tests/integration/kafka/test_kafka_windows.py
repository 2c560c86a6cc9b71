"""Windows on the Kafka protocol: the scenario of :mod:`window_checks` through the
App runtime, on Tansu (at-least-once) and on Apache Kafka (exactly-once: the windows'
outputs, state changelog and offsets in one transaction)."""

from __future__ import annotations

from window_checks import check_windows


def test_windows_on_tansu(tansu_url: str) -> None:
    check_windows(tansu_url, "at-least-once")


def test_windows_on_apache_kafka_exactly_once(kafka_url: str) -> None:
    check_windows(kafka_url, "exactly-once")
