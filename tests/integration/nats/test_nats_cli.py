"""``spate topics``, ``produce``, ``consume`` and ``groups`` against NATS through the
real entry point, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import uuid


def spate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from spate.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_groups_lag_on_nats(nats_url: str) -> None:
    topic, group = f"cli{uuid.uuid4().hex[:8]}", f"cg{uuid.uuid4().hex[:8]}"
    created = spate("topics", "create", topic, "--partitions", "2", "--broker", nats_url)
    assert created.returncode == 0, created.stderr
    for value in ("a", "b", "c"):
        sent = spate("produce", topic, f'"{value}"', "--key", value, "--broker", nats_url)
        assert sent.returncode == 0, sent.stderr
    consumed = spate(
        "consume",
        topic,
        "--group",
        group,
        "--limit",
        "3",
        "--from-beginning",
        "--broker",
        nats_url,
    )
    assert consumed.returncode == 0, consumed.stderr
    listed = spate("groups", "list", "--broker", nats_url)
    assert listed.returncode == 0, listed.stderr
    assert group in listed.stdout
    lag = spate("groups", "lag", group, "--broker", nats_url)
    assert lag.returncode == 0, lag.stderr
    assert topic in lag.stdout
    # Keys a, b and c all hash to partition 1: committed 3 of 3, lag 0.
    assert "│ 1         │ 3         │ 3   │ 0   │" in lag.stdout
    described = spate("topics", "describe", topic, "--broker", nats_url)
    assert described.returncode == 0, described.stderr
    assert "2" in described.stdout
