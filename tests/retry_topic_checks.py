"""The retry-topic scenario of issue 11, run the same way on every broker: a record
that fails for 3 s is retried through the retry topics and succeeds, while the records
after it on the same partition are not held up."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import msgspec

from spate import App, Retry
from spate.runtime.retrytopics import HEADER_NOT_BEFORE, retry_topic
from spate.testing.app import TestApp

FAIL_FOR_S = 3.0
LATER = 200


class Order(msgspec.Struct):
    id: int


def check_retry_topics(broker: str, guarantee: str = "at-least-once") -> App:
    """Run the scenario on ``broker`` (fresh topics); returns the App for its stats."""
    source = f"orders-{uuid.uuid4().hex[:8]}"
    app = App("shop", processing_guarantee=guarantee, batch_size=50)
    orders = app.topic(source, 2, value_type=Order)
    totals = app.topic(f"{source}-totals", 2, value_type=int)
    calls: dict[int, list[float]] = defaultdict(list)

    @app.handler(
        orders,
        group=f"billing-{source}",
        output=totals,
        dead_letter=True,
        retry=Retry(attempts=2, backoff_s=0.01, via_topics=[2, 2, 2]),
    )
    def bill(order: Order) -> int:
        now = time.monotonic()
        calls[order.id].append(now)
        if order.id == 0 and now - calls[0][0] < FAIL_FOR_S:
            raise ConnectionError("payment service unavailable")
        return order.id

    with TestApp(app, broker=broker, timeout_s=90) as t:
        for i in range(LATER + 1):
            t.send(orders, Order(id=i), key="one-customer")  # all on one partition
        t.run_until_idle()
        processed = t.outputs(totals)
        letters = t.records(f"{source}.dlq")
        [moved] = t.records(retry_topic(source, 1))
        partition = moved.partition

    assert sorted(processed) == list(range(LATER + 1))
    assert letters == []
    succeeded_at = calls[0][-1]
    assert succeeded_at - calls[0][0] >= FAIL_FOR_S
    # The partition flowed on: every later record was handled before record 0 succeeded.
    assert all(len(calls[i]) == 1 and calls[i][0] < succeeded_at for i in range(1, LATER + 1))
    headers = {name: value.decode() for name, value in moved.headers}
    assert headers["spate-source-topic"] == source
    assert (headers["spate-source-partition"], headers["spate-source-offset"]) == (
        str(partition),
        "0",
    )
    assert headers["spate-attempts"] == "2"  # the calls in place, carried in the record
    assert headers["spate-error-type"] == "ConnectionError"
    assert int(headers[HEADER_NOT_BEFORE]) > 0
    stats = app.stats
    assert stats["bill"].delayed_retries == 1
    assert stats["bill"].errors == stats["bill"].dead_letters == 0
    assert sum(stats[f"bill.retry.{n}"].delayed_retries for n in (1, 2, 3)) >= 1
    return app
