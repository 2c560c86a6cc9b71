"""How one stream becomes several processors (issue 13: ``group_by`` and joins).

A processor reads partitions that other workers may not own, so a stream whose key
changes (``group_by``) or that meets another stream by key (``join_stream``) has to
hop through an internal topic keyed by the new key: the records of one key then land
in one partition, read by one worker. Each hop ends the processor before it (its last
stage publishes to the internal topic) and starts another that reads the topic, in the
same App, with the same error handling: the user still writes one stream, and stats,
metrics and logs name each processor.

The Stream asks its :class:`Hops` (the App that made it) for both, so the stream
module never imports the App.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from spate.serde import Serde
from spate.topic import Topic

if TYPE_CHECKING:
    from spate.streams.stream import Stream


class Hops(Protocol):
    """Registers internal topics and the processors that read them (the App)."""

    def internal_topic(
        self, stream: Stream[Any], kind: str, partitions: int, serde: Serde[Any]
    ) -> Topic[Any]:
        """The topic ``<app>-<stream>-<kind>``, created on start like any declared one."""
        ...

    def continue_in(self, upstream: Stream[Any], suffix: str, topic: Topic[Any]) -> Stream[Any]:
        """A new processor ``<upstream>.<suffix>`` (group ``<group>.<suffix>``) reading
        ``topic``, with ``upstream``'s error handling (retries, dead letters)."""
        ...
