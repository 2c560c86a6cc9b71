"""Retries in place and handler timeouts, by wrapping a processor's user functions
once before its pipeline is compiled (DESIGN §7).

A processor without ``retry=`` or ``timeout_s=`` gets its functions back unwrapped,
so the compiled stages pay nothing. A wrapped function calls the user's again after
a failure, waiting :meth:`spate.Retry.delay_s` between calls: ``async`` functions on
the injected clock, plain ones (which run in the user thread, where nothing can be
awaited) with a blocking sleep. When the last attempt fails the exception goes on to
the stage's error handling, and :meth:`Retrier.take_attempts` tells the error policy
how many calls were made (the dead letter's ``spate-attempts``).

``timeout_s`` applies to ``async`` functions only: the call is cancelled when it is
exceeded, which counts as a failed attempt. A thread cannot be cancelled, so plain
functions (a handler's ``key=``, a plain ``map`` beside an async one) get their
retries but no timeout; ``App.handler`` refuses ``timeout_s`` for a plain handler
function rather than promise a timeout that would leave the hung call running.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Callable
from typing import Any

from spate.clock import Clock
from spate.retry import Retry
from spate.streams.stages import is_async_callable

NO_RETRY = Retry(attempts=1)


class Retrier:
    """Wraps one processor's user functions; counts the retries it made."""

    def __init__(
        self,
        processor: str,
        retry: Retry | None,
        timeout_s: float | None,
        clock: Clock,
        *,
        blocking_sleep: Callable[[float], None] = time.sleep,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.processor = processor
        self.retry = retry
        self.timeout_s = timeout_s
        self.clock = clock
        self.blocking_sleep = blocking_sleep
        self.draw = draw
        self.retries = 0
        """Calls made again after a failure, so far."""
        self._attempts = 1

    def take_attempts(self) -> int:
        """The calls made for the record that just failed (1 unless it was retried)."""
        attempts, self._attempts = self._attempts, 1
        return attempts

    def wrap(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``fn`` with retries and timeout, or ``fn`` itself when there are none."""
        if self.retry is None and self.timeout_s is None:
            return fn
        if is_async_callable(fn):
            return self._wrap_async(fn)
        return fn if self.retry is None else self._wrap_sync(fn)

    def _failed(self, exc: BaseException, failures: int) -> float | None:
        """The wait before the next call, or None when ``exc`` ends the record's attempts."""
        retry = self.retry or NO_RETRY
        if failures >= retry.attempts or not isinstance(exc, retry.retry_on):
            self._attempts = failures
            return None
        self.retries += 1
        return retry.delay_s(failures, self.draw())

    def _wrap_sync(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        @functools.wraps(fn)
        def call(value: Any) -> Any:
            failures = 0
            while True:
                try:
                    return fn(value)
                except Exception as exc:
                    failures += 1
                    wait = self._failed(exc, failures)
                    if wait is None:
                        raise
                    self.blocking_sleep(wait)

        return call

    def _wrap_async(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        timeout_s = self.timeout_s

        @functools.wraps(fn)
        async def call(value: Any) -> Any:
            failures = 0
            while True:
                try:
                    if timeout_s is None:
                        return await fn(value)
                    try:
                        return await asyncio.wait_for(fn(value), timeout_s)
                    except TimeoutError:
                        raise TimeoutError(
                            f"call did not finish within timeout_s={timeout_s}"
                        ) from None
                except Exception as exc:
                    failures += 1
                    wait = self._failed(exc, failures)
                    if wait is None:
                        raise
                    await self.clock.sleep(wait)

        return call
