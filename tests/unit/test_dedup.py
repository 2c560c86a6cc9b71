"""Idempotent consumers (issue 11): ``Dedup`` on a handler and ``Stream.dedup`` drop a
record whose business key was processed before on its partition, count what they
dropped, and keep the seen keys in the partition's store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dedup_checks import Payment, check_the_same_keys_twice_across_a_restart, payments_app, send
from spate import App, ConfigError, Dedup
from spate.clock import ManualClock
from spate.observability.metrics import render
from spate.testing import TestApp


def test_a_handler_with_dedup_handles_each_key_once_and_counts_the_rest() -> None:
    app, handled = payments_app()
    with TestApp(app) as t:
        send(t, range(300))
        t.run_until_idle()
        send(t, range(100, 400))  # 200 seen before, in other batches
        send(t, range(390, 400))  # 10 more, maybe in the same batch as their first
        t.run_until_idle()
    assert sorted(handled) == list(range(400))
    stats = app.stats["book"]
    assert stats.deduplicated == 210
    assert (stats.errors, stats.dead_letters) == (0, 0)
    assert 'spate_dedup_dropped_total{app="pay",processor="book"} 210' in render("pay", app.stats)


def test_the_stream_operator_drops_duplicates_before_later_stages() -> None:
    app = App("pay", broker="memory://")
    payments = app.topic("payments", partitions=2, value_type=Payment)
    booked = app.topic("booked", value_type=int)
    (
        app.stream(payments, group="ledger")
        .dedup(key=lambda p: (p.id, "eur"), ttl_s=3600)
        .map(lambda p: p.amount)
        .to(booked)
    )
    with TestApp(app) as t:
        for i in [1, 2, 1, 3, 2, 1]:
            t.send(payments, Payment(id=i, amount=10 * i), key=str(i))
        t.run_until_idle()
        assert sorted(t.outputs(booked)) == [10, 20, 30]
    assert app.stats["ledger"].deduplicated == 3


def test_a_key_that_is_no_store_key_fails_that_record_only() -> None:
    app, handled = payments_app(key=lambda p: p.id if p.id else [p.id])
    with TestApp(app) as t:
        send(t, range(2))
        send(t, range(1, 2))
        t.run_until_idle()
        [letter] = t.records("payments.dlq")
    assert handled == [1]
    assert (
        b"must return a str, bytes, int or a tuple" in dict(letter.headers)["spate-error-message"]
    )


def test_a_record_failing_after_the_dedup_step_is_forgotten_so_its_replay_runs() -> None:
    """A dead letter replayed after the fix (or a record back from a retry topic) has
    the key of a record that was never processed: it must not count as a duplicate."""
    app = App("pay", broker="memory://")
    payments = app.topic("payments", partitions=2, value_type=Payment)
    booked = app.topic("booked", value_type=int)
    fixed = False

    def book(payment: Payment) -> int:
        if payment.id == 2 and not fixed:
            raise ValueError("no ledger for this currency")
        return payment.id

    (
        app.stream(payments, group="ledger", dead_letter=True)
        .dedup(key=lambda p: p.id)
        .map(book)
        .to(booked)
    )
    with TestApp(app) as t:
        for i in (1, 2, 3):
            t.send(payments, Payment(id=i, amount=1), key=str(i))
        t.run_until_idle()
        assert len(t.records("payments.dlq")) == 1
        fixed = True
        for i in (1, 2):  # 1 again is a duplicate; 2 is the replayed dead letter
            t.send(payments, Payment(id=i, amount=1), key=str(i))
        t.run_until_idle()
        assert sorted(t.outputs(booked)) == [1, 2, 3]
    assert app.stats["ledger"].deduplicated == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Dedup(key="id"),  # type: ignore[arg-type]
            "needs a function of the value",
        ),
        (lambda: Dedup(key=lambda v: v, ttl_s=0), "ttl_s=0"),
        (lambda: Dedup(key=lambda v: v, ttl_s=True), "ttl_s=True"),
    ],
)
def test_bad_dedup_settings_name_the_fix(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_an_async_key_and_a_non_dedup_value_are_refused() -> None:
    app = App("pay", broker="memory://")
    payments = app.topic("payments", value_type=Payment)

    async def key(p: Payment) -> int:
        return p.id

    with pytest.raises(ConfigError, match="must be a plain function"):
        app.stream(payments, group="a").dedup(key=key)
    with pytest.raises(ConfigError, match=r"needs a spate\.Dedup"):
        app.handler(payments, group="b", dedup={"key": "id"})(lambda p: None)  # type: ignore[arg-type]


def test_each_dedup_stage_declares_a_store_of_its_own() -> None:
    app = App("pay", broker="memory://")
    payments = app.topic("payments", value_type=Payment)
    stream = app.stream(payments, group="a").dedup(key=lambda p: p.id).dedup(key=lambda p: p.amount)
    assert stream.compile(lambda record, exc: None).stores == ("dedup", "dedup-2")


def test_the_same_keys_twice_across_a_restart_are_processed_once(tmp_path: Path) -> None:
    """Issue 11 on local:// (the other brokers run the same check in tests/integration)."""
    check_the_same_keys_twice_across_a_restart(f"local://{tmp_path / 'broker'}", tmp_path)


def test_a_key_is_processed_again_once_its_ttl_has_passed() -> None:
    """The seen-set expires by TTL on the worker's clock (a duplicate seen meanwhile
    does not prolong it), so it does not grow for ever."""
    app, handled = payments_app(ttl_s=60)
    with TestApp(app, clock=ManualClock(start_ms=1_700_000_000_000)) as t:
        send(t, range(10))
        t.run_until_idle()
        t.advance(30)
        send(t, range(5))  # 30 s later: still remembered, dropped
        t.run_until_idle()
        t.advance(31)
        send(t, range(5))  # 61 s after they were first processed: processed again
        t.run_until_idle()
    assert sorted(handled) == sorted([*range(10), *range(5)])
    assert app.stats["book"].deduplicated == 5
