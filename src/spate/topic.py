"""Topic: a named stream with its partition count, serdes and broker config."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from spate.errors import ConfigError
from spate.serde import Serde, serde_for

T = TypeVar("T")

_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,248}$")


def validate_topic_name(name: str) -> str:
    """Topic names every broker accepts: letters, digits, '.', '_' and '-'."""
    if not isinstance(name, str) or not _VALID_NAME.match(name):
        raise ConfigError(
            f"topic name {name!r} is not valid; use 1-249 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def new_incarnation() -> str:
    """A fresh ``TopicInfo.incarnation`` for a topic being created. Random rather than a
    counter or a clock: no process needs to know the previous one, and a broker restored
    from a backup cannot hand out an old value again."""
    return secrets.token_hex(6)


@dataclass(frozen=True, kw_only=True, slots=True)
class Topic(Generic[T]):
    """A topic as an App sees it. ``serde`` turns values into bytes and back."""

    name: str
    partitions: int = 1
    serde: Serde[T] = field(default_factory=lambda: serde_for())
    config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_topic_name(self.name)
        if not isinstance(self.partitions, int) or self.partitions < 1:
            raise ConfigError(
                f"topic {self.name!r}: partitions={self.partitions!r} must be an integer >= 1"
            )

    @classmethod
    def of(
        cls,
        name: str,
        *,
        partitions: int = 1,
        value_type: Any = None,
        serde: Serde[Any] | str | None = None,
        config: Mapping[str, str] | None = None,
    ) -> Topic[Any]:
        """Build a topic, choosing the serde from ``serde`` or ``value_type``."""
        return Topic(
            name=name,
            partitions=partitions,
            serde=serde_for(value_type, serde),
            config=dict(config or {}),
        )

    @property
    def dead_letter_name(self) -> str:
        return f"{self.name}.dlq"
