"""The stores of one processor in one worker: opened and restored on assignment,
flushed at every commit, closed on revocation (DESIGN §8).

Each (source partition, store name) gets a :class:`~spate.state.store.CachedStore`
(what operators read and write) over a local :class:`~spate.state.backend.Backend`
(what survives a restart) and a changelog partition (what survives the machine).

**Flush** (a pre-commit hook, :mod:`spate.runtime.checkpoint`): a store's changes
since the last batch go to its changelog through the batch's producer (inside the
transaction under exactly-once) and to the local backend, with a checkpoint saying
which source offset the local state reflects and where a restore of it resumes in
the changelog. The local write comes before the batch's commit, so after a crash the
local state may be ahead of what was committed.

**Restore** (on assignment): the local state is trusted only if its checkpoint is
behind the group's committed offset; then the changelog is replayed from the
checkpoint's position, else the local state is wiped and rebuilt from the start of
the changelog. The replay keeps only what committed batches wrote
(:func:`~spate.state.changelog.restore`), so a batch whose commit failed never leaks
into a restored store. Meanwhile ``ProcessorStats.restoring`` holds the partition and
``/readyz`` says not ready.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import msgspec

from spate.brokers.base import Broker, Producer
from spate.clock import Clock
from spate.errors import SpateError
from spate.record import TopicPartition
from spate.runtime.stats import ProcessorStats
from spate.state.backend import Backend, store_path
from spate.state.changelog import changelog_topic, restore, send_flush
from spate.state.codec import (
    TOMBSTONE,
    decode_entry,
    decode_key,
    decode_meta,
    encode_entries,
    encode_keys,
    encode_meta,
)
from spate.state.local import open_backend
from spate.state.store import CachedStore, Store

log = logging.getLogger("spate.state")


Opened = dict[TopicPartition, dict[str, Store]]
"""Stores by name, per source partition."""


@dataclass(slots=True)
class _Open:
    """One opened (source partition, store)."""

    store: CachedStore
    backend: Backend
    changelog: str
    first: int
    """The first source offset the next flush covers."""
    resume_at: int
    """Where a restore from the local state begins in the changelog."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StateConfig:
    """Where and how one processor keeps its stores."""

    app: str
    processor: str
    group: str
    names: tuple[str, ...]
    backend: str
    """``memory``, ``sqlite`` or ``rocksdb`` (see :func:`spate.state.local.backend_kind`)."""
    root: Path
    """``<state_dir>/<app>``."""


