"""Failed records on the real memory:// broker: retries in place, dead letters with
the DESIGN §7 headers, ``on_error`` modes, and the dead letter's place in the batch's
commit (exactly-once: the same transaction as the offsets)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import msgspec
import pytest

import spate
from dead_letter_checks import (
    POISON,
    check_poison_and_failures,
    check_transient_failure,
    headers_of,
)
from spate import App, Retry
from spate.config import Settings
from spate.errors import ConfigError, DeserializationError, ProcessingError
from spate.runtime.worker import Worker
from spate.streams.stream import Stream
from spate.testing.app import TestApp
from spate.topic import Topic


class Order(msgspec.Struct):
    id: int
    amount: int


def shop(guarantee: str = "at-least-once") -> tuple[App, Topic[Order], Topic[int]]:
    app = App("shop", broker="memory://", processing_guarantee=guarantee, batch_size=500)
    return app, app.topic("orders", 4, value_type=Order), app.topic("totals", 2, value_type=int)


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_poison_and_failing_records_go_to_the_dead_letter_topic_and_the_rest_flows(
    guarantee: str,
) -> None:
    check_poison_and_failures(f"memory://{uuid.uuid4().hex}", guarantee)


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_the_same_on_the_embedded_broker_on_disk(guarantee: str, tmp_path: Path) -> None:
    check_poison_and_failures(f"local://{tmp_path}", guarantee, count=2_000)


def test_a_transient_failure_succeeds_on_the_third_attempt_without_a_dead_letter() -> None:
    check_transient_failure("memory://")


def test_exhausted_retries_dead_letter_the_record_with_its_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, orders, totals = shop()

    @app.handler(
        orders,
        group="billing",
        output=totals,
        dead_letter="billing-failures",
        retry=Retry(attempts=4, backoff_s=0.001, retry_on=(ConnectionError,)),
    )
    async def bill(order: Order) -> int:
        if order.id == 1:
            raise ConnectionError("down")
        if order.id == 2:
            raise KeyError("not retried")
        return order.id

    with TestApp(app) as t, caplog.at_level("WARNING", "spate.runtime"):
        for i in range(4):
            t.send(orders, Order(id=i, amount=1), key="k")
        t.run_until_idle()
        letters = t.records("billing-failures")
        assert sorted(t.outputs(totals)) == [0, 3]
    attempts = {headers_of(r)["spate-error-type"]: headers_of(r)["spate-attempts"] for r in letters}
    assert attempts == {"ConnectionError": "4", "KeyError": "1"}
    assert app.stats["bill"].retries == 3
    lines = [r.getMessage() for r in caplog.records if "event=dead_letters" in r.getMessage()]
    assert lines == ["event=dead_letters processor=bill count=2 topic=billing-failures"]


def test_skip_counts_what_it_skipped_and_undecodable_bytes_still_stop() -> None:
    app, orders, totals = shop()

    @app.handler(orders, group="billing", output=totals, on_error="skip")
    def bill(order: Order) -> int:
        return 100 // order.amount

    with TestApp(app) as t:
        for i in range(6):
            t.send(orders, Order(id=i, amount=i % 3), key="k")
        t.run_until_idle()
        assert len(t.outputs(totals)) == 4
        t.send(Topic.of("orders", serde="raw"), POISON, key="k")
        with pytest.raises(DeserializationError, match=r"topic='orders'.*offset=6"):
            t.run_until_idle()
    assert app.stats["bill"].errors == 3


def test_stop_is_the_default_without_a_dead_letter_topic() -> None:
    app, orders, totals = shop()

    @app.handler(orders, group="billing", output=totals, retry=Retry(attempts=2, backoff_s=0))
    def bill(order: Order) -> int:
        raise ValueError("no")

    with TestApp(app) as t:
        t.send(orders, Order(id=1, amount=1), key="k")
        with pytest.raises(ProcessingError, match="stopped: ValueError: no"):
            t.run_until_idle()
    assert app.stats["bill"].retries == 1


def test_on_error_dead_letter_alone_uses_the_default_topic() -> None:
    app, orders, totals = shop()
    app.stream(orders, "g", on_error="dead_letter").map(lambda o: 1 // 0).to(totals)
    assert app.processors[0].dead_letters == {"orders": "orders.dlq"}
    assert [t.name for t in app.processors[0].dead_letter_topics] == ["orders.dlq"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on_error": "skip", "dead_letter": True}, "on_error='skip' contradicts dead_letter"),
        ({"dead_letter": "orders"}, "is one of its own source topics"),
        ({"dead_letter": 3}, "dead_letter=3 must be True"),
        ({"on_error": "ignore"}, "on_error='ignore' is not valid"),
        ({"retry": 3}, r"retry=3 must be a spate.Retry"),
        ({"timeout_s": 0}, "timeout_s=0 must be a number of seconds > 0"),
    ],
)
def test_bad_failure_settings_name_the_fix(kwargs: dict[str, object], message: str) -> None:
    app, orders, _ = shop()
    with pytest.raises(ConfigError, match=message):
        app.stream(orders, "g", **kwargs)  # type: ignore[call-overload]


def test_timeout_on_a_plain_handler_is_refused_at_registration() -> None:
    app, orders, _ = shop()
    with pytest.raises(ConfigError, match="timeout_s=1 needs an 'async def' function"):
        app.handler(orders, "g", timeout_s=1)(lambda order: None)


def test_a_hung_async_handler_times_out_into_the_dead_letter_topic() -> None:
    app, orders, totals = shop()

    @app.handler(
        orders,
        group="billing",
        output=totals,
        dead_letter=True,
        timeout_s=0.05,
        key=lambda total: total,  # plain: no timeout, and not refused
    )
    async def bill(order: Order) -> int:
        if order.id == 1:
            await asyncio.sleep(3600)
        return order.id

    with TestApp(app) as t:
        for i in range(3):
            t.send(orders, Order(id=i, amount=1), key="k")
        t.run_until_idle()
        assert sorted(t.outputs(totals)) == [0, 2]
        [letter] = t.records("orders.dlq")
    assert headers_of(letter)["spate-error-type"] == "TimeoutError"


async def test_under_exactly_once_a_failing_batch_aborts_its_dead_letters_with_its_offsets() -> (
    None
):
    async with spate.connect(f"memory://{uuid.uuid4().hex}") as broker:
        await broker.create_topic("in", 1)
        await broker.create_topic("in.dlq", 1)
        async with broker.producer() as producer:
            for value in (b"1", b"boom", b"3"):
                producer.send("in", value, key=b"k")
            await producer.flush()
        stream = Stream([Topic.of("in", serde="raw")], "g", "p")
        stream.map(lambda v: int(v) if v != b"boom" else 1 // 0)
        settings = Settings(broker="memory://", processing_guarantee="exactly-once")
        worker = Worker("app", stream, broker, settings, dead_letters={"in": "in.dlq"})

        async def fail_commit(producer: object, through: object) -> None:
            raise RuntimeError("commit refused")

        worker.pre_commit.append(fail_commit)
        with pytest.raises(RuntimeError, match="commit refused"):
            await worker.run(asyncio.Event())
        reader = broker.reader("in.dlq")
        await reader.start()
        try:
            assert await reader.read_to_end(1.0) == []
        finally:
            await reader.close()
        [lag] = await broker.lag("g", ["in"])
        assert lag.lag == 3
        # written into the transaction, then aborted: counted only once durable
        assert worker.stats.dead_letters == 0
