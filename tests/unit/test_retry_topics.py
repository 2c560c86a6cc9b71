"""Retry topics (``Retry(via_topics=[...])``, issue 11) on the embedded broker: a
failing record moves on through ``<topic>.retry.<n>`` without holding its partition,
its attempts travel in headers, and after the last level it is a dead letter."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from retry_topic_checks import check_retry_topics
from spate import App, ConfigError, Retry
from spate.testing import TestApp


def test_a_record_failing_for_3_s_is_retried_via_the_retry_topics_on_memory() -> None:
    check_retry_topics("memory://")


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_the_same_on_the_embedded_broker_on_disk(guarantee: str, tmp_path: Path) -> None:
    check_retry_topics(f"local://{tmp_path / 'broker'}", guarantee)


class Order(msgspec.Struct):
    id: int


def test_a_record_failing_at_every_level_is_a_dead_letter_naming_its_source_and_attempts() -> None:
    app = App("shop", broker="memory://")
    orders = app.topic("orders", partitions=2, value_type=Order)
    totals = app.topic("totals", value_type=int)
    calls: list[int] = []

    @app.handler(
        orders,
        group="billing",
        output=totals,
        dead_letter=True,
        retry=Retry(attempts=2, backoff_s=0.01, via_topics=[0.1, 0.1]),
    )
    def bill(order: Order) -> int:
        calls.append(order.id)
        if order.id == 7:
            raise ValueError("order 7 is cursed")
        return order.id

    with TestApp(app) as t:
        for i in range(10):
            t.send(orders, Order(id=i), key=str(i))
        t.run_until_idle()
        assert sorted(t.outputs(totals)) == [0, 1, 2, 3, 4, 5, 6, 8, 9]
        [letter] = t.records("orders.dlq")
        [first_move] = t.records("orders.retry.1")
    assert calls.count(7) == 6  # 2 calls in place, at the source and at each level
    headers = {name: value.decode() for name, value in letter.headers}
    assert headers["spate-source-topic"] == "orders"
    moved = {name: value.decode() for name, value in first_move.headers}
    assert headers["spate-source-offset"] == moved["spate-source-offset"]
    assert moved["spate-attempts"] == "2"
    assert headers["spate-attempts"] == "6"
    assert headers["spate-processor"] == "bill.retry.2"
    assert headers["spate-error-type"] == "ValueError"
    assert [p.name for p in app.processors] == ["bill", "bill.retry.1", "bill.retry.2"]
    assert [p.group for p in app.processors] == ["billing", "billing.retry.1", "billing.retry.2"]
    assert app.stats["bill.retry.2"].dead_letters == 1
    assert app.stats["bill"].delayed_retries == app.stats["bill.retry.1"].delayed_retries == 1


def test_operators_chained_after_the_stream_run_at_every_level() -> None:
    app = App("shop", broker="memory://")
    orders = app.topic("orders", value_type=Order)
    doubled = app.topic("doubled", value_type=int)
    failed_once: set[int] = set()

    def flaky(order: Order) -> int:
        if order.id not in failed_once:
            failed_once.add(order.id)
            raise TimeoutError("try later")
        return order.id

    stream = app.stream(orders, group="g", retry=Retry(attempts=1, via_topics=[0.05]))
    stream.map(flaky).map(lambda n: n * 2).to(doubled)
    with TestApp(app) as t:
        for i in range(3):
            t.send(orders, Order(id=i))
        t.run_until_idle()
        assert sorted(t.outputs(doubled)) == [0, 2, 4]


@pytest.mark.parametrize(
    ("via", "message"),
    [
        ("1,10", "needs a list of delays"),
        ([1, 0], "delay 0 must be a number of seconds > 0"),
        ([True], "delay True"),
    ],
)
def test_bad_delays_name_the_fix(via: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Retry(via_topics=via)  # type: ignore[arg-type]
