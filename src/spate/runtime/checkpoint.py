"""The commit order of every delivery guarantee, kept in one place (DESIGN §6).

A **checkpoint** makes every batch finished since the last one durable, in this order,
whatever the guarantee:

1. each batch's outputs were sent when it ended (buffered by the producer);
2. the **pre-commit hooks** run, in the order they were added: what must be durable
   before the offsets (state flushes, changelog records, dead letters) writes through
   the producer they are given — under exactly-once the open transactional producer,
   so those writes are inside the checkpoint's transaction;
3. the producer is flushed (every output and hook write acknowledged), then
4. the offsets are committed: the last offset of each partition the checkpoint covers.

The worker asks for a checkpoint after a batch when the consumer has caught up (the
fetch returned less than a full batch), when ``commit_interval_s`` has passed since
the last one, and before it idles, loses partitions or stops. Under load a
checkpoint then covers many batches: a store's key changed by each of them is
written to its changelog once, and a window opened and closed between two checkpoints
never reaches it — Kafka Streams' ``commit.interval.ms``, Quix Streams'
``commit_interval``. A crash replays at most what the last checkpoint did not cover.

A hook may return an :data:`OnDurable` callback, called once what it wrote is durable
(after the flush; under exactly-once after the transaction's commit) and never for
work that is dropped: counters of what was written (dead letters) count only what
really landed.

At-least-once and effectively-once do 3 and 4 as two steps, the flush and commit of a
checkpoint overlapping the next batch's user code; exactly-once does them as one, the
transaction's commit carrying the offsets. A hook that raises means the checkpoint is
never committed (its transaction is aborted) and the error ends the batch loop as a
failing batch does. A batch whose pipeline raised drops every batch since the last
checkpoint with it (:meth:`Checkpoint._drop_open`): their state changes are mixed in
the stores with the failed batch's, so none of them may be committed; they are read
again.

The hooks run between batches, never in the background: what they snapshot (a
partition's store, its watermark) is exactly the state after the last batch.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

from spate.brokers.base import Consumer, Producer
from spate.observability.tracing import OUTPUT_HEADERS, send_traced
from spate.record import Record, TopicPartition
from spate.runtime.stats import ProcessorStats
from spate.streams.stages import Output

Offsets = Mapping[TopicPartition, int]

OnDurable = Callable[[], None]
"""Called once the writes of the hook that returned it are durable."""

PreCommit = Callable[[Producer, Offsets], Awaitable[OnDurable | None]]
"""``hook(producer, through)``: write what must be durable before ``through`` (the
checkpoint's last offset per partition) is committed, through ``producer``; optionally
return what to call once those writes are durable."""

P = TypeVar("P", bound=Producer)


class Checkpoint(abc.ABC, Generic[P]):
    """Base of the delivery strategies: the order of a checkpoint, once.

    A strategy says how outputs are sent (:meth:`_send`), what waits before they are
    (:meth:`_before_send`), how a checkpoint's offsets become durable once the hooks have
    written (:meth:`_durable`) and what a failed hook leaves to undo
    (:meth:`_hook_failed`).
    """

    def __init__(
        self,
        producer: P,
        consumer: Consumer,
        stats: ProcessorStats,
        *,
        pre_commit: Sequence[PreCommit] = (),
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.stats = stats
        self.pre_commit = pre_commit
        """The hooks, run in order at every checkpoint; the worker passes its own
        list, so a hook added later (a store opened on assignment) runs from then on."""
        self._through: dict[TopicPartition, int] = {}
        """The last offset per partition of the batches ended since the last checkpoint."""
        self._open_batches = 0
        """How many batches ended since the last checkpoint."""

    async def end_batch(
        self, outputs: Sequence[Output], through: Offsets, records: Sequence[Record]
    ) -> None:
        """The pipeline finished ``records``: send ``outputs`` and remember ``through``
        (the last offset per partition) for the next :meth:`checkpoint`."""
        await self._before_send()
        self._send(outputs)
        self._through.update(through)
        self._open_batches += 1

    async def checkpoint(self) -> None:
        """Run the pre-commit hooks, then start making every batch ended since the last
        checkpoint durable (its offsets: the last of each partition)."""
        if not self._open_batches:
            return
        through = self._through
        self._through = {}
        self._open_batches = 0
        then: list[OnDurable] = []
        if self.pre_commit:
            try:
                for hook in self.pre_commit:
                    if (on_durable := await hook(self.producer, through)) is not None:
                        then.append(on_durable)
            except BaseException:
                await self._hook_failed()
                raise
        await self._durable(through, then)

    def _drop_open(self) -> None:
        """Forget the batches ended since the last checkpoint: never commit them."""
        self._through = {}
        self._open_batches = 0

    async def _before_send(self) -> None:
        return None

    def _send(self, outputs: Sequence[Output]) -> None:
        if headers := OUTPUT_HEADERS.get():
            send_traced(self.producer, outputs, headers)
        else:
            self.producer.send_many(outputs)

    @abc.abstractmethod
    async def _durable(self, through: Offsets, then: Sequence[OnDurable]) -> None:
        """Flush, then commit ``through`` (now, or overlapping the next batch); call
        ``then`` once the checkpoint's writes are durable (never if they are dropped)."""

    async def _hook_failed(self) -> None:
        """A hook raised: the checkpoint's offsets are never committed."""
        return None
