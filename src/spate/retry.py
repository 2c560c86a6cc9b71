"""``Retry``: how a processor retries a failing record in place (DESIGN §7).

The delay before each retry is a pure function of the failure count and a random
draw (:meth:`Retry.delay_s`), so its schedule is tested without sleeping; the runtime
(:mod:`spate.runtime.retrying`) does the waiting, on the injected clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spate.errors import ConfigError
from spate.outage import backoff_s


@dataclass(frozen=True, kw_only=True, slots=True)
class Retry:
    """Call a failing user function again, up to ``attempts`` calls in all.

    Before retry ``n`` (``n`` from 1) spate waits ``backoff_s * 2**(n-1)``, capped at
    ``max_backoff_s``, of which the last ``jitter`` share is random (0: no jitter, 1:
    anything from 0 to the full wait), so many workers failing together do not retry
    in lockstep. Only exceptions that are instances of ``retry_on`` are retried; others
    fail the record at once. A retried record holds its partition while it waits: keep
    the total wait well under the broker's lease or session timeout.

    ``via_topics=[1, 10, 60]`` adds delayed retries that hold nothing: a record still
    failing after its ``attempts`` moves to ``<topic>.retry.1``, due 1 s later, and its
    partition flows on; a processor of that topic calls the function again when due
    (``attempts`` times, with the same backoff), then on to ``<topic>.retry.2`` (10 s),
    ``.retry.3`` (60 s), and only after the last to the dead-letter topic (or the
    ``on_error`` policy). Each delay must stay under the broker's poll or lease
    deadline (Kafka: ``max.poll.interval.ms``, 5 min by default).
    """

    attempts: int = 3
    backoff_s: float = 0.1
    max_backoff_s: float = 10.0
    jitter: float = 0.5
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    via_topics: Sequence[float] = ()

    def __post_init__(self) -> None:
        via = self.via_topics
        if isinstance(via, str | bytes) or not isinstance(via, Sequence):
            raise ConfigError(
                f"Retry(via_topics={via!r}) needs a list of delays in seconds, "
                "e.g. via_topics=[1, 10, 60]"
            )
        for delay in via:
            if isinstance(delay, bool) or not isinstance(delay, int | float) or delay <= 0:
                raise ConfigError(
                    f"Retry(via_topics={list(via)!r}): delay {delay!r} must be a number of "
                    "seconds > 0"
                )
        object.__setattr__(self, "via_topics", tuple(float(d) for d in via))
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ConfigError(f"Retry(attempts={self.attempts!r}) needs an int, e.g. attempts=3")
        if self.attempts < 1:
            raise ConfigError(
                f"Retry(attempts={self.attempts}) must be at least 1 (1: no retry, the first "
                "call is an attempt)"
            )
        for name in ("backoff_s", "max_backoff_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"Retry({name}={value!r}) needs a number of seconds >= 0")
        if self.max_backoff_s < self.backoff_s:
            raise ConfigError(
                f"Retry(max_backoff_s={self.max_backoff_s}) is below backoff_s="
                f"{self.backoff_s}; raise max_backoff_s or lower backoff_s"
            )
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, int | float):
            raise ConfigError(f"Retry(jitter={self.jitter!r}) needs a number from 0 to 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigError(f"Retry(jitter={self.jitter}) needs a number from 0 to 1")
        retry_on = self.retry_on
        if not isinstance(retry_on, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in retry_on
        ):
            raise ConfigError(
                f"Retry(retry_on={retry_on!r}) needs a tuple of exception classes, "
                "e.g. retry_on=(TimeoutError, ConnectionError)"
            )

    def delay_s(self, failures: int, draw: float) -> float:
        """The wait after the ``failures``-th failed call (from 1) before the next one;
        ``draw`` in [0, 1) picks the jitter."""
        return backoff_s(
            failures - 1,
            draw,
            base_s=self.backoff_s,
            cap_s=self.max_backoff_s,
            jitter=self.jitter,
        )
