"""Records an error policy sets aside during a batch — dead letters, records moved to a
retry topic — and sends at the batch's end, in its pre-commit hook (DESIGN §6, §7).

Sending them there, through the producer the checkpoint gives, is what makes them
durable with the batch's offsets: under exactly-once inside the batch's transaction
(a batch that aborts drops them with its outputs), under at-least-once acknowledged
before the offsets are committed. What they mean (a counter, a log line) is told to
``count`` and logged (one ``event=<event>`` line per topic) once the batch is durable,
never for a batch that is dropped — so a batch aborted and read again counts once.

Each record is sent with a ``dedup_id`` made of the processor, the event and the failed
record's coordinates and timestamp (the timestamp tells a re-created topic's record at
the same offset apart): the same on every replay, so a broker that deduplicates on
publish (NATS, Redis) drops the copy a replayed batch sends again — effectively-once
dead letters and retry moves, as for outputs. Other brokers ignore the id.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from spate.brokers.base import Producer
from spate.record import Headers, Record, TopicPartition
from spate.runtime.checkpoint import OnDurable

log = logging.getLogger("spate.runtime")

Letter = tuple[str, bytes, bytes | None, Headers, str]
"""(topic, value, key, headers, dedup id) of one record set aside."""


class Outbox:
    """One batch's set-aside records, sent by :meth:`write`, the pre-commit hook."""

    def __init__(
        self, processor: str, event: str, level: int, count: Callable[[int], None]
    ) -> None:
        self.processor = processor
        self.event = event
        self.level = level
        self.count = count
        self.pending: list[Letter] = []
        """This batch's records, not yet sent."""

    def add(self, topic: str, failed: Record, headers: Headers) -> None:
        """Set ``failed`` aside for ``topic``: its value and key with ``headers``."""
        dedup_id = (
            f"{self.processor}/{self.event}/{failed.topic}/{failed.partition}/"
            f"{failed.offset}/{failed.timestamp_ms}"
        )
        self.pending.append((topic, failed.value, failed.key, headers, dedup_id))

    def discard(self) -> None:
        """Forget the records of a batch that will not be committed."""
        self.pending.clear()

    async def write(
        self, producer: Producer, through: Mapping[TopicPartition, int]
    ) -> OnDurable | None:
        """The pre-commit hook: send this batch's records through ``producer``."""
        if not self.pending:
            return None
        pending, self.pending = self.pending, []
        send = producer.send
        for topic, value, key, headers, dedup_id in pending:
            send(topic, value, key=key, headers=headers, dedup_id=dedup_id)
        return lambda: self._durable(pending)

    def _durable(self, letters: Sequence[Letter]) -> None:
        self.count(len(letters))
        for topic, count in Counter(letter[0] for letter in letters).items():
            log.log(
                self.level,
                "event=%s processor=%s count=%d topic=%s",
                self.event,
                self.processor,
                count,
                topic,
            )
