"""``spate bench`` on a broker, checked against what the broker really holds: the
same round through every mode for every adapter."""

from __future__ import annotations

import json
from typing import Any

from cli_helpers import ok, records, spate

FIELDS = {
    "mode",
    "topic",
    "records",
    "bytes",
    "elapsed_s",
    "records_per_s",
    "mb_per_s",
    "target_rate",
    "latency_ms",
}
LATENCY_FIELDS = {"avg", "max", "p50", "p95", "p99", "p99.9"}


def bench(*args: str, broker: str, timeout_s: float = 90) -> dict[str, Any]:
    """One ``spate bench ... --json`` run: its single JSON object, with every field."""
    out = ok(spate("bench", *args, "--json", broker=broker, timeout_s=timeout_s))
    lines = out.splitlines()
    assert len(lines) == 1, out
    summary: dict[str, Any] = json.loads(lines[0])
    assert set(summary) == FIELDS
    if summary["latency_ms"] is not None:
        assert set(summary["latency_ms"]) == LATENCY_FIELDS
        latency = summary["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["p99.9"]
        assert latency["p99.9"] <= latency["max"]
    return summary


def every_mode_counts_what_it_did(broker: str, topic: str, group: str) -> None:
    """Produce both ways, read the topic back with ``spate consume`` to count what
    arrived, consume it with ``bench consume`` as a group that must end with no lag,
    and run e2e: each count reported is the count the broker holds."""
    ok(spate("topics", "create", topic, "--partitions", "2", broker=broker))
    single = bench("produce", topic, "-n", "200", "-s", "64", "--keys", "5", broker=broker)
    assert (single["mode"], single["records"], single["bytes"]) == ("produce", 200, 200 * 64)
    assert single["latency_ms"] is not None
    batched = bench(
        "produce", topic, "-n", "3000", "-s", "64", "--batch", "--batch-size", "500", broker=broker
    )
    assert (batched["records"], batched["bytes"]) == (3000, 3000 * 64)
    # --follow: Tansu reports end offsets below the records it holds, so "read to the
    # end" stops early there; the group's lag of 0 below shows there are no more.
    held = ok(spate("consume", topic, "--from-beginning", "--follow", "-n", "3200", broker=broker))
    assert len(records(held)) == 3200

    consumed = bench("consume", topic, "-n", "3200", "--group", group, broker=broker)
    assert (consumed["mode"], consumed["records"], consumed["bytes"]) == (
        "consume",
        3200,
        3200 * 64,
    )
    assert consumed["latency_ms"] is None
    lag = ok(spate("groups", "lag", group, broker=broker))
    assert next(line for line in lag.splitlines() if "total" in line).split()[-2] == "0"

    e2e = bench("e2e", "-n", "400", "--rate", "400", "--partitions", "2", broker=broker)
    assert (e2e["mode"], e2e["records"], e2e["bytes"], e2e["target_rate"]) == (
        "e2e",
        400,
        400 * 100,
        400.0,
    )
    assert e2e["topic"] not in ok(spate("topics", "list", broker=broker))
