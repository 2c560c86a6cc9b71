"""What a type checker sees of the Stream DSL: checked by mypy in test_typing.py, never run.

A trailing comment ``reveal: X`` after ``reveal_type(...)`` is the type mypy must reveal
(names without their modules); ``error: code`` marks a line mypy must reject with that
error code. Every other line must check cleanly.
"""

from __future__ import annotations

from typing import reveal_type

import msgspec

from spate import App
from spate.serde import StrSerde


class Order(msgspec.Struct):
    user: str
    amount: int


class Invoice(msgspec.Struct):
    order_user: str
    total: int


app = App("shop", broker="memory://")
orders = app.topic("orders", partitions=4, value_type=Order)
invoices = app.topic("invoices", value_type=Invoice)
amounts = app.topic("amounts", value_type=int)
untyped = app.topic("untyped")
lines = app.topic("lines", serde=StrSerde())
reveal_type(orders)  # reveal: Topic[Order]
reveal_type(untyped)  # reveal: Topic[Any]
reveal_type(lines)  # reveal: Topic[str]
reveal_type(app.topic("maybe", value_type=int | None))  # reveal: Topic[Any]

stream = app.stream(orders, group="billing")
reveal_type(stream)  # reveal: Stream[Order]
reveal_type(stream.map(lambda o: o.amount))  # reveal: Stream[int]
reveal_type(stream.filter(lambda o: o.amount > 10))  # reveal: Stream[Order]
reveal_type(stream.flat_map(lambda o: [o.user, o.user]))  # reveal: Stream[str]
reveal_type(stream.key_by(lambda o: o.user).peek(print))  # reveal: Stream[Order]
reveal_type(app.stream([orders, orders], group="both"))  # reveal: Stream[Order]
reveal_type(app.stream([orders, amounts], group="mixed"))  # reveal: Stream[Any]


async def bill(order: Order) -> Invoice:
    return Invoice(order.user, order.amount * 2)


async def split(order: Order) -> list[int]:
    return [order.amount]


def by_user(order: Order) -> str:
    return order.user


reveal_type(app.stream(orders, group="a").map(bill))  # reveal: Stream[Invoice]
reveal_type(app.stream(orders, group="b").flat_map(split))  # reveal: Stream[int]
app.stream(orders, group="c").map(bill).to(invoices)
app.stream(orders, group="d").map(lambda o: o.amount).to(amounts)
app.stream(orders, group="e").route((lambda o: o.amount > 10, orders), default=orders)
app.stream(untyped, group="f").map(lambda v: v["amount"]).to(amounts)

app.stream(orders, group="g").map(lambda o: o.missing)  # error: attr-defined
app.stream(orders, group="h").map(len)  # error: arg-type
app.stream(amounts, group="i").map(by_user)  # error: arg-type
app.stream(orders, group="j").to(invoices)  # error: arg-type
app.stream(orders, group="k").map(bill).to(amounts)  # error: arg-type
app.stream(orders, group="l").filter(lambda o: o.amount.upper())  # error: attr-defined
