"""The group lease store on JetStream key-value buckets (DESIGN §5).

Two buckets:

* ``spate_members`` — one entry per group: ``{member: deadline_ms}``. A heartbeat is a
  read-modify-write with compare-and-set on the entry's revision, retried on conflict;
  members whose deadline passed are dropped as it is rewritten. The bucket has a TTL
  (``MEMBERS_TTL_S``), so a group nobody heartbeats any more disappears by itself.
* ``spate_leases`` — one entry per group and partition: ``{"m": member, "e": epoch,
  "d": deadline_ms}``. Acquiring writes ``epoch + 1`` with an update conditioned on the
  revision just read (create-if-absent for the first lease), so of two members racing
  for a free partition exactly one wins, and epochs only grow. This bucket has no TTL:
  an entry that expired away would restart its epoch at 1.

Deadlines are wall-clock milliseconds from the injected clock, so members on different
hosts need synchronised clocks (NTP); a skew shortens or lengthens a lease by as much.
Fencing does not depend on clocks: :meth:`NatsLeaseStore.holds` compares the stored
holder and epoch, which change only through compare-and-set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import nats.js.errors
import orjson
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from spate.brokers.nats.admin import stream_name
from spate.brokers.nats.errors import spate_errors
from spate.clock import SYSTEM_CLOCK, Clock
from spate.errors import CoordinationError
from spate.record import TopicPartition

MEMBERS_BUCKET = "spate_members"
LEASES_BUCKET = "spate_leases"
MEMBERS_TTL_S = 3600.0
_CAS_ATTEMPTS = 50
_KEY_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

T = TypeVar("T")


def escape_key(text: str) -> str:
    """``text`` as one key-value token: anything but letters, digits, '-', '_' as =XX."""
    if all(ch in _KEY_SAFE for ch in text) and text:
        return text
    return (
        "".join(ch if ch in _KEY_SAFE else "".join(f"={b:02X}" for b in ch.encode()) for ch in text)
        or "=00"
    )


def unescape_key(token: str) -> str:
    """The inverse of :func:`escape_key`."""
    if "=" not in token:
        return token
    out = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "=":
            if token[i + 1 : i + 3] != "00":
                out.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            out += token[i].encode()
            i += 1
    return out.decode()


def lease_key(group: str, tp: TopicPartition) -> str:
    return f"{escape_key(group)}.{stream_name(tp.topic, tp.partition)}"


class _Conflict(Exception):
    """A compare-and-set lost against another writer."""


class NatsLeaseStore:
    """:class:`spate.coordination.LeaseStore` on JetStream key-value buckets."""

    def __init__(self, js: JetStreamContext, clock: Clock = SYSTEM_CLOCK) -> None:
        self._js = js
        self._clock = clock
        self._members: KeyValue | None = None
        self._leases: KeyValue | None = None
        self._open_lock = asyncio.Lock()

    async def _buckets(self) -> tuple[KeyValue, KeyValue]:
        async with self._open_lock:
            if self._members is None or self._leases is None:
                with spate_errors("open the group buckets", CoordinationError):
                    self._members = await self._js.create_key_value(
                        KeyValueConfig(
                            bucket=MEMBERS_BUCKET,
                            history=1,
                            ttl=MEMBERS_TTL_S,
                            storage=StorageType.FILE,
                        )
                    )
                    self._leases = await self._js.create_key_value(
                        KeyValueConfig(bucket=LEASES_BUCKET, history=1, storage=StorageType.FILE)
                    )
            return self._members, self._leases

    @staticmethod
    async def _get(kv: KeyValue, key: str, what: str) -> tuple[dict[str, Any] | None, int]:
        """The entry's JSON value and revision; (None, 0) when absent."""
        try:
            with spate_errors(what, CoordinationError):
                entry = await kv.get(key)
        except CoordinationError as exc:
            if isinstance(exc.__cause__, nats.js.errors.KeyNotFoundError):
                return None, 0
            raise
        return orjson.loads(entry.value or b"null"), entry.revision or 0

    @staticmethod
    async def _put(kv: KeyValue, key: str, value: Any, revision: int, what: str) -> int:
        """Write ``value`` only if the entry is still at ``revision`` (0: absent)."""
        data = orjson.dumps(value)
        try:
            with spate_errors(what, CoordinationError):
                if revision == 0:
                    return await kv.create(key, data)
                return await kv.update(key, data, last=revision)
        except CoordinationError as exc:
            if isinstance(exc.__cause__, nats.js.errors.KeyWrongLastSequenceError):
                raise _Conflict from exc
            raise

    async def _retry(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        for _ in range(_CAS_ATTEMPTS):
            try:
                return await attempt()
            except _Conflict:
                await asyncio.sleep(0.005)
        raise CoordinationError(f"NATS: {what}: too many concurrent writers")

    async def heartbeat(self, group: str, member: str, ttl_s: float) -> list[str]:
        members_kv, _ = await self._buckets()
        key = escape_key(group)

        async def attempt() -> list[str]:
            doc, revision = await self._get(members_kv, key, f"read members of {group!r}")
            now = self._clock.time_ms()
            live = {m: d for m, d in (doc or {}).items() if d > now}
            live[member] = now + int(ttl_s * 1000)
            await self._put(members_kv, key, live, revision, f"heartbeat in {group!r}")
            return sorted(live)

        return await self._retry(attempt, f"heartbeat of {member!r} in group {group!r}")

    async def leave(self, group: str, member: str) -> None:
        members_kv, _ = await self._buckets()
        key = escape_key(group)

        async def attempt() -> None:
            doc, revision = await self._get(members_kv, key, f"read members of {group!r}")
            if doc is None or member not in doc:
                return
            del doc[member]
            await self._put(members_kv, key, doc, revision, f"leave group {group!r}")

        await self._retry(attempt, f"{member!r} leaving group {group!r}")

    async def members(self, group: str) -> list[str]:
        """The live members of ``group`` (for tools; does not heartbeat)."""
        members_kv, _ = await self._buckets()
        doc, _ = await self._get(members_kv, escape_key(group), f"read members of {group!r}")
        now = self._clock.time_ms()
        return sorted(m for m, d in (doc or {}).items() if d > now)

    async def acquire(
        self, group: str, tp: TopicPartition, member: str, ttl_s: float
    ) -> int | None:
        _, leases_kv = await self._buckets()
        key = lease_key(group, tp)
        lease, revision = await self._get(leases_kv, key, f"read the lease of {tp}")
        now = self._clock.time_ms()
        if lease is not None and lease["m"] and lease["m"] != member and lease["d"] > now:
            return None
        epoch = (lease["e"] if lease is not None else 0) + 1
        value = {"m": member, "e": epoch, "d": now + int(ttl_s * 1000)}
        try:
            await self._put(leases_kv, key, value, revision, f"acquire {tp} in {group!r}")
        except _Conflict:
            return None
        return int(epoch)

    async def _rewrite_if_held(
        self, group: str, tp: TopicPartition, epoch: int, member: str, deadline_ms: int, holder: str
    ) -> bool:
        _, leases_kv = await self._buckets()
        key = lease_key(group, tp)
        for _ in range(_CAS_ATTEMPTS):
            lease, revision = await self._get(leases_kv, key, f"read the lease of {tp}")
            if lease is None or lease["m"] != member or lease["e"] != epoch:
                return False
            value = {"m": holder, "e": epoch, "d": deadline_ms}
            try:
                await self._put(leases_kv, key, value, revision, f"write the lease of {tp}")
            except _Conflict:
                continue
            return True
        return False

    async def renew(
        self, group: str, leases: Mapping[TopicPartition, int], member: str, ttl_s: float
    ) -> set[TopicPartition]:
        deadline = self._clock.time_ms() + int(ttl_s * 1000)
        items = list(leases.items())
        held = await asyncio.gather(
            *(self._rewrite_if_held(group, tp, e, member, deadline, member) for tp, e in items)
        )
        return {tp for (tp, _), ok in zip(items, held, strict=True) if ok}

    async def release(self, group: str, leases: Mapping[TopicPartition, int], member: str) -> None:
        await asyncio.gather(
            *(self._rewrite_if_held(group, tp, e, member, 0, "") for tp, e in leases.items())
        )

    async def lease(self, group: str, tp: TopicPartition) -> tuple[str, int, int] | None:
        """``(holder, epoch, deadline_ms)`` of ``tp``'s lease; holder "" when released."""
        _, leases_kv = await self._buckets()
        lease, _ = await self._get(leases_kv, lease_key(group, tp), f"read the lease of {tp}")
        return None if lease is None else (str(lease["m"]), int(lease["e"]), int(lease["d"]))

    async def holds(self, group: str, tp: TopicPartition, member: str, epoch: int) -> bool:
        """Whether ``member`` still holds ``tp`` at ``epoch`` (nobody took it over)."""
        lease = await self.lease(group, tp)
        return lease is not None and lease[0] == member and lease[1] == epoch

    async def groups(self) -> list[str]:
        """Every group with live or recently live members."""
        members_kv, _ = await self._buckets()
        try:
            with spate_errors("list groups", CoordinationError):
                keys = await members_kv.keys()
        except CoordinationError as exc:
            if isinstance(exc.__cause__, nats.js.errors.NoKeysError):
                return []
            raise
        return sorted(unescape_key(k) for k in keys)
