"""How a store's keys and values become bytes, in local backends and changelogs alike.

msgpack (msgspec): compact, fast, and the same bytes on every broker. A key decodes
back to what was stored, tuples included (msgpack has one array type, so arrays in a
key are made tuples again: a key must stay hashable). A value is plain data and comes
back as msgpack gives it: a tuple stored as a value reads back as a list.

An *entry* is what one key holds: ``[value, expires_at_ms]`` (None: never expires), so
a key's time to live survives a restore. An empty byte string is a tombstone: the key
was deleted (no msgpack document is empty).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import msgspec

from spate.errors import StateError
from spate.state.store import StoreKey

TOMBSTONE = b""

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
_entry_decoder = msgspec.msgpack.Decoder(tuple[Any, int | None])


def encode_key(key: StoreKey) -> bytes:
    """The bytes of ``key``; StateError naming the key if it is not a valid one."""
    if not isinstance(key, str | bytes | int | tuple) or isinstance(key, bool):
        raise StateError(
            f"store key {key!r} is a {type(key).__name__}; use a str, bytes, int or a "
            "tuple of those"
        )
    try:
        return _encoder.encode(key)
    except (TypeError, msgspec.EncodeError) as exc:
        raise StateError(f"store key {key!r} cannot be stored: {exc}") from exc


_KEY_TYPES = frozenset((str, bytes, int, tuple))


def encode_keys(keys: Sequence[StoreKey]) -> list[bytes]:
    """:func:`encode_key` of each key: one C-level pass when every key is of a valid
    type and encodes (a flush encodes every key a batch changed); otherwise key by key,
    so the error names the key that is wrong."""
    if _KEY_TYPES.issuperset(map(type, keys)):
        try:
            return list(map(_encoder.encode, keys))
        except (TypeError, msgspec.EncodeError):
            pass
    return [encode_key(key) for key in keys]


def encode_entries(
    values: Sequence[Any], expires_at_ms: Sequence[int | None] | None
) -> list[bytes]:
    """:func:`encode_entry` of each (value, expiry) pair (``expires_at_ms`` None: none
    expires), in one C-level pass; key by key only to name a value that cannot be stored."""
    # repeat(None) never ends, so these zips stop with ``values`` (strict=False).
    try:
        expiry: Any = repeat(None) if expires_at_ms is None else expires_at_ms
        return list(map(_encoder.encode, zip(values, expiry, strict=False)))
    except (TypeError, msgspec.EncodeError):
        expiry = repeat(None) if expires_at_ms is None else expires_at_ms
        return [encode_entry(v, at) for v, at in zip(values, expiry, strict=False)]


def decode_key(data: bytes) -> StoreKey:
    key = _decoder.decode(data)
    return _tuples(key) if isinstance(key, list) else key


def _tuples(items: list[Any]) -> tuple[Any, ...]:
    return tuple(_tuples(item) if isinstance(item, list) else item for item in items)


def encode_entry(value: Any, expires_at_ms: int | None) -> bytes:
    """The bytes of one key's value and expiry; StateError if the value is not plain data."""
    try:
        return _encoder.encode((value, expires_at_ms))
    except (TypeError, msgspec.EncodeError) as exc:
        raise StateError(
            f"store value {value!r} cannot be stored: {exc}; store plain data (None, "
            "bool, int, float, str, bytes, and lists, tuples and dicts of those)"
        ) from exc


def decode_entry(data: bytes) -> tuple[Any, int | None]:
    """(value, expires_at_ms) of an entry written by :func:`encode_entry`."""
    return _entry_decoder.decode(data)


def encode_meta(meta: dict[str, Any]) -> bytes:
    return _encoder.encode(meta)


def decode_meta(data: bytes) -> dict[str, Any]:
    meta = _decoder.decode(data)
    if not isinstance(meta, dict):
        raise msgspec.DecodeError(f"checkpoint is a {type(meta).__name__}, not a map")
    return meta
