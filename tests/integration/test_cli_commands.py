"""Every CLI command end to end through the real ``spate`` entry point, in a subprocess,
on a ``local://`` broker in a temporary directory."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import spate as spate_api
from cli_helpers import SPATE, ok, one_line_error, records, spate


@pytest.fixture
def broker(tmp_path: Path) -> str:
    return f"local://{tmp_path / 'broker'}"


def test_topics_create_list_describe_delete(broker: str) -> None:
    ok(
        spate(
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "-c",
            "retention.ms=60000",
            broker=broker,
        )
    )
    listing = ok(spate("topics", "list", broker=broker))
    assert "orders" in listing
    assert "3" in listing
    described = ok(spate("topics", "describe", "orders", "--broker", broker, broker=None))
    assert "orders" in described
    assert "retention.ms=60000" in described
    assert "end offset" in described
    one_line_error(spate("topics", "create", "orders", broker=broker), 1, "orders")
    ok(spate("topics", "create", "orders", "--partitions", "3", "--exist-ok", broker=broker))
    assert "deleted" in ok(spate("topics", "delete", "orders", broker=broker))
    one_line_error(spate("topics", "describe", "orders", broker=broker), 1, "orders")
    assert "no topics" in ok(spate("topics", "list", broker=broker))


def test_produce_every_way_then_consume(broker: str, tmp_path: Path) -> None:
    ok(spate("topics", "create", "events", "--partitions", "2", broker=broker))
    ok(
        spate(
            "produce",
            "events",
            '{"id": 1}',
            "--key",
            "k1",
            "--header",
            "source=cli",
            "--header",
            "team=a",
            broker=broker,
        )
    )
    lines = tmp_path / "events.jsonl"
    lines.write_text('{"id": 2, "user": "ann"}\n\n{"id": 3, "user": "bob"}\n{"id": 4, "user": 7}\n')
    sent = spate("produce", "events", "--file", str(lines), "--key-field", "user", broker=broker)
    ok(sent)
    assert "sent 3 records" in sent.stderr
    ok(spate("produce", "events", broker=broker, stdin="plain text\nmore text\n"))

    out = records(ok(spate("consume", "events", "--from-beginning", broker=broker)))
    assert len(out) == 6
    by_value = {json.dumps(r["value"], sort_keys=True): r for r in out}
    first = by_value[json.dumps({"id": 1})]
    assert first["key"] == "k1"
    assert first["headers"] == {"source": "cli", "team": "a"}
    assert first["topic"] == "events"
    assert first["partition"] in (0, 1)
    assert first["timestamp"].endswith("Z")
    assert by_value[json.dumps({"id": 2, "user": "ann"})]["key"] == "ann"
    assert by_value[json.dumps({"id": 4, "user": 7})]["key"] == "7"
    assert {r["value"] for r in out if isinstance(r["value"], str)} == {"plain text", "more text"}
    for partition in (0, 1):
        offsets = [r["offset"] for r in out if r["partition"] == partition]
        assert offsets == sorted(offsets)

    limited = records(
        ok(spate("consume", "events", "--from-beginning", "--limit", "2", broker=broker))
    )
    assert len(limited) == 2


def test_consume_group_commits_and_groups_show_lag(broker: str) -> None:
    ok(spate("topics", "create", "jobs", "--partitions", "2", broker=broker))
    ok(spate("produce", "jobs", broker=broker, stdin="".join(f"job {i}\n" for i in range(6))))
    first = records(
        ok(
            spate(
                "consume",
                "jobs",
                "--group",
                "workers",
                "--from-beginning",
                "--limit",
                "4",
                broker=broker,
            )
        )
    )
    assert len(first) == 4

    groups = ok(spate("groups", "list", broker=broker))
    assert "workers" in groups
    assert "jobs" in groups
    lag = ok(spate("groups", "lag", "workers", broker=broker))
    assert "committed" in lag
    assert "total" in lag
    total_line = next(line for line in lag.splitlines() if "total" in line)
    assert total_line.replace("│", " ").split()[-1] == "2"

    rest = records(
        ok(spate("consume", "jobs", "--group", "workers", "--from-beginning", broker=broker))
    )
    assert len(rest) == 2
    assert {r["value"] for r in first + rest} == {f"job {i}" for i in range(6)}
    lag_after = ok(spate("groups", "lag", broker=broker))
    total_after = next(line for line in lag_after.splitlines() if "total" in line)
    assert total_after.replace("│", " ").split()[-1] == "0"
    one_line_error(spate("groups", "lag", "nobody", broker=broker), 2, "nobody", "workers")


def test_user_mistakes_give_one_line_and_an_exit_code(broker: str, tmp_path: Path) -> None:
    one_line_error(spate("topics", "list", broker="kafka://localhost:99999"), 2, "port '99999'")
    one_line_error(spate("topics", "list", "--broker", "foo://x", broker=None), 2, "scheme 'foo'")
    one_line_error(spate("topics", "list", broker="localhost:9092"), 2, "scheme")
    one_line_error(
        spate("topics", "create", "t", "--config", "oops", broker=broker),
        2,
        "--config 'oops'",
        "KEY=VALUE",
    )
    one_line_error(spate("topics", "create", "bad name", broker=broker), 2, "topic name")
    one_line_error(
        spate("produce", "missing", "x", broker=broker),
        1,
        "topic 'missing' does not exist",
        "spate topics create missing --partitions N",
    )
    one_line_error(
        spate("consume", "missing", broker=broker), 1, "spate topics create missing --partitions N"
    )
    one_line_error(
        spate("produce", "t", "--file", str(tmp_path / "nope.txt"), broker=broker),
        2,
        "nope.txt",
        "cannot be read",
    )
    one_line_error(spate("produce", "t", "v", "--file", "x", broker=broker), 2, "not both")
    ok(spate("topics", "create", "t", broker=broker))
    one_line_error(
        spate(
            "produce", "t", "--key-field", "user", broker=broker, stdin='{"user": 1}\nnot json\n'
        ),
        2,
        "line 2 is not JSON",
        "1 record(s) before it were sent",
    )


def test_run_an_app_that_fails_to_import_says_where_in_one_line(
    broker: str, tmp_path: Path
) -> None:
    shop = tmp_path / "shop.py"
    shop.write_text("import spate\n\nimport ordersx\napp = spate.App('shop')\n")
    one_line_error(
        spate("run", f"{shop}:app", broker=broker),
        2,
        "cannot import 'shop' (ModuleNotFoundError: No module named 'ordersx')",
        f"at {shop}:3",
        "--traceback",
    )
    (tmp_path / "broken.py").write_text("app = (\n")
    one_line_error(
        spate("run", f"{tmp_path / 'broken.py'}:app", broker=broker),
        2,
        "cannot import 'broken' (SyntaxError: '(' was never closed)",
        "broken.py:1",
    )
    full = spate("run", f"{shop}:app", "--traceback", broker=broker)
    assert full.returncode == 2
    assert "Traceback (most recent call last)" in full.stderr
    assert f'File "{shop}", line 3, in <module>' in full.stderr
    assert full.stderr.strip().splitlines()[-1].startswith("error: cannot import 'shop'")


BILLING_APP = """
import spate

