"""App and runtime on the real memory:// broker, driven by TestApp."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import spate
from spate.app import App
from spate.brokers.leased import LeasedConsumer
from spate.brokers.local import LocalBroker
from spate.clock import ManualClock
from spate.errors import (
    BrokerError,
    CapabilityError,
    ConfigError,
    DeserializationError,
    ProcessingError,
)
from spate.partitioner import Partitioner
from spate.streams import agg, tumbling
from spate.streams.windows import WindowOperator
from spate.testing.app import TestApp
from spate.topic import Topic


class Order(msgspec.Struct):
    id: int
    user: str
    amount: int


class Invoice(msgspec.Struct):
    order: int
    total: int


def shop(**settings: Any) -> tuple[App, Topic[Any], Topic[Any]]:
    app = App("shop", broker="memory://", **settings)
    orders = app.topic("orders", partitions=4, value_type=Order)
    invoices = app.topic("invoices", partitions=2, value_type=Invoice)
    return app, orders, invoices


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def send_orders(t: TestApp, orders: Topic[Any], n: int) -> None:
    for i in range(n):
        t.send(orders, Order(id=i, user=f"u{i % 7}", amount=i % 20), key=f"u{i % 7}")


def test_handler_publishes_values_keyed_like_their_input() -> None:
    app, orders, invoices = shop()

    @app.handler(orders, group="billing", output=invoices)
    def bill(order: Order) -> Invoice | None:
        return Invoice(order=order.id, total=order.amount * 2) if order.amount >= 10 else None

    with TestApp(app) as t:
        send_orders(t, orders, 100)
        t.run_until_idle()
        records = t.records(invoices)
        assert sorted(v.order for v in t.outputs(invoices)) == [
            i for i in range(100) if i % 20 >= 10
        ]
    by_order = {msgspec.json.decode(r.value, type=Invoice).order: r for r in records}
    assert by_order[10].key == b"u3"
    assert by_order[10].partition == Partitioner().choose("invoices", b"u3", 2)
    stats = app.stats["bill"]
    assert (stats.consumed, stats.produced, stats.errors) == (100, 50, 0)
    assert stats.commits >= 1
    assert not stats.running


async def test_async_handler_list_results_and_key_function() -> None:
    app, orders, _ = shop()
    lines = app.topic("lines", partitions=3)

    @app.handler(orders, group="split", output=lines, key=lambda line: line["user"])
    async def split(order: Order) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return [{"user": f"x{order.id}", "n": n} for n in range(2)]

    async with TestApp(app) as t:
        send_orders(t, orders, 10)
        await t.run_until_idle_async()
        records = await t.records_async(lines)
    assert len(records) == 20
    assert all(
        r.key == b"x" + str(msgspec.json.decode(r.value)["user"][1:]).encode() for r in records
    )


def test_fan_out_three_groups_each_see_every_record() -> None:
    app, orders, _ = shop()
    seen: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    for name in seen:
        app.handler(orders, group=f"group-{name}", name=name)(
            lambda order, name=name: seen[name].append(order.id)
        )
    with TestApp(app) as t:
        send_orders(t, orders, 200)
        t.run_until_idle()
    for ids in seen.values():
        assert sorted(ids) == list(range(200))


def test_stream_operators_route_and_commit_everything() -> None:
    app, orders, _ = shop()
    big = app.topic("big", partitions=2)
    small = app.topic("small")
    peeked: list[int] = []
    (
        app.stream(orders, group="router")
        .filter(lambda o: o.amount > 0)
        .map(lambda o: {"id": o.id, "amount": o.amount, "user": o.user})
        .peek(lambda o: peeked.append(o["id"]))
        .flat_map(lambda o: [o] if o["id"] % 2 == 0 else [o, o])
        .key_by(lambda o: o["amount"])
        .route((lambda o: o["amount"] >= 10, big), default=small)
    )
    with TestApp(app) as t:
        send_orders(t, orders, 40)
        t.run_until_idle()
        big_out, small_out = t.outputs(big), t.outputs(small)
        big_records = t.records(big)
        lag = t._sync(t._started()[0].lag("router", ["orders"]))
    expected = [i for i in range(40) if i % 20 > 0]
    assert sorted(peeked) == expected
    assert len(big_out) + len(small_out) == sum(1 if i % 2 == 0 else 2 for i in expected)
    assert all(o["amount"] >= 10 for o in big_out)
    assert all(o["amount"] < 10 for o in small_out)
    assert all(r.key == str(msgspec.json.decode(r.value)["amount"]).encode() for r in big_records)
    assert all(p.lag == 0 and p.committed == p.end_offset for p in lag)


def test_skip_policy_drops_failing_records_and_counts_them() -> None:
    app, orders, invoices = shop()

    @app.handler(orders, group="billing", output=invoices, on_error="skip")
    def bill(order: Order) -> Invoice:
        return Invoice(order=order.id, total=100 // order.amount)

    with TestApp(app) as t:
        send_orders(t, orders, 40)
        t.run_until_idle()
        assert len(t.outputs(invoices)) == 38
    assert app.stats["bill"].errors == 2


def test_app_run_refuses_several_workers_instead_of_ignoring_them() -> None:
    app, orders, invoices = shop(workers=3)
    app.handler(orders, group="billing", output=invoices)(lambda order: None)
    with pytest.raises(ConfigError, match=r"workers=3 needs `spate run MODULE:APP`"):
        app.run()


def test_stop_policy_stops_the_processor_and_commits_nothing_of_the_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, orders, invoices = shop()

    @app.handler(orders, group="billing", output=invoices)
    def bill(order: Order) -> Invoice:
        return Invoice(order=order.id, total=100 // order.amount)

    with TestApp(app) as t:
        send_orders(t, orders, 5)
        with pytest.raises(ProcessingError, match=r"'bill' stopped: ZeroDivisionError") as info:
            t.run_until_idle()
        lag = t._sync(t._started()[0].lag("billing", ["orders"]))
    assert "topic='orders'" in str(info.value)
    assert sum(p.lag for p in lag) == 5
    assert app.stats["bill"].errors == 1  # the record that stopped it counts
    assert "event=stop app=shop processor=bill consumed=0 produced=0 errors=1 " in caplog.text


def test_a_record_that_does_not_decode_counts_as_the_error_that_stopped_the_processor() -> None:
    app, orders, invoices = shop()

    @app.handler(orders, group="billing", output=invoices)
    def bill(order: Order) -> None:
        return None

    with TestApp(app) as t:
        t.send(orders, "not an order", key="k")
        with pytest.raises(DeserializationError):
            t.run_until_idle()
    assert app.stats["bill"].errors == 1


def test_bytes_that_are_not_json_stop_with_their_location() -> None:
    app, orders, invoices = shop()
    app.handler(orders, group="billing", output=invoices)(lambda o: None)
    raw_orders = Topic.of("orders", partitions=4, serde="raw")
    with TestApp(app) as t:
        t.send(raw_orders, b'{"id": 1, "user": "a", "amount": 1}', partition=2)
        t.send(raw_orders, b"not json {", partition=2)
        with pytest.raises(DeserializationError) as info:
            t.run_until_idle()
    error = info.value
    assert (error.topic, error.partition, error.offset) == ("orders", 2, 1)
    assert "topic='orders' partition=2 offset=1" in str(error)


def test_exactly_once_on_memory_publishes_each_result_once() -> None:
    app, orders, invoices = shop(
        processing_guarantee="exactly-once", batch_size=7, commit_interval_s=0
    )

    @app.handler(orders, group="billing", output=invoices)
    def bill(order: Order) -> Invoice:
        return Invoice(order=order.id, total=order.amount)

    with TestApp(app) as t:
        send_orders(t, orders, 100)
        t.run_until_idle()
        assert sorted(v.order for v in t.outputs(invoices)) == list(range(100))
    assert app.stats["bill"].commits >= 100 // 7


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_under_load_one_commit_covers_the_batches_of_a_commit_interval(guarantee: str) -> None:
    """Full batches commit once per ``commit_interval_s`` (the manual clock stands
    still: once, at the first); the short batch that catches up commits at once."""
    app, orders, invoices = shop(processing_guarantee=guarantee, batch_size=10)

    @app.handler(orders, group="billing", output=invoices)
    def bill(order: Order) -> Invoice:
        return Invoice(order=order.id, total=order.amount)

    with TestApp(app, clock=ManualClock()) as t:
        for partition in range(4):  # 25 a partition: full batches, then a short one
            for i in range(partition * 25, partition * 25 + 25):
                t.send(orders, Order(id=i, user="u", amount=1), partition=partition)
        t.run_until_idle()
        assert sorted(v.order for v in t.outputs(invoices)) == list(range(100))
    stats = app.stats["bill"]
    assert (stats.consumed, stats.batches >= 10) == (100, True)
    assert stats.commits <= 4, stats  # first batch, caught up, idle settle: not per batch


async def test_exactly_once_needs_a_broker_with_transactions() -> None:
    class NoTransactions(LocalBroker):
        capabilities = dataclasses.replace(LocalBroker.capabilities, transactions=False)

    app, orders, _ = shop(processing_guarantee="exactly-once")
    app.handler(orders, group="g")(lambda o: None)
    async with NoTransactions(None, memory_name="no-tx") as broker:
        with pytest.raises(CapabilityError, match=r"memory://no-tx.*'exactly-once'"):
            await app.prepare(broker)


async def test_run_async_drains_and_returns_when_stopped() -> None:
    app = App("drain", broker="memory://drain-test", fetch_timeout_s=0.02)
    source = app.topic("in", partitions=2)
    sink = app.topic("out", partitions=2)
    app.stream(source, group="copy").to(sink)
    async with spate.connect("memory://drain-test") as broker:
        await broker.create_topic("in", 2, exist_ok=True)
        producer = broker.producer()
        async with producer:
            for i in range(500):
                producer.send("in", str(i).encode(), key=str(i).encode())
            await producer.flush()
        stop = asyncio.Event()
        task = asyncio.create_task(app.run_async(stop))
        await eventually(lambda: app.stats["copy"].consumed == 500)
        stop.set()
        await asyncio.wait_for(task, 5)
        lag = await broker.lag("copy", ["in"])
        out = await broker.lag("nobody", ["out"])
    assert sum(p.committed or 0 for p in lag) == 500
    assert sum(p.end_offset for p in out) == 500


async def test_two_workers_in_one_group_split_the_partitions() -> None:
    seen: list[list[int]] = [[], []]
    apps = []
    for ids in seen:
        app, orders, _ = shop()
        app.handler(orders, group="billing", name="bill")(lambda o, ids=ids: ids.append(o.id))
        apps.append(app)
    url = "memory://split?lease_ttl_s=0.6"
    async with TestApp(apps[0], broker=url) as first, TestApp(apps[1], broker=url):
        await eventually(lambda: [len(a.stats["bill"].assigned) for a in apps] == [2, 2])
        send_orders(first, orders, 400)
        await first.run_until_idle_async()
    assert sorted(seen[0] + seen[1]) == list(range(400))
    assert seen[0]
    assert seen[1]


def test_declaration_mistakes_are_config_errors() -> None:
    app, orders, invoices = shop()
    app.handler(orders, group="billing", output=invoices)(lambda o: None)
    with pytest.raises(ConfigError, match="share group 'billing'"):
        app.handler(orders, group="billing", name="other")(lambda o: None)
    with pytest.raises(ConfigError, match="two processors named"):
        app.handler(orders, group="x", name="<lambda>")(lambda o: None)
    with pytest.raises(ConfigError, match="on_error='retry'"):
        app.handler(orders, group="y", on_error="retry")(lambda o: None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"needs group="):
        app.stream(orders)
    with pytest.raises(ConfigError, match="declared twice"):
        app.topic("orders", partitions=3)
    with pytest.raises(ConfigError, match="app name"):
        App("bad name!")
    with pytest.raises(ConfigError, match="no processors"):
        asyncio.run(App("empty", broker="memory://").run_async())
    with pytest.raises(ConfigError, match="no processors"), TestApp(App("empty")):
        pass


def test_blocking_user_code_does_not_stop_lease_heartbeats() -> None:
    app, orders, _ = shop()

    @app.handler(orders, group="slow")
    def slow(order: Order) -> None:
        time.sleep(0.5)  # longer than the lease ttl below, inside one batch

    with TestApp(app, broker="memory://slow?lease_ttl_s=0.3") as t:
        send_orders(t, orders, 2)
        t.run_until_idle()
    stats = app.stats["slow"]
    assert stats.consumed == 2
    assert stats.partitions_lost == 0
    assert stats.commit_failures == 0


async def test_plain_functions_run_on_the_apps_user_thread_where_leases_use_the_loop() -> None:
    """On lease brokers a batch of plain code must not starve the heartbeats on the loop."""
    app = App("threads", broker="memory://")
    seen: list[str] = []

    def note(value: Any) -> Any:
        seen.append(threading.current_thread().name)
        return value

    app.stream(app.topic("in"), group="g").map(note).to(app.topic("out"))
    async with TestApp(app) as test:
        test.send("in", {"n": 1})
        await test.run_until_idle_async()
    assert seen
    assert all(name.startswith("spate-threads") for name in seen)


@pytest.mark.parametrize(
    ("revenue", "where"),
    [(agg.sum("amount"), "loop"), (agg.sum(lambda o: o["amount"]), "user thread")],
    ids=["by-name", "function"],
)
async def test_a_pipeline_without_user_code_runs_on_the_loop(
    monkeypatch: pytest.MonkeyPatch, revenue: Any, where: str
) -> None:
    """Windows with built-in aggregations and a sink are spate's own bounded work:
    handing each batch to the user thread and back would cost more than it runs. A
    function of the user's sends the batch to the thread again."""
    seen: list[str] = []
    run = WindowOperator.run

    def noting(self: WindowOperator, batch: Any) -> Any:
        seen.append(threading.current_thread().name)
        return run(self, batch)

    monkeypatch.setattr(WindowOperator, "run", noting)
    app = App("threads", broker="memory://")
    (
        app.stream(app.topic("in"), group="g")
        .window(tumbling(seconds=10))
        .aggregate(n=agg.count(), revenue=revenue)
        .to(app.topic("out"))
    )
    async with TestApp(app, clock=ManualClock(start_ms=0)) as test:
        test.send("in", {"amount": 2}, key="k", timestamp_ms=1_000)
        test.send("in", {"amount": 3}, key="k", timestamp_ms=11_000)
        await test.run_until_idle_async()
        outputs = await test.outputs_async("out")
    assert [(o["n"], o["revenue"]) for o in outputs] == [(1, 2)]
    assert seen
    on_loop = {name == threading.main_thread().name for name in seen}
    assert on_loop == {where == "loop"}


