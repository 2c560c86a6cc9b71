"""Python's cyclic garbage collector, tuned for batches while processors run.

A batch keeps every record, item and output it made alive until the batch ends (about
four container objects per record), so with Python's default young-generation
threshold (700 net allocations) the collector runs several times per batch, finds
nothing to free, and promotes the whole batch towards the old generation, whose full
collections then walk every object the process holds. On Kafka W1 that was about a
sixth of spate's CPU per record. Raising the threshold above what a batch holds lets
batches die by reference counting, as they do; collections still run, just not
several times inside every batch. Cyclic garbage waits for at most ``threshold``
net allocations, a few megabytes.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_active = 0
_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def young_threshold_at_least(threshold: int) -> Iterator[None]:
    """Raise the young-generation threshold to ``threshold`` (never lower it) for the
    duration; 0 leaves the collector alone. Nested and concurrent uses share one
    setting, and Python's own comes back when the last one ends."""
    global _active, _saved
    if threshold <= 0:
        yield
        return
    if _active == 0:
        _saved = gc.get_threshold()
    _active += 1
    young, middle, old = gc.get_threshold()
    if threshold > young:
        gc.set_threshold(threshold, middle, old)
    try:
        yield
    finally:
        _active -= 1
        if _active == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            _saved = None
