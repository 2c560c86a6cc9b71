"""Synthetic dead letters and one ``spate dlq`` round trip, shared by the CLI tests of
every broker (the same commands must behave the same on each)."""

from __future__ import annotations

import asyncio
import json
import uuid

import spate
from cli_helpers import ok, one_line_error, records
from cli_helpers import spate as spate_cli
from spate import App
from spate import deadletter as dl
from spate.record import Headers
from spate.testing.app import TestApp

OLD = "2026-01-01T00:00:00.000Z"
NEW = "2026-12-04T16:30:00.123Z"


def dead_letter_headers(
    error_type: str, offset: int, failed_at: str, source: str = "orders"
) -> Headers:
    texts = {
        dl.HEADER_ERROR_TYPE: error_type,
        dl.HEADER_ERROR_MESSAGE: f"record {offset} failed: bad amount",
        dl.HEADER_ERROR_TRACEBACK: f'Traceback (most recent call last):\n  File "app.py", '
        f"line 7, in bill\n{error_type}: record {offset} failed",
        dl.HEADER_SOURCE_TOPIC: source,
        dl.HEADER_SOURCE_PARTITION: "0",
        dl.HEADER_SOURCE_OFFSET: str(offset),
        dl.HEADER_PROCESSOR: "billing",
        dl.HEADER_ATTEMPTS: "3",
        dl.HEADER_FAILED_AT: failed_at,
    }
    return (("trace-id", trace_id(offset).encode()), *((k, v.encode()) for k, v in texts.items()))


def trace_id(offset: int) -> str:
    """A header of the record's own, long enough that cutting it would show."""
    return f"t{offset}-" + "0123456789" * 8


async def publish_dead_letters(url: str, source: str) -> None:
    """``source`` and ``source.dlq`` (one partition each); 4 dead letters: offsets 0-1
    failed long ago with ValueError, 2-3 recently with KeyError, each written at the
    time it failed (a flush each: the embedded broker purges whole batches)."""
    async with spate.connect(url) as broker:
        await broker.create_topic(source, 1)
        # Kafka deletes records whose timestamps are older than retention.ms (7 days by
        # default): these have fixed, ever older, timestamps.
        keep = {"retention.ms": "-1"} if url.startswith("kafka") else None
        await broker.create_topic(dl.dead_letter_topic(source), 1, keep)
        async with broker.producer() as producer:
            for n in range(4):
                error, when = ("builtins.ValueError", OLD) if n < 2 else ("KeyError", NEW)
                producer.send(
                    dl.dead_letter_topic(source),
                    json.dumps({"n": n}).encode(),
                    key=f"k{n}".encode(),
                    headers=dead_letter_headers(error, 10 + n, when, source),
                    timestamp_ms=int(dl.parse_timestamp(when, "when").timestamp() * 1000),
                )
                await producer.flush()


def dlq_round_trip(url: str, source: str) -> None:
    """list, show, replay (all, --where, --dry-run) and purge on broker ``url``."""
    asyncio.run(publish_dead_letters(url, source))
    dlq = dl.dead_letter_topic(source)

    table = ok(spate_cli("dlq", "list", dlq, broker=url))
    assert table.count("builtins.ValueError") == 2, table
    assert table.count("KeyError") == 2, table
    assert f"{source}[0]@12" in table
    assert "2026-12-04T16:30:00.123Z" in table
    listed = records(ok(spate_cli("dlq", "list", dlq, "--json", "--limit", "3", broker=url)))
    assert [x["source_offset"] for x in listed] == [10, 11, 12]
    third = listed[2]["offset"]

    shown = ok(spate_cli("dlq", "show", dlq, str(third), broker=url))
    assert 'File "app.py", line 7, in bill' in shown
    assert "KeyError: record 12 failed" in shown
    assert '"n": 2' in shown
    assert trace_id(12) in shown

    dry = spate_cli("dlq", "replay", dlq, "--where", "ValueError", "--dry-run", broker=url)
    assert "would replay 2 dead letters" in ok(dry) + dry.stderr
    replayed = spate_cli("dlq", "replay", dlq, "--where", "ValueError", broker=url)
    assert f"replayed 2 dead letters from {dlq!r} to {source!r}" in ok(replayed) + replayed.stderr
    back = records(ok(spate_cli("consume", source, "--from-beginning", broker=url)))
    assert [r["value"] for r in back] == [{"n": 0}, {"n": 1}]
    assert [r["key"] for r in back] == ["k0", "k1"]
    for r in back:
        assert r["headers"]["spate-replayed-from"].startswith(f"{dlq}/0/")
        assert r["headers"]["trace-id"].startswith("t")
        assert not any(name in dl.ERROR_HEADERS for name in r["headers"])
    ok(spate_cli("dlq", "replay", dlq, "--limit", "1", broker=url))
    assert len(records(ok(spate_cli("consume", source, "--from-beginning", broker=url)))) == 3

    nothing = spate_cli("dlq", "purge", dlq, "--before", "2025-01-01", broker=url)
    assert "nothing to purge" in ok(nothing) + nothing.stderr
    purged = spate_cli("dlq", "purge", dlq, "--before", "2026-06-01T00:00:00Z", broker=url)
    assert "purged 2 dead letters written before 2026-06-01T00:00:00.000Z" in (
        ok(purged) + purged.stderr
    )
    left = records(ok(spate_cli("dlq", "list", dlq, "--json", broker=url)))
    assert [x["source_offset"] for x in left] == [12, 13]
    one_line_error(spate_cli("dlq", "list", f"{source}-none.dlq", broker=url), 1, "does not exist")


def check_replay_after_fix(url: str, count: int = 300) -> None:
    """Issue 11's replay scenario on broker ``url``: the handler fails for every 10th
    order (dead-lettered), is fixed, and ``spate dlq replay`` re-drives the dead
    letters through the real CLI; the fixed processor handles every one of them."""
    source = f"orders-{uuid.uuid4().hex[:8]}"
    app = App("shop", batch_size=100)
    orders = app.topic(source, 2, value_type=dict)
    totals = app.topic(f"{source}-totals", 2, value_type=int)
    fixed = False

    @app.handler(orders, group=f"billing-{source}", output=totals, dead_letter=True)
    def bill(order: dict[str, int]) -> int:
        if not fixed and order["id"] % 10 == 3:
            raise ValueError(f"order {order['id']}: no tax rate for its country")
        return order["id"]

    failing = {i for i in range(count) if i % 10 == 3}
    with TestApp(app, broker=url, timeout_s=60) as t:
        for i in range(count):
            t.send(orders, {"id": i}, key=f"k{i}")
        t.run_until_idle()
        assert sorted(t.outputs(totals)) == sorted(set(range(count)) - failing)
        assert len(t.records(dl.dead_letter_topic(source))) == len(failing)

    fixed = True  # the new deployment
    replayed = spate_cli("dlq", "replay", dl.dead_letter_topic(source), broker=url)
    assert f"replayed {len(failing)} dead letters" in ok(replayed) + replayed.stderr
    with TestApp(app, broker=url, timeout_s=60) as t:
        t.run_until_idle()
        assert sorted(t.outputs(totals)) == list(range(count))  # each once: none twice
        again = t.records(source)
        assert len(t.records(dl.dead_letter_topic(source))) == len(failing)  # none new
    replays = [r for r in again if r.header("spate-replayed-from") is not None]
    assert sorted(int(r.key.decode()[1:]) for r in replays if r.key) == sorted(failing)
    stats = app.stats["bill"]
    assert (stats.errors, stats.dead_letters) == (len(failing), len(failing))
