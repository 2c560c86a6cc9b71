"""The embedded broker beyond the contract: URLs, files, durability, retention."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import spate
from spate.brokers.local import LocalBroker
from spate.brokers.local.storage import DB_FILE, FORMAT_VERSION
from spate.clock import ManualClock
from spate.errors import ConfigError, ConnectError, PublishError
from spate.record import TopicPartition


async def test_memory_url_shares_one_database_per_name() -> None:
    name = uuid.uuid4().hex
    async with spate.connect(f"memory://{name}") as one, spate.connect(f"memory://{name}") as two:
        await one.create_topic("shared")
        assert [t.name for t in await two.list_topics()] == ["shared"]
    async with spate.connect(f"memory://{name}") as again:
        assert await again.list_topics() == []


def test_url_options_are_checked() -> None:
    broker = spate.connect("local:///tmp/x?lease_ttl_s=2&heartbeat_s=0.5&synchronous=normal")
    assert isinstance(broker, LocalBroker)
    assert (broker.lease_ttl_s, broker.heartbeat_s, broker.synchronous) == (2.0, 0.5, "normal")
    with pytest.raises(ConfigError, match="lease_tll_s"):
        spate.connect("local:///tmp/x?lease_tll_s=2")
    with pytest.raises(ConfigError, match="lease_ttl_s"):
        spate.connect("local:///tmp/x?lease_ttl_s=soon")
    with pytest.raises(ConfigError, match="synchronous"):
        spate.connect("local:///tmp/x?synchronous=off")
    with pytest.raises(ConfigError, match="heartbeat_s"):
        spate.connect("memory://?lease_ttl_s=1&heartbeat_s=2")


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def modes(directory: Path) -> dict[str, int]:
    return {entry.name: stat.S_IMODE(entry.stat().st_mode) for entry in directory.iterdir()}


async def test_the_data_is_private_to_its_user_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    where = tmp_path / "new" / "broker"
    async with spate.connect(f"local://{where}") as broker:
        await broker.create_topic("t", 1)
        async with broker.producer() as producer:
            producer.send("t", b"secret", partition=0)
            await producer.flush()
        files = modes(where)
    assert stat.S_IMODE(where.stat().st_mode) == 0o700
    assert files == {DB_FILE: 0o600, f"{DB_FILE}-wal": 0o600, f"{DB_FILE}-shm": 0o600}


async def test_an_existing_directory_keeps_its_mode_and_gets_private_files(
    tmp_path: Path, umask: int
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o750)
    async with spate.connect(f"local://{shared}") as broker:
        await broker.create_topic("t", 1)
        files = modes(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o750
    assert set(files.values()) == {0o600}


async def test_records_offsets_and_topics_survive_a_restart(tmp_path: Path) -> None:
    url = f"local://{tmp_path}/b"
    async with spate.connect(url) as broker:
        await broker.create_topic("t", 2, {"retention.ms": "-1"})
        async with broker.producer() as producer:
            for i in range(10):
                producer.send("t", b"%d" % i, partition=0)
            await producer.flush()
        async with broker.consumer(["t"], "g") as consumer:
            records = await consumer.fetch(100, 1.0)
            await consumer.commit({TopicPartition("t", 0): records[6].offset})
    async with spate.connect(url) as broker:
        info = await broker.describe_topic("t")
        assert (info.partitions, dict(info.config)) == (2, {"retention.ms": "-1"})
        async with broker.consumer(["t"], "g") as consumer:
            rest = await consumer.fetch(100, 1.0)
        assert [r.value for r in rest] == [b"7", b"8", b"9"]
        assert [r.offset for r in rest] == [7, 8, 9]


async def test_directory_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a spate broker"):
        async with spate.connect(f"local://{tmp_path}"):
            pass
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / DB_FILE).exists()


async def test_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        async with spate.connect(f"local://{tmp_path}/file"):
            pass


async def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(ConfigError, match="not a spate broker"):
        async with spate.connect(f"local://{tmp_path}"):
            pass


async def test_newer_format_is_refused(tmp_path: Path) -> None:
    async with spate.connect(f"local://{tmp_path}"):
        pass
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'format_version'", (str(FORMAT_VERSION + 1),)
        )
    with pytest.raises(ConfigError, match="newer spate"):
        async with spate.connect(f"local://{tmp_path}"):
            pass


async def test_corrupt_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ConnectError, match="corrupt or not a SQLite file"):
        async with spate.connect(f"local://{tmp_path}"):
            pass


async def test_locked_database_says_so(tmp_path: Path) -> None:
    async with spate.connect(f"local://{tmp_path}"):
        pass
    holder = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ConnectError, match="locked by another process"):
            async with spate.connect(f"local://{tmp_path}?busy_timeout_s=0.2"):
                pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_send_to_a_missing_partition_fails_at_flush() -> None:
    async with spate.connect(f"memory://{uuid.uuid4().hex}") as broker:
        await broker.create_topic("t", 2)
        async with broker.producer() as producer:
            producer.send("t", b"x", partition=2)
            with pytest.raises(PublishError, match="partition 2"):
                await producer.flush()


async def test_bulk_sends_buffer_what_sends_one_by_one_would() -> None:
    headers = (("h", b"1"),)
    async with spate.connect(f"memory://{uuid.uuid4().hex}") as broker:
        await broker.create_topic("t", 2)
        async with broker.producer() as producer:
            producer.send_to_partition("t", 1, [b"k1", b"k2"], [b"a", b"b"], headers)
            producer.send_many([("t", b"c", b"k3", None)])
            await producer.flush()
            producer.send_to_partition("t", 2, [b"k"], [b"x"])
            with pytest.raises(PublishError, match="partition 2"):
                await producer.flush()
            with pytest.raises(ValueError, match="2 keys for 1 values"):
                producer.send_to_partition("t", 1, [b"k1", b"k2"], [b"a"])
        async with broker.consumer(["t"], "g") as consumer:
            records = await consumer.fetch(100, 1.0)
    by_key = {r.key: r for r in records}
    assert [(r.partition, r.value, r.headers) for r in (by_key[b"k1"], by_key[b"k2"])] == [
        (1, b"a", headers),
        (1, b"b", headers),
    ]
    assert by_key[b"k3"].value == b"c"
    assert by_key[b"k3"].headers == ()


async def test_interleaved_sends_keep_their_order_in_each_partition() -> None:
    async with spate.connect(f"memory://{uuid.uuid4().hex}") as broker:
        await broker.create_topic("t", 2)
        await broker.create_topic("u", 1)
        async with broker.producer() as producer:
            producer.send("t", b"1", partition=0)
            producer.send("u", b"2", partition=0)
            producer.send("t", b"3", partition=0)
            producer.send("t", b"4", key=b"k")
            producer.send("t", b"5", partition=1, timestamp_ms=7)
            producer.send("t", b"6", partition=0)
            await producer.flush()
        async with broker.consumer(["t", "u"], "g") as consumer:
            records = await consumer.fetch(100, 1.0)
    by_partition: dict[tuple[str, int], list[bytes]] = {}
    for r in records:
        by_partition.setdefault((r.topic, r.partition), []).append(r.value)
    keyed = 0 if b"4" in by_partition.get(("t", 0), []) else 1
    expected = {("t", 0): [b"1", b"3", b"6"], ("t", 1): [b"5"], ("u", 0): [b"2"]}
    expected[("t", keyed)].insert(2 if keyed == 0 else 0, b"4")
    assert by_partition == expected


async def test_retention_by_age_counts_uncommitted_losses() -> None:
    clock = ManualClock()
    async with LocalBroker(
        None, memory_name=uuid.uuid4().hex, clock=clock, retention_check_s=10**9
    ) as broker:
        await broker.create_topic("t", 1, {"retention.ms": "60000"})
        async with broker.producer() as producer:
            for i in range(10):
                producer.send("t", b"old-%d" % i)
                await producer.flush()
            clock.advance(120)
            producer.send("t", b"new")
            await producer.flush()
        tp = TopicPartition("t", 0)
        async with broker.consumer(["t"], "slow") as consumer:
            await consumer.fetch(3, 1.0)
            await consumer.commit({tp: 2})
        losses = await broker.enforce_retention()
        assert [(loss.group, loss.records) for loss in losses] == [("slow", 7)]
        assert await broker.records_lost("slow") == {tp: 7}
        assert await broker.enforce_retention() == []
        (lag,) = await broker.lag("slow", ["t"])
        assert (lag.committed, lag.end_offset, lag.lag) == (3, 11, 1)
        async with broker.consumer(["t"], "slow") as consumer:
            assert [r.value for r in await consumer.fetch(10, 1.0)] == [b"new"]
        async with broker.consumer(["t"], "fresh") as consumer:
            assert [r.offset for r in await consumer.fetch(10, 1.0)] == [10]


async def test_retention_by_size_keeps_newest_batches() -> None:
    async with LocalBroker(None, memory_name=uuid.uuid4().hex) as broker:
        await broker.create_topic("t", 1, {"retention.bytes": "1000"})
        async with broker.producer() as producer:
            for i in range(20):
                producer.send("t", b"%03d" % i + b"x" * 100)
                await producer.flush()
        await broker.enforce_retention()
        async with broker.consumer(["t"], "g") as consumer:
            kept = await consumer.fetch(100, 1.0)
        assert 0 < len(kept) < 20
        assert kept[-1].offset == 19
        assert sum(len(r.value) for r in kept) <= 1000
        async with broker.producer() as producer:
            producer.send("t", b"y" * 5000)
        await broker.enforce_retention()
        async with broker.consumer(["t"], "g2") as consumer:
            assert [r.offset for r in await consumer.fetch(100, 1.0)] == [20]


async def test_topics_without_retention_keep_everything() -> None:
    clock = ManualClock()
    async with LocalBroker(
        None, memory_name=uuid.uuid4().hex, clock=clock, retention_check_s=10**9
    ) as broker:
        await broker.create_topic("t")
        async with broker.producer() as producer:
            producer.send("t", b"x")
        clock.advance(10**7)
        assert await broker.enforce_retention() == []
        with pytest.raises(ConfigError, match=r"retention\.ms"):
            await broker.create_topic("u", 1, {"retention.ms": "a week"})


async def test_retention_runs_in_the_background() -> None:
    async with LocalBroker(None, memory_name=uuid.uuid4().hex, retention_check_s=0.05) as broker:
        await broker.create_topic("t", 1, {"retention.ms": "1"})
        async with broker.producer() as producer:
            producer.send("t", b"old", timestamp_ms=1)
            await producer.flush()
        for _ in range(100):
            (lag,) = await broker.lag("g", ["t"])
            if lag.lag == 0:
                break
            await asyncio.sleep(0.02)
        assert (lag.end_offset, lag.lag) == (1, 0)


async def test_retention_gives_space_back_to_the_file_system(tmp_path: Path) -> None:
    clock = ManualClock()
    async with LocalBroker(tmp_path, clock=clock, retention_check_s=10**9) as broker:
        await broker.create_topic("t", 1, {"retention.ms": "1000"})
        async with broker.producer() as producer:
            for _ in range(5000):
                producer.send("t", b"x" * 500)
            await producer.flush()
            clock.advance(5)
            producer.send("t", b"kept")
        with sqlite3.connect(tmp_path / DB_FILE) as conn:
            before = conn.execute("PRAGMA page_count").fetchone()[0]
            await broker.enforce_retention()
            after = conn.execute("PRAGMA page_count").fetchone()[0]
            assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert after < before / 4
        async with broker.consumer(["t"], "g") as consumer:
            assert [r.value for r in await consumer.fetch(10, 1.0)] == [b"kept"]


def test_a_batch_encodes_shared_headers_as_it_would_each_records_own() -> None:
    from spate.brokers.local.log import decode_batch, encode_batch

    shared = (("spate-source-topic", b"orders"), ("spate-source-first", b"7"))
    sends: list[Any] = [("t", 0, b"k%d" % i, b"v", shared, None) for i in range(3)]
    sends.append(("t", 0, b"other", b"v", (("h", b"x"),), 5))
    copies = [(*send[:4], tuple(list(send[4])), send[5]) for send in sends]
    assert copies[0][4] is not shared
    payload = encode_batch("t", 0, 10, sends, 99)
    assert payload == encode_batch("t", 0, 10, copies, 99)
    records = decode_batch(payload)
    assert [(r.offset, r.headers, r.timestamp_ms) for r in records] == [
        (10, shared, 99),
        (11, shared, 99),
        (12, shared, 99),
        (13, (("h", b"x"),), 5),
    ]
