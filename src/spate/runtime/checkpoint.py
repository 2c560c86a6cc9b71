"""The commit order of every delivery guarantee, kept in one place (DESIGN §6).

A batch becomes durable in this order, whatever the guarantee:

1. its outputs are sent (buffered by the producer);
2. the **pre-commit hooks** run, in the order they were added: what must be durable
   before the batch's offsets (state flushes, changelog records, dead letters) writes
   through the producer they are given — under exactly-once the batch's transactional
   producer, so those writes are inside the batch's transaction;
3. the producer is flushed (every output and hook write acknowledged), then
4. the offsets are committed.

A hook may return an :data:`OnDurable` callback, called once what it wrote is durable
(after the flush; under exactly-once after the transaction's commit) and never for a
batch that is dropped: counters of what was written (dead letters) count only what
really landed.

At-least-once and effectively-once do 3 and 4 as two steps, the flush and commit of a
batch overlapping the next batch's user code; exactly-once does them as one, the
transaction's commit carrying the offsets. A hook that raises means the batch is never
committed: its offsets are not queued (its transaction is aborted) and the error ends
the batch loop as a failing batch does.

The hooks run at the end of the batch, before the next batch starts, never in the
background: what they snapshot (a partition's store, its watermark) is exactly the
state after this batch.
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
batch's last offset per partition) is committed, through ``producer``; optionally
return what to call once those writes are durable."""

P = TypeVar("P", bound=Producer)


class Checkpoint(abc.ABC, Generic[P]):
    """Base of the delivery strategies: the order of a batch's end, once.

    A strategy says how outputs are sent (:meth:`_send`), what waits before they are
    (:meth:`_before_send`), how the batch's offsets become durable once the hooks have
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
        """The hooks, run in order at every batch's end; the worker passes its own
        list, so a hook added later (a store opened on assignment) runs from then on."""

    async def end_batch(
        self, outputs: Sequence[Output], through: Offsets, records: Sequence[Record]
    ) -> None:
        """The pipeline finished ``records``: send ``outputs``, run the pre-commit
        hooks, then start making ``through`` (the last offset per partition) durable."""
        await self._before_send()
        self._send(outputs)
        then: list[OnDurable] = []
        if self.pre_commit:
            try:
                for hook in self.pre_commit:
                    if (on_durable := await hook(self.producer, through)) is not None:
                        then.append(on_durable)
            except BaseException:
                await self._hook_failed()
                raise
        await self._durable(through, records, then)

    async def _before_send(self) -> None:
        return None

    def _send(self, outputs: Sequence[Output]) -> None:
        if headers := OUTPUT_HEADERS.get():
            send_traced(self.producer, outputs, headers)
        else:
            self.producer.send_many(outputs)

    @abc.abstractmethod
    async def _durable(
        self, through: Offsets, records: Sequence[Record], then: Sequence[OnDurable]
    ) -> None:
        """Flush, then commit ``through`` (now, or overlapping the next batch); call
        ``then`` once the batch's writes are durable (never if they are dropped)."""

    async def _hook_failed(self) -> None:
        """A hook raised: the batch's offsets are never committed."""
        return None
