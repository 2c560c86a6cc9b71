"""Serdes: how values become bytes and back.

JSON is the default and uses orjson; a typed topic (a msgspec ``Struct``, a dataclass,
or any type msgspec understands) decodes straight into that type with msgspec, which
validates as it parses. The json module is never used on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import orjson

from spate.errors import ConfigError, SerdeError

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Serde(Protocol[T]):
    """Turns values of one type into bytes and back. ``decode`` raises SerdeError."""

    name: str

    def encode(self, value: T) -> bytes: ...

    def decode(self, data: bytes) -> T: ...


class JsonSerde:
    """Untyped JSON with orjson: dicts, lists, numbers, strings."""

    name = "json"
    fast_decode = staticmethod(orjson.loads)
    fast_encode = staticmethod(orjson.dumps)

    def encode(self, value: Any) -> bytes:
        try:
            return orjson.dumps(value)
        except TypeError as exc:
            raise SerdeError(f"cannot encode {type(value).__name__} as JSON: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SerdeError(f"not valid JSON: {exc}") from exc


class TypedJsonSerde(Generic[T]):
    """JSON decoded into ``value_type`` and validated by msgspec."""

    def __init__(self, value_type: type[T]) -> None:
        self.value_type = value_type
        self.name = f"json[{getattr(value_type, '__name__', repr(value_type))}]"
        try:
            self._decoder = msgspec.json.Decoder(value_type)
        except TypeError as exc:
            raise ConfigError(
                f"value_type {value_type!r} cannot be decoded from JSON: {exc}; use a "
                "msgspec Struct, a dataclass, a TypedDict or a builtin type"
            ) from exc
        self._encoder = msgspec.json.Encoder()
        self.fast_decode = self._decoder.decode
        self.fast_encode = self._encoder.encode

    def encode(self, value: T) -> bytes:
        try:
            return self._encoder.encode(value)
        except (TypeError, msgspec.EncodeError) as exc:
            raise SerdeError(f"cannot encode {type(value).__name__} as JSON: {exc}") from exc

    def decode(self, data: bytes) -> T:
        try:
            return self._decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise SerdeError(f"not a valid {self.name}: {exc}") from exc


def fast_decoder(serde: Serde[T]) -> Callable[[bytes], T]:
    """The quickest way to decode one value of ``serde``, for a whole batch at a time.

    A serde may offer ``fast_decode``: its library's own function, without the
    translation to :class:`SerdeError` (a Python frame per record that a batch of
    good records does not need). It may raise anything on bad input; the runtime
    then decodes that batch record by record with ``decode`` for the precise error.
    """
    fast: Callable[[bytes], T] | None = getattr(serde, "fast_decode", None)
    return fast if fast is not None else serde.decode


def fast_encoder(serde: Serde[T]) -> Callable[[T], bytes]:
    """``fast_decoder``'s counterpart for ``encode`` (``fast_encode``)."""
    fast: Callable[[T], bytes] | None = getattr(serde, "fast_encode", None)
    return fast if fast is not None else serde.encode


class StrSerde:
    """UTF-8 text."""

    name = "str"

    def encode(self, value: str) -> bytes:
        try:
            return value.encode()
        except AttributeError as exc:
            raise SerdeError(f"expected str, got {type(value).__name__}") from exc

    def decode(self, data: bytes) -> str:
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise SerdeError(f"not valid UTF-8: {exc}") from exc


class BytesSerde:
    """Raw bytes, passed through untouched."""

    name = "raw"

    def encode(self, value: bytes) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise SerdeError(f"expected bytes, got {type(value).__name__}")
        return bytes(value)

    def decode(self, data: bytes) -> bytes:
        return data


_NAMED: dict[str, Serde[Any]] = {
    "json": JsonSerde(),
    "str": StrSerde(),
    "raw": BytesSerde(),
    "bytes": BytesSerde(),
}


def serde_for(value_type: Any = None, serde: Serde[Any] | str | None = None) -> Serde[Any]:
    """The serde a topic uses: an explicit one, a named one, or JSON for ``value_type``."""
    if serde is not None:
        if isinstance(serde, str):
            try:
                return _NAMED[serde]
            except KeyError:
                raise ConfigError(
                    f"serde {serde!r} is unknown; use one of {', '.join(sorted(_NAMED))} "
                    "or pass an object with encode() and decode()"
                ) from None
        return serde
    if value_type is None or value_type in (dict, list, Any, object):
        return _NAMED["json"]
    if value_type is str:
        return _NAMED["str"]
    if value_type is bytes:
        return _NAMED["raw"]
    return TypedJsonSerde(value_type)


def encode_key(key: Any) -> bytes | None:
    """Keys as bytes: str as UTF-8, bytes as they are, anything else as compact JSON.

    One function for every broker keeps the partition of a key the same everywhere.
    """
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key).encode()
    try:
        return orjson.dumps(key)
    except TypeError as exc:
        raise SerdeError(f"cannot use {type(key).__name__} as a key: {exc}") from exc
