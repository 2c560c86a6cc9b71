"""``spate dlq`` end to end through the real entry point on a ``local://`` broker, and
the mistakes it must name in one line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import spate
from cli_helpers import ok, one_line_error
from cli_helpers import spate as spate_cli
from dlq_checks import dlq_round_trip


@pytest.fixture
def broker(tmp_path: Path) -> str:
    return f"local://{tmp_path / 'broker'}"


def test_dlq_round_trip_on_local(broker: str) -> None:
    dlq_round_trip(broker, "orders")


def test_replay_to_another_topic_and_missing_target(broker: str) -> None:
    dlq_round_trip(broker, "payments")
    one_line_error(
        spate_cli("dlq", "replay", "payments.dlq", "--to", "nowhere", broker=broker),
        1,
        "'nowhere' does not exist",
    )
    ok(spate_cli("topics", "create", "review", broker=broker))
    ok(
        spate_cli(
            "dlq", "replay", "payments.dlq", "--to", "review", "--where", "KeyError", broker=broker
        )
    )
    assert (
        ok(spate_cli("consume", "review", "--from-beginning", broker=broker)).count(
            "payments.dlq/0/"
        )
        == 2
    )


def test_a_record_without_the_headers_is_named(broker: str) -> None:
    async def plain() -> None:
        async with spate.connect(broker) as b:
            await b.create_topic("junk.dlq")
            async with b.producer() as producer:
                producer.send("junk.dlq", b"x")
                await producer.flush()

    asyncio.run(plain())
    one_line_error(
        spate_cli("dlq", "list", "junk.dlq", broker=broker),
        2,
        "record junk.dlq[0]@0 is not a dead letter",
        "spate-error-type",
    )
    one_line_error(
        spate_cli("dlq", "show", "junk.dlq", "5", broker=broker), 2, "no record at offset 5"
    )


def test_bad_arguments_are_named(broker: str) -> None:
    one_line_error(
        spate_cli("dlq", "purge", "x.dlq", "--before", "soon", broker=broker), 2, "--before 'soon'"
    )
    one_line_error(spate_cli("dlq", "list", "x.dlq", "--limit", "0", broker=broker), 2, "--limit 0")


def test_unreachable_broker_is_named() -> None:
    one_line_error(spate_cli("dlq", "list", "x.dlq", broker="nats://127.0.0.1:1"), 1, "127.0.0.1:1")
