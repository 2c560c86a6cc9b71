"""``spate dlq`` end to end through the real entry point on a ``local://`` broker, and
the mistakes it must name in one line."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import uuid
from pathlib import Path

import pytest

import spate
from cli_helpers import SPATE, ok, one_line_error
from cli_helpers import spate as spate_cli
from dlq_checks import check_replay_after_fix, dlq_round_trip
from spate.brokers import registry, schemes
from spate.cli import dlq
from spate.errors import CapabilityError
from third_party_adapter import QueueBroker

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


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


def test_purge_on_a_broker_that_cannot_delete_records_names_the_capability(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A third-party adapter without Capabilities.delete_records is refused up front."""

    class KeepsEverything(QueueBroker):
        capabilities = dataclasses.replace(QueueBroker.capabilities, delete_records=False)

    monkeypatch.setattr(schemes, "_SCHEMES", dict(schemes._SCHEMES))
    registry.register("keep", KeepsEverything.from_url)
    with pytest.raises(
        CapabilityError, match="cannot purge dead letters: it has no 'delete_records' capability"
    ):
        dlq.purge("orders.dlq", "1h", broker=f"keep://dlq-{uuid.uuid4().hex}:1")


def test_unreachable_broker_is_named() -> None:
    one_line_error(spate_cli("dlq", "list", "x.dlq", broker="nats://127.0.0.1:1"), 1, "127.0.0.1:1")


def test_the_example_in_the_docs_runs(tmp_path: Path) -> None:
    text = DOCS.read_text()
    example = text.split("An example that runs on its own", 1)[1]
    script = example.split("```bash\n", 1)[1].split("```", 1)[0]
    env = {k: v for k, v in os.environ.items() if k != "SPATE_BROKER"}
    env["PATH"] = f"{Path(SPATE[0]).parent}{os.pathsep}{env['PATH']}"
    env["COLUMNS"] = "200"
    run = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "replayed 1 dead letter from 'orders.dlq' to 'orders'" in run.stderr, run.stderr
    assert '"spate-replayed-from":"orders.dlq/0/0"' in run.stdout
    assert "Traceback (most recent call last): ValueError" in run.stdout
    assert "purged 1 dead letter written before" in run.stderr, run.stderr
    assert "no dead letters in 'orders.dlq'" in run.stdout
    assert run.returncode == 0


def test_replay_after_the_fix_redrives_every_dead_letter_on_local(broker: str) -> None:
    check_replay_after_fix(broker)
