"""The payments App of the dedup tests (issue 11), and the restart check every
broker runs: the same business keys sent twice, with a new worker in between."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from spate import App, Dedup
from spate.testing import TestApp


class Payment(msgspec.Struct):
    id: int
    amount: int


def payments_app(
    broker: str = "memory://",
    key: Callable[[Payment], object] = lambda p: p.id,
    *,
    settings: dict[str, Any] | None = None,
    **dedup: Any,
) -> tuple[App, list[int]]:
    app = App("pay", broker=broker, batch_size=100, **(settings or {}))
    payments = app.topic("payments", partitions=4, value_type=Payment)
    handled: list[int] = []

    @app.handler(payments, group="ledger", dedup=Dedup(key=key, **dedup), dead_letter=True)
    def book(payment: Payment) -> None:
        handled.append(payment.id)

    return app, handled


def send(t: TestApp, ids: range) -> None:
    for i in ids:
        t.send("payments", Payment(id=i, amount=i), key=str(i))  # keyed by the business key


def check_the_same_keys_twice_across_a_restart(broker: str, tmp_path: Path) -> None:
    """1,000 business keys, sent twice, a new worker in between whose local state
    directory is empty: it restores the seen-set from the store's changelog on the
    broker, and handles each key once."""
    handled: list[int] = []
    for run, ids in enumerate((range(1000), range(1000))):
        settings = {"state_dir": str(tmp_path / f"state-{run}")}
        app, handled_now = payments_app(broker, settings=settings, ttl_s=3600)
        with TestApp(app, broker=broker) as t:
            send(t, ids)
            t.run_until_idle()
        handled += handled_now
    assert sorted(handled) == list(range(1000))
    assert app.stats["book"].deduplicated == 1000