def test_a_failure_to_close_does_not_hide_the_error_that_stopped_the_processor(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app, orders, invoices = shop()

    @app.handler(orders, group="billing", output=invoices)
    def bill(order: Order) -> Invoice:
        return Invoice(order=order.id, total=100 // order.amount)

    close = LeasedConsumer.close

    async def close_then_fail(self: LeasedConsumer) -> None:
        await close(self)
        raise BrokerError("the connection went away while leaving")

    monkeypatch.setattr(LeasedConsumer, "close", close_then_fail)
    with TestApp(app) as t:
        send_orders(t, orders, 5)
        with pytest.raises(ProcessingError, match=r"'bill' stopped: ZeroDivisionError"):
            t.run_until_idle()
    assert "event=close_failed app=shop processor=bill error=BrokerError" in caplog.text


def test_kafka_config_is_a_deprecated_spelling_of_broker_options() -> None:
    with pytest.warns(DeprecationWarning, match=r"broker_options=\{'kafka_config'") as caught:
        app = App("shop", broker="memory://", kafka_config={"linger.ms": 20})
    assert caught[0].filename == __file__, "the warning points at the caller's line"
    assert app.broker_options == {"kafka_config": {"linger.ms": 20}}
    with (
        pytest.raises(ConfigError, match="kafka_config twice"),
        pytest.warns(DeprecationWarning, match="deprecated"),
    ):
        App(
            "shop",
            broker="memory://",
            kafka_config={"linger.ms": 20},
            broker_options={"kafka_config": {"acks": "all"}},
        )
