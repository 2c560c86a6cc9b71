"""Each adapter's own options, split from what passes to its client library.

``spate.connect(url, **options)`` mixes spate's settings (``lease_ttl_s``, ``clock``,
…) with the client library's (redis-py's ``socket_timeout``, nats-py's ``token``, …).
An adapter declares its settings once, as a frozen dataclass that inherits
:class:`AdapterOptions` and gives each field a parser (:func:`seconds`,
:func:`count`, :func:`choice`, :func:`injected`); :meth:`AdapterOptions.split` then
reads them the same way on every adapter: a keyword wins over the URL query, a value
is converted and checked with an error naming the option and the fix, and whatever
is not spate's is returned untouched for the adapter to pass on (or refuse).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

from spate.brokers.url import BrokerURL
from spate.errors import ConfigError

Parse = Callable[[Any], Any]
"""Turns a raw value (a query string or a keyword's value) into the option's value;
raises ValueError with what the value must be, e.g. "must be a number of seconds > 0"."""


def seconds(*, zero: bool = False) -> Mapping[str, Any]:
    """A duration in seconds: positive, or also 0 when ``zero`` (which turns it off).

    None (as a keyword) stays None: the field's "not set, work it out" value.
    """

    def parse(raw: Any) -> float | None:
        if raw is None:
            return None
        problem = (
            "is not a number of seconds >= 0" if zero else "is not a positive number of seconds"
        )
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(problem) from None
        if value < 0 or (value == 0 and not zero):
            raise ValueError(problem)
        return value

    return {"parse": parse, "example": "10"}


def count() -> Mapping[str, Any]:
    """A whole number above 0."""

    def parse(raw: Any) -> int:
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ValueError("is not a whole number") from None
        if value <= 0:
            raise ValueError("must be > 0")
        return value

    return {"parse": parse, "example": "100"}


def choice(*values: str) -> Mapping[str, Any]:
    """One of ``values`` (case-insensitive)."""

    def parse(raw: Any) -> str:
        value = str(raw).lower()
        if value not in values:
            raise ValueError(f"is not one of {', '.join(values)}")
        return value

    return {"parse": parse, "example": values[0]}


class AdapterOptions:
    """Base of every adapter's options dataclass; see the module docstring."""

    adapter: ClassVar[str]
    """The adapter's name in error messages, e.g. "Redis"."""

    @classmethod
    def names(cls) -> frozenset[str]:
        """The option names spate owns on this adapter."""
        return frozenset(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def split(cls, url: BrokerURL, options: Mapping[str, Any]) -> tuple[Self, dict[str, Any]]:
        """spate's settings from keywords and the URL query, and the keywords left over.

        A keyword wins over the same name in the query. The query's other entries are
        left where they are: see :meth:`foreign_query`.
        """
        own: dict[str, Any] = {}
        passthrough = dict(options)
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            parse: Parse | None = field.metadata.get("parse")
            if field.name in passthrough:
                raw = passthrough.pop(field.name)
            elif parse is not None and field.name in url.query:
                raw = url.query[field.name]
            else:
                continue
            own[field.name] = raw if parse is None else cls._parse(field, parse, raw)
        return cls(**own), passthrough

    @classmethod
    def foreign_query(cls, url: BrokerURL) -> dict[str, str]:
        """The URL query without spate's own options: what the client library may take."""
        own = cls.names()
        return {name: value for name, value in url.query.items() if name not in own}

    def as_kwargs(self) -> dict[str, Any]:
        """The options as keyword arguments (shallow: an injected clock stays itself)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def _parse(cls, field: dataclasses.Field[Any], parse: Parse, raw: Any) -> Any:
        try:
            return parse(raw)
        except ValueError as exc:
            example = field.metadata["example"]
            raise ConfigError(
                f"{cls.adapter} option {field.name}={raw!r} {exc}; give e.g. {field.name}={example}"
            ) from None
