"""The poison-record scenario of issue 11, run the same way on every broker: 1% of the
records are bytes that do not decode, 1% make the handler raise; every good record
must be processed, every bad one must be in the dead-letter topic with the DESIGN §7
headers, and the partitions must keep flowing past them."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from spate import App, Retry, deadletter
from spate.record import Record
from spate.testing.app import TestApp
from spate.topic import Topic

POISON = b"\xffnot json"


class Order(msgspec.Struct):
    id: int


def headers_of(record: Record) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def check_poison_and_failures(broker: str, guarantee: str, count: int = 10_000) -> App:
    """Run the scenario on ``broker`` (fresh topics); returns the App for its stats."""
    source = f"orders-{uuid.uuid4().hex[:8]}"
    app = App("shop", processing_guarantee=guarantee, batch_size=500)
    orders = app.topic(source, 4, value_type=Order)
    totals = app.topic(f"{source}-totals", 2, value_type=int)

    @app.handler(orders, group=f"billing-{source}", output=totals, dead_letter=True)
    def bill(order: Order) -> int:
        if order.id % 100 == 50:
            raise ValueError(f"order {order.id} is cursed")
        return order.id

    raw = Topic.of(source, partitions=4, serde="raw")
    poison = {i for i in range(count) if i % 100 == 7}
    failing = {i for i in range(count) if i % 100 == 50}
    with TestApp(app, broker=broker, timeout_s=120) as t:
        for i in range(count):
            if i in poison:
                t.send(raw, POISON + b"%d" % i, key=f"k{i}")
            else:
                t.send(orders, Order(id=i), key=f"k{i}")
        t.run_until_idle()
        processed = t.outputs(totals)
        letters = t.records(deadletter.dead_letter_topic(source))

    assert sorted(processed) == sorted(set(range(count)) - poison - failing)
    assert len(letters) == len(poison) + len(failing)
    by_key = {int(r.key.decode()[1:]): r for r in letters if r.key is not None}
    assert set(by_key) == poison | failing
    for i, letter in by_key.items():
        headers = headers_of(letter)
        assert tuple(headers) == deadletter.HEADERS
        assert headers["spate-source-topic"] == source
        assert int(headers["spate-source-partition"]) in range(4)
        assert int(headers["spate-source-offset"]) >= 0
        assert headers["spate-processor"] == "bill"
        assert headers["spate-attempts"] == "1"
        assert datetime.fromisoformat(headers["spate-failed-at"]).utcoffset() is not None
        if i in poison:
            assert letter.value == POISON + b"%d" % i
            assert headers["spate-error-type"] == "SerdeError"
        else:
            assert msgspec.json.decode(letter.value, type=Order).id == i
            assert headers["spate-error-type"] == "ValueError"
            assert headers["spate-error-message"] == f"order {i} is cursed"
            assert "is cursed" in headers["spate-error-traceback"]
    stats = app.stats["bill"]
    bad = len(poison) + len(failing)
    assert (stats.dead_letters, stats.errors, stats.retries) == (bad, bad, 0)
    return app


def check_transient_failure(broker: str, guarantee: str = "at-least-once") -> None:
    """A record whose handler fails twice, then succeeds, succeeds on the third call in
    place, with no dead letter (issue 11), on ``broker`` (fresh topics)."""
    source = f"orders-{uuid.uuid4().hex[:8]}"
    app = App("shop", processing_guarantee=guarantee)
    orders = app.topic(source, 2, value_type=Order)
    totals = app.topic(f"{source}-totals", 2, value_type=int)
    calls: dict[int, int] = {}

    @app.handler(
        orders,
        group=f"billing-{source}",
        output=totals,
        dead_letter=True,
        retry=Retry(backoff_s=0.001),
    )
    def bill(order: Order) -> int:
        calls[order.id] = calls.get(order.id, 0) + 1
        if order.id == 3 and calls[order.id] < 3:
            raise ConnectionError("try again")
        return order.id

    with TestApp(app, broker=broker, timeout_s=60) as t:
        for i in range(10):
            t.send(orders, Order(id=i), key="k")
        t.run_until_idle()
        assert sorted(t.outputs(totals)) == list(range(10))
        assert t.records(deadletter.dead_letter_topic(source)) == []
    assert calls[3] == 3
    stats = app.stats["bill"]
    assert (stats.retries, stats.dead_letters, stats.errors) == (2, 0, 0)
