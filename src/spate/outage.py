"""Riding out a broker outage: when to try again, and what to log about it.

A restart, a failover or a network cut makes every call fail for a while; the
callers that wait it out (the runtime's processors, the Redis command retry, the
lease heartbeats) share the same habits, kept here once:

* :func:`backoff_s` — exponential backoff, capped, with jitter, as a pure function
  (tested without sleeping): many workers that lost the same broker must not all
  knock again at the same instant.
* :class:`Outage` — logs ``event=broker_unavailable`` once when the trouble starts
  and ``event=broker_available ... down_s=`` once when it ends, never per retry, and
  says whether the thing is up right now (what readiness reports).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from spate.clock import SYSTEM_CLOCK, Clock

BASE_S = 0.1
"""The first wait after a failure."""
CAP_S = 5.0
"""The longest wait between two attempts: how late a worker may notice the broker is back."""
JITTER = 0.5
"""The share of each wait drawn at random (0: none, 1: anywhere from 0 to the full wait)."""


def backoff_s(
    attempt: int,
    draw: float,
    *,
    base_s: float = BASE_S,
    cap_s: float = CAP_S,
    jitter: float = JITTER,
) -> float:
    """How long to wait before attempt ``attempt + 1`` (``attempt`` counts failures
    from 0); ``draw`` is a number in [0, 1) that picks the jitter.

    The wait doubles from ``base_s`` up to ``cap_s``, and the last ``jitter`` share of
    it is random: with the defaults, from half the wait to the full wait.
    """
    full = min(cap_s, base_s * 2.0 ** min(attempt, 64))
    return full * (1.0 - jitter * draw)


class Outage:
    """The availability of one thing a caller retries, as seen by that caller.

    ``failed`` returns how long to wait before trying again; ``recovered`` is cheap
    enough to call after every successful round (one attribute test when up).
    """

    def __init__(
        self,
        logger: logging.Logger,
        context: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._log = logger
        self._context = context
        self._clock = clock
        self._draw = draw
        self._down_since: float | None = None
        self.failures = 0
        """Failed attempts in the current outage (0 while up)."""

    @property
    def available(self) -> bool:
        return self._down_since is None

    def down_s(self) -> float:
        """How long the current outage has lasted (0 while up)."""
        if self._down_since is None:
            return 0.0
        return self._clock.monotonic() - self._down_since

    def failed(self, error: BaseException) -> float:
        """Note one failed attempt; the wait before the next one."""
        if self._down_since is None:
            self._down_since = self._clock.monotonic()
            self._log.warning(
                "event=broker_unavailable %s error=%s: %s",
                self._context,
                type(error).__name__,
                " ".join(str(error).split()),
            )
        delay = backoff_s(self.failures, self._draw())
        self.failures += 1
        return delay

    def recovered(self) -> None:
        """Note a successful attempt; logs the end of an outage if one was going on."""
        if self._down_since is None:
            return
        self._log.info(
            "event=broker_available %s down_s=%.1f attempts=%d",
            self._context,
            self.down_s(),
            self.failures,
        )
        self._down_since = None
        self.failures = 0
