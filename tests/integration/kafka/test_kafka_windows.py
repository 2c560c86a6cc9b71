"""Windows on the Kafka protocol, served by Tansu: the scenario of
:mod:`window_checks` through the App runtime, at-least-once.

Not on Apache Kafka (yet): there TestApp's lag polls for a new group on a freshly
started broker crashed the process in librdkafka's admin client (a segmentation fault
in ``rd_kafka_handle_OffsetFetch`` answering ListConsumerGroupOffsets with
NOT_COORDINATOR, librdkafka issue 5040) three times in three cold starts; on Tansu
the scenario passed on every cold start."""

from __future__ import annotations

from window_checks import check_windows


def test_windows_on_tansu(tansu_url: str) -> None:
    check_windows(tansu_url, "at-least-once")