class StateManager:
    """Opens, flushes and closes one worker's stores of one processor."""

    def __init__(
        self, config: StateConfig, broker: Broker, stats: ProcessorStats, clock: Clock
    ) -> None:
        self.config = config
        self.broker = broker
        self.stats = stats
        self.clock = clock
        self._open: dict[TopicPartition, dict[str, _Open]] = {}

    async def open(self, partitions: Sequence[TopicPartition]) -> Opened:
        """Open and restore every declared store of ``partitions``; their stores by name."""
        if not self.config.names or not partitions:
            return {}
        self.stats.restoring = self.stats.restoring | frozenset(partitions)
        try:
            committed = await self.broker.committed(self.config.group, partitions)
            for tp in partitions:
                self._open[tp] = {
                    name: await self._restore(tp, name, committed[tp]) for name in self.config.names
                }
                self.stats.restoring = self.stats.restoring - {tp}
        finally:
            self.stats.restoring = self.stats.restoring - frozenset(partitions)
            for tp in partitions:
                self.stats.restore_progress.pop(tp, None)
        return {tp: {n: o.store for n, o in self._open[tp].items()} for tp in partitions}

    async def reopen(self, partitions: Sequence[TopicPartition]) -> Opened:
        """Restore ``partitions`` again: their in-memory state holds changes of a batch
        that was not committed (an aborted transaction) and will be processed again."""
        self.close([tp for tp in partitions if tp in self._open])
        return await self.open(partitions)

    async def _restore(self, tp: TopicPartition, name: str, committed: int) -> _Open:
        config = self.config
        started = time.perf_counter()
        path = store_path(config.root, config.processor, name, tp.topic, tp.partition)
        backend = open_backend(config.backend, path)
        store = CachedStore(name, self.clock)
        changelog = changelog_topic(config.app, config.processor, name)
        start, local_source, reason = 0, -1, "no_local_state"
        try:
            meta = backend.checkpoint()
            if meta is not None:
                checkpoint = decode_meta(meta)
                local_source = int(checkpoint["source"])
                if local_source < committed:
                    for key, entry in backend.items():
                        store.load(decode_key(key), *decode_entry(entry))
                    start, reason = int(checkpoint["changelog"]), "local_checkpoint"
                else:
                    reason = "local_state_ahead_of_commit"
        except (msgspec.DecodeError, KeyError, ValueError, TypeError) as exc:
            reason = f"local_state_unreadable:{type(exc).__name__}"
        if reason != "local_checkpoint":
            backend.clear()
            store = CachedStore(name, self.clock)
            local_source = -1
        changes: dict[bytes, bytes | None] = {}

        def apply(key: bytes, entry: bytes) -> None:
            if entry == TOMBSTONE:
                store.unload(decode_key(key))
                changes[key] = None
            else:
                store.load(decode_key(key), *decode_entry(entry))
                changes[key] = entry

        try:
            restored = await restore(
                self.broker, changelog, tp, start, committed, apply, partial(self._progress, tp)
            )
        except BaseException:
            backend.close()
            raise
        source = max(local_source, restored.last_source)
        backend.write(changes, encode_meta({"changelog": restored.end, "source": source}))
        self.stats.state_restored += restored.records
        log.info(
            "event=state_restored app=%s processor=%s store=%s partition=%s records=%d "
            "keys=%d from=%s seconds=%.3f",
            config.app,
            config.processor,
            name,
            f"{tp.topic}[{tp.partition}]",
            restored.records,
            len(store),
            reason,
            time.perf_counter() - started,
        )
        return _Open(store, backend, changelog, committed, restored.end)

    def _progress(self, tp: TopicPartition, done: int, total: int) -> None:
        self.stats.restore_progress[tp] = (done, total)

    async def flush(self, producer: Producer, through: Mapping[TopicPartition, int]) -> None:
        """The pre-commit hook: every store's changes of the batch that ends at
        ``through`` go to its changelog (via ``producer``) and its local backend."""
        for tp, stores in self._open.items():
            last = through.get(tp)
            if last is None:
                continue
            for opened in stores.values():
                # Columns, encoded and buffered in C-level passes: a store of windows
                # changes most of its keys at every commit (DESIGN §10).
                pending = opened.store.pending()
                if not pending.keys and not pending.deleted:
                    continue
                keys = encode_keys(pending.keys)
                entries = encode_entries(pending.values, pending.expires_at_ms)
                deleted = encode_keys(pending.deleted)
                puts = dict(zip(keys, entries, strict=True))
                if deleted:
                    keys += deleted
                    entries += [TOMBSTONE] * len(deleted)
                send_flush(producer, opened.changelog, tp, opened.first, last, keys, entries)
                meta = encode_meta({"changelog": opened.resume_at, "source": last})
                opened.backend.write_changes(puts, deleted, meta)
                opened.first = last + 1

    async def hand_over(self, partitions: Sequence[TopicPartition]) -> None:
        """Before revoked partitions close, after their last commit: move each local
        checkpoint to the changelog's end, so a later restore here replays only what
        others wrote meanwhile, not this member's own writes. Everything before that
        end is this member's flushes (reflected locally) or writes never committed
        (which a restore skips anyway). Best effort: a broker that cannot tell the end
        leaves the checkpoint where it was, which is only slower."""
        for tp in partitions:
            for opened in self._open.get(tp, {}).values():
                try:
                    async with self.broker.reader(opened.changelog, tp.partition) as reader:
                        end = (await reader.bounds())[1]
                except SpateError as exc:
                    log.info(
                        "event=state_checkpoint_kept store=%s partition=%s error=%s",
                        opened.store.name,
                        f"{tp.topic}[{tp.partition}]",
                        exc,
                    )
                    continue
                meta = encode_meta({"changelog": end, "source": opened.first - 1})
                opened.backend.write({}, meta)
        self.close(partitions)

    def close(self, partitions: Sequence[TopicPartition] | None = None) -> None:
        """Close the stores of ``partitions`` (all when None): what they hold is in the
        changelog and the local backend since the last flush."""
        for tp in list(self._open) if partitions is None else partitions:
            for opened in self._open.pop(tp, {}).values():
                opened.backend.close()


def state_root(state_dir: str | None, app: str) -> Path:
    """``<state_dir>/<app>``; the default state_dir is ``.spate/state``."""
    return Path(state_dir if state_dir is not None else ".spate/state") / app
