"""The redis-py client behind a RedisBroker: URL and options, retries, scripts.

Everything that talks to Redis goes through :class:`RedisClient`, which maps
redis-py's exceptions onto :mod:`spate.errors` by :mod:`spate.brokers.redis.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import redis.asyncio as aioredis
from redis import exceptions as rex

from spate.brokers.options import AdapterOptions, seconds
from spate.brokers.redis.errors import spate_errors, to_spate_error
from spate.brokers.redis.scripts import ALL as ALL_SCRIPTS
from spate.brokers.url import BrokerURL
from spate.clock import SYSTEM_CLOCK, Clock
from spate.errors import (
    ConfigError,
    ConnectError,
    SpateError,
)
from spate.outage import Outage, backoff_s

DEFAULT_PORT = 6379
logger = logging.getLogger("spate.brokers.redis")


@dataclass(frozen=True, kw_only=True, slots=True)
class RedisOptions(AdapterOptions):
    """spate's own settings for the Redis adapter; everything else goes to redis-py.

    Each can be given as a keyword to ``spate.connect`` or in the URL query.
    """

    adapter: ClassVar[str] = "Redis"

    dedup_window_s: float = field(default=3600.0, metadata=seconds())
    """How long a published ``dedup_id`` is remembered (effectively-once window)."""
    lease_ttl_s: float = field(default=10.0, metadata=seconds())
    """Partition lease lifetime: how long a dead member's partitions stay unowned."""
    heartbeat_s: float | None = field(default=None, metadata=seconds())
    """How often a member renews its leases (default: a third of ``lease_ttl_s``)."""
    retention_interval_s: float = field(default=30.0, metadata=seconds(zero=True))
    """How often a started broker enforces topic retention; 0 turns it off."""
    reconnect_timeout_s: float | None = field(default=None, metadata=seconds(zero=True))
    """How long a command keeps retrying a lost connection before it fails for good
    (the worker then stops); None, the default, retries until the server is back."""
    clock: Clock = SYSTEM_CLOCK
    """Time for record timestamps, retention, lease deadlines and reconnect pauses
    (tests inject a :class:`~spate.clock.ManualClock`)."""


def redis_py_url(url: BrokerURL) -> str:
    """The URL redis-py should see: spate's own query options removed, db validated."""
    if len(url.hosts) != 1:
        raise ConfigError(
            f"broker URL {url.redacted!r}: Redis takes exactly one host:port "
            "(Sentinel and Cluster are not supported by this adapter)"
        )
    database = url.path.strip("/") or "0"
    if not database.isdigit():
        raise ConfigError(
            f"broker URL {url.redacted!r}: database {url.path!r} is not a number; "
            "write redis://host:port/0"
        )
    host, port = url.host_list(DEFAULT_PORT)[0]
    userinfo = ""
    if url.username is not None or url.password is not None:
        userinfo = quote(url.username or "", safe="")
        if url.password is not None:
            userinfo += ":" + quote(url.password, safe="")
        userinfo += "@"
    address = f"[{host}]" if ":" in host else host
    query = RedisOptions.foreign_query(url)
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{url.scheme}://{userinfo}{address}:{port}/{database}{suffix}"


def _cancel_requests() -> int:
    task = asyncio.current_task()
    return 0 if task is None else task.cancelling()


def _stop_if_cancelled_since(before: int, what: str) -> None:
    """Raise CancelledError if the current task was cancelled since ``before``.

    redis-py sometimes absorbs a cancellation that arrives while it finishes a command
    (it returns the reply, or raises a timeout error instead): a task being cancelled
    must still stop, or ``task.cancel(); await task`` would wait forever.
    """
    if _cancel_requests() > before:
        raise asyncio.CancelledError(what)


class RedisClient:
    """A redis-py asyncio client plus the scripts spate runs on it."""

    def __init__(
        self,
        url: BrokerURL,
        passthrough: Mapping[str, Any],
        *,
        reconnect_timeout_s: float | None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.display = url.redacted
        self.reconnect_timeout_s = reconnect_timeout_s
        self._clock = clock
        self._outage = Outage(logger, f"broker={url.redacted}")
        try:
            self.redis: aioredis.Redis = aioredis.Redis.from_url(
                redis_py_url(url), decode_responses=False, **passthrough
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"broker URL {url.redacted!r}: bad Redis option ({exc})") from exc

    @property
    def available(self) -> bool:
        """False from a command's first failed attempt to its first success after."""
        return self._outage.available

    async def start(self) -> None:
        """Check the server answers and load every script."""
        try:
            with spate_errors(f"connecting to {self.display}"):
                await self.redis.ping()
        except TypeError as exc:
            raise ConfigError(
                f"broker URL {self.display!r}: bad Redis option ({exc}); options other than "
                "spate's pass to redis.asyncio.Redis and must be its keyword arguments"
            ) from exc
        await self.load_scripts()

    async def load_scripts(self) -> None:
        """Load the scripts (again, after a server restart emptied its script cache)."""
        with spate_errors(f"loading scripts into {self.display}"):
            pipe = self.redis.pipeline(transaction=False)
            for script in ALL_SCRIPTS.values():
                pipe.script_load(script.text)
            await pipe.execute()

    async def run(self, build: Callable[[Any], object], what: str) -> list[Any]:
        """Run the commands ``build`` queues on a fresh pipeline, in one round trip.

        Per-command errors come back as exception objects in the result list.

        A lost connection is retried with backoff (:mod:`spate.outage`, paced by the
        broker's clock) until the server is back, or for up to ``reconnect_timeout_s``
        if one is set, so a restarted server is picked up by itself. Every command spate
        sends is safe to repeat: scripts check before they write, commits are
        cumulative, reads set the group cursor first, and a publish that did land
        before the connection broke is repeated as a duplicate (at-least-once) or
        dropped by its dedup id.
        """
        clock = self._clock
        limit = self.reconnect_timeout_s
        deadline = None if limit is None else clock.monotonic() + limit
        attempt = 0
        while True:
            try:
                results = await self._run_once(build, what)
            except ConnectError as exc:
                refused = isinstance(exc.__cause__, rex.AuthenticationError | rex.NoPermissionError)
                if refused or not exc.transient:
                    raise
                self._outage.failed(exc)
                delay = backoff_s(attempt, random.random())
                attempt += 1
                if deadline is not None and clock.monotonic() + delay > deadline:
                    raise ConnectError(
                        f"{exc}; gave up after reconnect_timeout_s={limit}",
                        transient=False,
                    ) from exc
                await clock.sleep(delay)
                continue
            self._outage.recovered()
            return results

    async def _run_once(self, build: Callable[[Any], object], what: str) -> list[Any]:
        """One attempt. A NOSCRIPT answer (the server restarted and forgot the scripts)
        reloads them and runs the pipeline once more: a refused command did nothing."""
        before = _cancel_requests()
        try:
            with spate_errors(what):
                for attempt in range(2):
                    pipe = self.redis.pipeline(transaction=False)
                    build(pipe)
                    results: list[Any] = await pipe.execute(raise_on_error=False)
                    if attempt or not any(isinstance(r, rex.NoScriptError) for r in results):
                        break
                    await self.load_scripts()
        except SpateError:
            _stop_if_cancelled_since(before, what)
            raise
        _stop_if_cancelled_since(before, what)
        return results

    async def close(self) -> None:
        with contextlib.suppress(rex.RedisError, OSError):
            await self.redis.aclose()


def raise_first(results: list[Any], what: str) -> None:
    """Raise the spate error for the first failed command of a pipeline, if any."""
    for result in results:
        if isinstance(result, BaseException):
            raise to_spate_error(result, what) from result