app = spate.App("shop")
orders = app.topic("orders", partitions=2)


@app.handler(orders, group="billing")
def bill(order: dict) -> None:
    return None
"""


async def billing_caught_up(url: str) -> bool:
    async with spate_api.connect(url) as broker:
        rows = await broker.lag("billing", ["orders"])
    return sum(r.end_offset for r in rows) > 0 and all(r.lag == 0 for r in rows)


def test_deleting_the_topic_of_a_running_app_stops_it_saying_so(
    broker: str, tmp_path: Path
) -> None:
    (tmp_path / "shop.py").write_text(BILLING_APP)
    ok(spate("topics", "create", "orders", "--partitions", "2", broker=broker))
    ok(spate("produce", "orders", '{"id": 1}', broker=broker))
    env = {**os.environ, "SPATE_BROKER": broker}
    run = subprocess.Popen(
        [*SPATE, "run", f"{tmp_path / 'shop.py'}:app"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(300):
            if asyncio.run(billing_caught_up(broker)):
                break
            time.sleep(0.05)
        ok(spate("topics", "delete", "orders", broker=broker))
        _, stderr = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    reason = "topic 'orders' was deleted while group 'billing' consumed it"
    assert run.returncode == 1, stderr
    stop = "event=stop app=shop processor=bill consumed=1 produced=0 errors=0 duplicates=0 "
    assert f"{stop}error=TopicNotFoundError: {reason}" in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"error: {reason}")


def test_demo_runs_without_a_terminal() -> None:
    result = spate("demo", "--duration", "3", "--rate", "300", broker=None, timeout_s=60)
    out = ok(result)
    assert "done:" in out
    assert "malformed" in out
    assert "/api/orders" in out
    assert "firing" in out  # the incident inside every run raises an alert


def test_consume_without_from_beginning_waits_for_new_records(broker: str) -> None:
    ok(spate("topics", "create", "feed", broker=broker))
    ok(spate("produce", "feed", "old", broker=broker))
    env = {**os.environ, "SPATE_BROKER": broker}
    tail = subprocess.Popen(
        [*SPATE, "consume", "feed", "--limit", "1"], env=env, stdout=subprocess.PIPE, text=True
    )
    follow = subprocess.Popen(
        [*SPATE, "consume", "feed", "--from-beginning", "--follow", "--limit", "2"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # The readers join in the background: keep publishing until both have ended.
        for _ in range(100):
            if tail.poll() is not None and follow.poll() is not None:
                break
            ok(spate("produce", "feed", "new", broker=broker))
        tail_out, _ = tail.communicate(timeout=10)
        follow_out, _ = follow.communicate(timeout=10)
    finally:
        tail.kill()
        follow.kill()
    assert [r["value"] for r in records(tail_out)] == ["new"]
    assert [r["value"] for r in records(follow_out)] == ["old", "new"]
    assert tail.returncode == follow.returncode == 0


def test_demo_interrupted_ends_early_with_a_summary() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SPATE_BROKER"}
    demo = subprocess.Popen(
        [*SPATE, "demo", "--duration", "60", "--rate", "200"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    demo.send_signal(signal.SIGINT)
    out, err = demo.communicate(timeout=20)
    assert demo.returncode == 0, err
    assert "done:" in out
    assert "Traceback" not in err
