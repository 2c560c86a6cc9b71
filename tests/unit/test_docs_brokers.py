"""docs/brokers.md says what each adapter's Capabilities say, so the overview a user
reads first cannot drift from the code (it once said NATS had no exactly-once)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spate.brokers.base import Capabilities
from spate.brokers.kafka import KafkaBroker
from spate.brokers.local import LocalBroker
from spate.brokers.nats import NatsBroker
from spate.brokers.redis import RedisBroker

DOC = (Path(__file__).resolve().parents[2] / "docs" / "brokers.md").read_text()

ADAPTERS: dict[str, Capabilities] = {
    "local": LocalBroker.capabilities,
    "memory": LocalBroker.capabilities,
    "kafka": KafkaBroker.capabilities,
    "nats": NatsBroker.capabilities,
    "redis": RedisBroker.capabilities,
}


def table_rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.splitlines():
        match = re.match(r"\| `(\w+)://", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in line.strip("|").split("|")]
    return rows


@pytest.mark.parametrize("scheme", sorted(ADAPTERS))
def test_table_matches_capabilities(scheme: str) -> None:
    caps = ADAPTERS[scheme]
    row = table_rows()[scheme]
    transactions, dedup = row[5], row[6]
    assert (transactions == "yes") == caps.transactions
    assert (not dedup.startswith("\N{EN DASH}")) == caps.dedup_on_publish


def test_no_broker_with_dedup_or_transactions_is_said_to_lack_exactly_once() -> None:
    assert all(caps.transactions or caps.dedup_on_publish for caps in ADAPTERS.values())
    assert not re.search(r"exactly-once is not (offered|available)", DOC)
