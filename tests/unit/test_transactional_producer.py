"""Transactions are a protocol of their own (DESIGN §5): only a broker with
``Capabilities.transactions`` makes a TransactionalProducer, and a plain producer has
no transaction methods that could be called by mistake."""

from __future__ import annotations

from dataclasses import replace

import pytest

import spate
from spate.brokers.base import TransactionalProducer
from spate.errors import CapabilityError


async def test_a_plain_producer_has_no_transaction_methods() -> None:
    async with spate.connect("memory://plain") as broker, broker.producer() as producer:
        assert not isinstance(producer, TransactionalProducer)
        assert not hasattr(producer, "begin_transaction")


async def test_a_transactional_id_makes_a_transactional_producer() -> None:
    async with spate.connect("memory://tx") as broker:
        await broker.create_topic("out", 1)
        async with broker.producer(transactional_id="t") as producer:
            assert isinstance(producer, TransactionalProducer)
            await producer.begin_transaction()
            producer.send("out", b"x")
            await producer.abort_transaction()
        [lag] = await broker.lag("nobody", ["out"])
        assert lag.end_offset == 0


async def test_a_broker_without_transactions_refuses_pointing_at_dedup_ids() -> None:
    async with spate.connect("memory://none") as broker:
        # As NATS and Redis say: no transactions, deduplication instead.
        broker.capabilities = replace(
            broker.capabilities, transactions=False, dedup_on_publish=True
        )
        with pytest.raises(CapabilityError, match="dedup_id"):
            broker.producer(transactional_id="t")
        async with broker.producer() as producer:
            assert not isinstance(producer, TransactionalProducer)
