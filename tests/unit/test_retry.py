"""Retry: its validation, its delay schedule (a pure function) and retries in place
through the Retrier, on a manual clock or a recorded blocking sleep: nothing sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from spate import ManualClock, Retry
from spate.errors import ConfigError
from spate.runtime.retrying import Retrier


def test_delays_double_from_backoff_up_to_the_cap_without_jitter() -> None:
    retry = Retry(attempts=8, backoff_s=0.5, max_backoff_s=6.0, jitter=0.0)
    assert [retry.delay_s(n, 0.99) for n in range(1, 8)] == [0.5, 1, 2, 4, 6, 6, 6]


def test_jitter_takes_a_random_share_of_the_wait() -> None:
    retry = Retry(backoff_s=2.0, max_backoff_s=10.0, jitter=0.5)
    assert retry.delay_s(2, 0.0) == 4.0
    assert retry.delay_s(2, 0.5) == 3.0
    assert 2.0 < retry.delay_s(2, 0.999) <= 4.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, r"attempts=0\) must be at least 1"),
        ({"attempts": 2.5}, r"attempts=2.5\) needs an int"),
        ({"backoff_s": -1}, r"backoff_s=-1\) needs a number of seconds"),
        ({"backoff_s": 5, "max_backoff_s": 1}, r"max_backoff_s=1\) is below backoff_s=5"),
        ({"jitter": 2}, r"jitter=2\) needs a number from 0 to 1"),
        ({"retry_on": ValueError}, r"retry_on=.*needs a tuple of exception classes"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Retry(**kwargs)


def test_retry_is_frozen_and_keyword_only() -> None:
    retry = Retry(attempts=2)
    with pytest.raises(AttributeError):
        retry.attempts = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Retry(2)  # type: ignore[call-arg]


class Flaky:
    """Raises ``exc`` for the first ``failures`` calls, then returns the value doubled."""

    def __init__(self, failures: int, exc: type[Exception] = ValueError) -> None:
        self.failures = failures
        self.exc = exc
        self.calls = 0

    def __call__(self, value: int) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"call {self.calls}")
        return value * 2


def test_no_retry_and_no_timeout_leave_the_function_unwrapped() -> None:
    fn = Flaky(0)
    assert Retrier("p", None, None, ManualClock()).wrap(fn) is fn


def test_a_plain_function_is_retried_after_the_scheduled_blocking_waits() -> None:
    waits: list[float] = []
    retry = Retry(attempts=3, backoff_s=1.0, jitter=0.0)
    retrier = Retrier("p", retry, None, ManualClock(), blocking_sleep=waits.append)
    fn = Flaky(2)
    assert retrier.wrap(fn)(21) == 42
    assert (fn.calls, waits, retrier.retries) == (3, [1.0, 2.0], 2)


def test_exhausted_attempts_raise_the_last_error_and_tell_the_attempts() -> None:
    retrier = Retrier(
        "p", Retry(attempts=3, backoff_s=0), None, ManualClock(), blocking_sleep=print
    )
    with pytest.raises(ValueError, match="call 3"):
        retrier.wrap(Flaky(5))(1)
    assert (retrier.take_attempts(), retrier.take_attempts(), retrier.retries) == (3, 1, 2)


def test_errors_outside_retry_on_fail_at_once() -> None:
    retrier = Retrier("p", Retry(attempts=5, retry_on=(KeyError,)), None, ManualClock())
    fn = Flaky(1)
    with pytest.raises(ValueError):
        retrier.wrap(fn)(1)
    assert (fn.calls, retrier.take_attempts(), retrier.retries) == (1, 1, 0)


async def test_an_async_function_waits_on_the_injected_clock() -> None:
    clock = ManualClock()
    retrier = Retrier("p", Retry(attempts=3, backoff_s=5.0, jitter=0.0), None, clock)
    flaky = Flaky(2)

    async def fn(value: int) -> int:
        return flaky(value)

    call = asyncio.ensure_future(retrier.wrap(fn)(4))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not call.done()
    assert flaky.calls == 1
    clock.advance(5.0)
    for _ in range(3):
        await asyncio.sleep(0)
    assert not call.done()
    assert flaky.calls == 2  # the second wait is 10 s
    clock.advance(10.0)
    assert await call == 8
    assert retrier.retries == 2


async def test_timeout_cancels_a_hung_async_call_and_counts_as_a_failure() -> None:
    cancelled = asyncio.Event()

    async def hang(value: int) -> int:
        try:
            await asyncio.sleep(3600)
        finally:
            cancelled.set()
        return value

    retrier = Retrier("p", None, 0.01, ManualClock())
    with pytest.raises(TimeoutError, match=r"timeout_s=0.01"):
        await retrier.wrap(hang)(1)
    assert cancelled.is_set()
    assert retrier.take_attempts() == 1


def test_timeout_leaves_plain_functions_alone_as_a_thread_cannot_be_cancelled() -> None:
    fn = Flaky(0)
    assert Retrier("p", None, 1.0, ManualClock()).wrap(fn) is fn
