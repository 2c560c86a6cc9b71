"""Stores: the cached store, its codec, the local backends, and which changelog
flushes a restore keeps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from spate.clock import ManualClock
from spate.errors import StateError
from spate.state.backend import Backend
from spate.state.changelog import _Run, surviving
from spate.state.codec import (
    TOMBSTONE,
    decode_entry,
    decode_key,
    encode_entries,
    encode_entry,
    encode_key,
    encode_keys,
)
from spate.state.local import backend_kind, open_backend
from spate.state.memory import MemoryBackend
from spate.state.rocksdb import RocksdbBackend
from spate.state.sqlite import SqliteBackend
from spate.state.store import SWEEP_INTERVAL_MS, CachedStore, MemoryStore, Store, StoreKey


def test_a_cached_store_reads_its_writes_and_hands_each_change_once() -> None:
    store = CachedStore("s", ManualClock())
    assert isinstance(store, Store)
    store.set("a", 1)
    store.set(("user", 7), {"n": [1, 2]})
    store.set("a", 2)
    assert store.get("a") == 2
    assert "a" in store
    assert store.get("zz", 5) == 5
    assert sorted(store.changes(), key=repr) == sorted(
        [("a", 2, None, False), (("user", 7), {"n": [1, 2]}, None, False)], key=repr
    )
    assert store.changes() == []
    store.delete("a")
    store.delete("never")
    assert store.changes() == [("a", None, None, True)]
    assert dict(store.items()) == {("user", 7): {"n": [1, 2]}}


@pytest.mark.parametrize(
    "make", [lambda: CachedStore("s", ManualClock()), lambda: MemoryStore("s")]
)
def test_bulk_reads_and_writes_mean_what_the_single_key_ones_do(make: Callable[[], Store]) -> None:
    store = make()
    assert isinstance(store, Store)
    store.set_many({("u", 1): [1, 2], ("u", 2): [3, 4], "x": 5})
    assert store.get_many([("u", 2), "missing", "x"]) == [[3, 4], None, 5]
    store.delete_many([("u", 1), "missing", "x"])
    assert dict(store.items()) == {("u", 2): [3, 4]}


def test_pending_gives_the_changes_in_columns_and_cleans_the_store() -> None:
    clock = ManualClock()
    store = CachedStore("s", clock)
    store.set_many({"a": 1, "b": 2})
    store.set("c", 3, ttl_s=10)
    store.changes()
    store.set_many({"a": 10, "d": 4})
    store.delete_many(["b", "never"])
    store.delete("c")
    pending = store.pending()
    assert sorted(zip(pending.keys, pending.values, strict=True)) == [("a", 10), ("d", 4)]
    assert pending.expires_at_ms is None  # no key has a time to live any more
    assert sorted(pending.deleted) == ["b", "c"]
    assert store.pending() == ([], [], None, [])
    store.set("e", 5, ttl_s=2)
    store.set("f", 6)
    pending = store.pending()
    assert dict(zip(pending.keys, pending.expires_at_ms or [], strict=True)) == {
        "e": clock.time_ms() + 2000,
        "f": None,
    }


def test_batch_encoding_is_key_by_key_encoding_and_names_a_bad_key_or_value() -> None:
    keys: list[StoreKey] = ["a", b"b", 7, ("w", 1), ("nested", ("x", 1))]
    assert encode_keys(keys) == [encode_key(key) for key in keys]
    assert encode_entries([1, {"n": 2}], None) == [
        encode_entry(1, None),
        encode_entry({"n": 2}, None),
    ]
    assert encode_entries([1, 2], [None, 5]) == [encode_entry(1, None), encode_entry(2, 5)]
    with pytest.raises(StateError, match=r"store key True .* use a str"):
        encode_keys(["a", True])
    with pytest.raises(StateError, match=r"store key \('a', 1.5j\) cannot be stored"):
        encode_keys([("a", 1.5j)])
    with pytest.raises(StateError, match="store plain data"):
        encode_entries([1, object()], None)


def test_a_key_with_a_ttl_reads_absent_once_expired_and_is_swept_as_a_delete() -> None:
    clock = ManualClock()
    store = CachedStore("dedup", clock)
    store.set("seen", True, ttl_s=10)
    store.set("kept", True)
    store.changes()
    clock.advance(9)
    assert store.get("seen") is True
    clock.advance(1)
    assert store.get("seen") is None
    assert "seen" not in store
    assert dict(store.items()) == {"kept": True}
    clock.advance(SWEEP_INTERVAL_MS / 1000)
    assert store.changes() == [("seen", None, None, True)]
    assert len(store) == 1


def test_a_set_without_ttl_makes_a_key_permanent_again() -> None:
    clock = ManualClock()
    store = CachedStore("s", clock)
    store.set("k", 1, ttl_s=1)
    store.set("k", 2)
    clock.advance(5)
    assert store.get("k") == 2


@pytest.mark.parametrize("ttl", [0, -1, "5", True])
def test_a_bad_ttl_names_the_store_and_the_fix(ttl: object) -> None:
    store = CachedStore("dedup", ManualClock())
    with pytest.raises(StateError, match=r"store 'dedup': ttl_s=.* must be a positive number"):
        store.set("k", 1, ttl_s=ttl)  # type: ignore[arg-type]


def test_keys_come_back_as_stored_tuples_included() -> None:
    keys: list[StoreKey] = ["a", b"b", 7, ("w", 1_700_000_000_000), ("nested", ("x", 1))]
    for key in keys:
        assert decode_key(encode_key(key)) == key
    assert decode_entry(encode_entry({"sum": 3}, 123)) == ({"sum": 3}, 123)
    assert encode_entry(None, None) != TOMBSTONE


@pytest.mark.parametrize("key", [1.5, None, True, ["list"]])
def test_a_key_that_cannot_be_stored_says_what_can(key: object) -> None:
    with pytest.raises(StateError, match="use a str, bytes, int or a tuple"):
        encode_key(key)  # type: ignore[arg-type]


def test_a_value_that_is_not_plain_data_says_what_is() -> None:
    with pytest.raises(StateError, match="store plain data"):
        encode_entry(object(), None)


BACKENDS: list[Callable[[Path], Backend]] = [MemoryBackend, SqliteBackend, RocksdbBackend]


@pytest.mark.parametrize("backend_type", BACKENDS, ids=lambda b: b.kind)
def test_every_backend_writes_changes_and_checkpoint_together(
    backend_type: Callable[[Path], Backend], tmp_path: Path
) -> None:
    backend = backend_type(tmp_path / "s")
    assert backend.checkpoint() is None
    assert list(backend.items()) == []
    backend.write({b"a": b"1", b"b": b"2"}, b"cp1")
    backend.write({b"a": None, b"c": b"3"}, b"cp2")
    assert sorted(backend.items()) == [(b"b", b"2"), (b"c", b"3")]
    assert backend.checkpoint() == b"cp2"
    backend.clear()
    assert list(backend.items()) == []
    assert backend.checkpoint() is None
    backend.write({b"d": b"4"}, b"cp3")
    backend.write_changes({b"e": b"5", b"f": b"6"}, [b"missing"], b"cp4")
    backend.write_changes({b"f": b"7"}, [b"e"], b"cp5")
    assert sorted(backend.items()) == [(b"d", b"4"), (b"f", b"7")]
    assert backend.checkpoint() == b"cp5"
    backend.close()
    if backend_type is not MemoryBackend:
        again = backend_type(tmp_path / "s")
        assert sorted(again.items()) == [(b"d", b"4"), (b"f", b"7")]
        assert again.checkpoint() == b"cp5"
        again.close()


def test_a_state_file_that_is_not_a_database_is_wiped_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.mkdir()
    (path / "state.sqlite").write_bytes(b"this is not sqlite" * 100)
    backend = open_backend("sqlite", path)
    assert list(backend.items()) == []
    assert backend.checkpoint() is None
    backend.close()


def test_auto_picks_rocksdb_when_installed_and_memory_on_the_memory_broker() -> None:
    assert backend_kind("auto", "local://.spate") == "rocksdb"
    assert backend_kind("auto", "memory://x") == "memory"
    assert backend_kind("sqlite", "memory://x") == "sqlite"


def run(topic: str, first: int, last: int) -> _Run:
    return _Run(topic, first, last, 1)


def test_a_restore_keeps_only_flushes_whose_offsets_were_committed() -> None:
    runs = [run("t", 0, 9), run("t", 10, 19), run("t", 20, 29)]
    assert surviving(runs, "t", committed=20) == [True, True, False]
    assert surviving(runs, "t", committed=0) == [False, False, False]


def test_a_flush_re_processed_after_a_crash_is_dropped_though_committed_later() -> None:
    # 10..19 and 20..29 reached the changelog, then a crash before their commit: the
    # next owner started again at 10 and committed through 34.
    runs = [run("t", 0, 9), run("t", 10, 19), run("t", 20, 29), run("t", 10, 24), run("t", 25, 34)]
    assert surviving(runs, "t", committed=35) == [True, False, False, True, True]


def test_flushes_of_another_source_topic_are_not_this_partitions() -> None:
    runs = [run("t", 0, 9), run("u", 0, 50), run("t", 10, 19)]
    assert surviving(runs, "t", committed=20) == [True, False, True]


def test_the_last_change_of_a_key_between_flushes_is_the_one_flushed() -> None:
    store = CachedStore("s", ManualClock())
    store.set_many({"g": 1, "h": 1})
    store.pending()
    store.delete("g")
    store.set("g", 2)
    store.set("h", 2)
    store.delete_many(["h"])
    store.set_many({"i": 3})
    store.delete("i")  # never flushed: nothing to tell the changelog
    pending = store.pending()
    assert (pending.keys, pending.values, sorted(pending.deleted)) == (["g"], [2], ["h"])
    store.delete("g")
    store.set_many({"g": 4})
    assert store.changes() == [("g", 4, None, False)]


def test_a_key_set_and_deleted_between_flushes_never_reaches_the_changelog() -> None:
    """A window opened and closed between two checkpoints costs the changelog nothing;
    a key the changelog holds still gets its tombstone, however often it came back."""
    clock = ManualClock()
    store = CachedStore("s", clock)
    store.set_many({"kept": 1, "again": 1})
    store.pending()
    store.set("a", 1)
    store.set_many({"b": 1, "c": 1})
    store.set("c", 2, ttl_s=1)
    store.delete("a")
    store.delete_many(["b", "kept"])
    store.delete("again")
    store.set("again", 2)
    store.delete_many(["again"])
    clock.advance(2)
    pending = store.pending()  # c expired unflushed: swept with no tombstone either
    assert (pending.keys, sorted(pending.deleted)) == ([], ["again", "kept"])
    assert len(store) == 0
