"""Settings: arguments > ``SPATE_*`` environment variables > defaults.

This module and the CLI are the only places that read the environment. Every value
is validated when the settings are built, and a bad one raises ConfigError naming
the field (or the variable it came from) and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, cast, get_args

from spate.errors import ConfigError

Guarantee = Literal["at-least-once", "exactly-once"]
OffsetResetSetting = Literal["earliest", "latest"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["text", "json"]
StateBackend = Literal["auto", "rocksdb", "sqlite", "memory"]

DEFAULT_BROKER = "local://.spate"


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Runtime settings shared by the App, the workers and the CLI."""

    broker: str = DEFAULT_BROKER
    processing_guarantee: Guarantee = "at-least-once"
    batch_size: int = 1000
    """Most records one fetch returns and one pipeline pass handles."""
    fetch_timeout_s: float = 0.2
    """How long an idle fetch waits for the first record."""
    commit_interval_s: float = 1.0
    """Under load, how often outputs, state and offsets are made durable together (a
    checkpoint: DESIGN §6); a consumer that has caught up commits after every batch
    whatever this says. Longer: fewer commits and changelog writes, more replayed
    after a crash and, under exactly-once, outputs visible later. 0: after every batch."""
    offset_reset: OffsetResetSetting = "earliest"
    """Where a group with no committed offset starts."""
    workers: int = 1
    """Worker processes ``spate run`` starts when ``--workers`` is not given
    (``SPATE_WORKERS``); each runs every processor, and together they form one group
    per processor."""
    instance_id: str | None = None
    """A stable name for this process across restarts (a pod name, ``host-slot``),
    unique among the running ones. On Kafka it names the transactional producer and
    the static group member, so a restarted instance takes over its predecessor at
    once (see docs/kafka.md); unset, each process is new to the broker."""
    gc_threshold: int = 20_000
    """Python's young-generation GC threshold while processors run (0: leave it as
    it is); see :mod:`spate.runtime.garbage`."""
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"
    """``text``: ``time level logger event=name key=value ...`` lines; ``json``: one
    JSON object per line with those fields (see docs/observability.md)."""
    metrics_port: int | None = None
    """Where the HTTP server of ``/metrics``, ``/healthz``, ``/readyz`` and ``/status``
    listens (None: no server; 0: any free port, logged). With ``spate run --workers N``
    worker *i* listens on ``metrics_port + i``."""
    metrics_host: str = "127.0.0.1"
    """The address that server binds: loopback unless asked (``0.0.0.0`` for a pod)."""
    lag_interval_s: float = 5.0
    """How often each processor's group lag is asked from the broker while the
    metrics server or the stall watchdog runs."""
    stall_timeout_s: float = 60.0
    """How long a partition with lag may go without its committed offset moving before
    the stall watchdog logs ``event=partition_stalled`` (0: no watchdog)."""
    state_dir: str | None = None
    """Where stores keep their local state (``<state_dir>/<app>/...``; None:
    ``.spate/state``). A cache of the changelogs: wiping it costs a rebuild, not data."""
    state_backend: StateBackend = "auto"
    """The stores' local backend: ``rocksdb`` (the ``rocksdb`` extra), ``sqlite``,
    ``memory``, or ``auto``: rocksdb when installed, else sqlite; memory on memory://."""
    tracing: bool = False
    """OpenTelemetry spans per batch and per sampled record, and trace context taken
    from record headers (needs the ``tracing`` extra; see docs/observability.md)."""
    tracing_sample_ratio: float = 0.01
    """Share of records without a ``traceparent`` header that get a span of their own
    when tracing is on (records with one always do)."""

    def __post_init__(self) -> None:
        _check_choice("processing_guarantee", self.processing_guarantee, Guarantee)
        _check_choice("offset_reset", self.offset_reset, OffsetResetSetting)
        _check_choice("log_level", self.log_level, LogLevel)
        _check_choice("log_format", self.log_format, LogFormat)
        _check_choice("state_backend", self.state_backend, StateBackend)
        state_dir = self.state_dir
        if state_dir is not None and (not isinstance(state_dir, str) or not state_dir):
            raise ConfigError(
                f"state_dir={self.state_dir!r} must be a directory path such as .spate/state"
            )
        if not isinstance(self.broker, str) or not self.broker:
            raise ConfigError("broker must be a URL such as local://.spate or kafka://host:9092")
        _check_positive("batch_size", self.batch_size, int)
        _check_positive("fetch_timeout_s", self.fetch_timeout_s, float)
        interval = self.commit_interval_s
        if not isinstance(interval, int | float) or isinstance(interval, bool) or not interval >= 0:
            raise ConfigError(
                f"commit_interval_s={interval!r} must be a number of seconds >= 0 "
                "(0: commit after every batch)"
            )
        _check_positive("workers", self.workers, int)
        if self.instance_id is not None and not _INSTANCE_ID.fullmatch(str(self.instance_id)):
            raise ConfigError(
                f"instance_id={self.instance_id!r} must be 1-100 characters from "
                "a-z A-Z 0-9 . _ - (a pod or host name, say)"
            )
        if self.metrics_port is not None and (
            not isinstance(self.metrics_port, int)
            or isinstance(self.metrics_port, bool)
            or not 0 <= self.metrics_port <= 65535
        ):
            raise ConfigError(
                f"metrics_port={self.metrics_port!r} must be a TCP port 0..65535 "
                "(0: any free port), or None for no metrics server"
            )
        if not isinstance(self.metrics_host, str) or not self.metrics_host:
            raise ConfigError(
                f"metrics_host={self.metrics_host!r} must be an address such as 127.0.0.1"
            )
        _check_positive("lag_interval_s", self.lag_interval_s, float)
        if not isinstance(self.tracing, bool):
            raise ConfigError(f"tracing={self.tracing!r} must be True or False")
        ratio = self.tracing_sample_ratio
        if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 <= ratio <= 1:
            raise ConfigError(
                f"tracing_sample_ratio={ratio!r} must be a number from 0 (no record spans "
                "but for traced records) to 1 (a span per record)"
            )
        if (
            not isinstance(self.stall_timeout_s, int | float)
            or isinstance(self.stall_timeout_s, bool)
            or not self.stall_timeout_s >= 0
        ):
            raise ConfigError(
                f"stall_timeout_s={self.stall_timeout_s!r} must be a number of seconds >= 0 "
                "(0: no stall watchdog)"
            )
        if not isinstance(self.gc_threshold, int) or self.gc_threshold < 0:
            raise ConfigError(
                f"gc_threshold={self.gc_threshold!r} must be 0 (leave Python's collector "
                "alone) or a positive int"
            )


_INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")


def _check_choice(name: str, value: object, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ConfigError(
            f"{name}={value!r} is not valid; use one of {', '.join(map(repr, allowed))}"
        )


def _check_positive(name: str, value: object, kind: type) -> None:
    ok_type = isinstance(value, int | float) if kind is float else isinstance(value, int)
    if not ok_type or isinstance(value, bool) or cast(float, value) <= 0:
        raise ConfigError(f"{name}={value!r} must be a positive {kind.__name__}")


def _env_name(field_name: str) -> str:
    return "SPATE_" + field_name.upper()


def _parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``, in any case; ValueError otherwise."""
    word = text.lower()
    if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(text)
    return word in ("1", "true", "yes", "on")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "batch_size": int,
    "fetch_timeout_s": float,
    "commit_interval_s": float,
    "workers": int,
    "gc_threshold": int,
    "metrics_port": int,
    "lag_interval_s": float,
    "stall_timeout_s": float,
    "log_level": str.upper,
    "tracing": _parse_bool,
    "tracing_sample_ratio": float,
    "log_format": str.lower,
    "state_backend": str.lower,
}


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from ``overrides`` (None values ignored), then ``SPATE_*``, then defaults."""
    env = os.environ if environ is None else environ
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    for name in known:
        text = env.get(_env_name(name))
        if text is None or text == "":
            continue
        parser = _PARSERS.get(name, str)
        try:
            values[name] = parser(text.strip())
        except ValueError:
            raise ConfigError(
                f"environment variable {_env_name(name)}={text!r} is not a valid {name}"
            ) from None
    for name, value in (overrides or {}).items():
        if name not in known:
            raise ConfigError(
                f"unknown setting {name!r}; known settings: {', '.join(sorted(known))}"
            )
        if value is not None:
            values[name] = value
    try:
        return Settings(**values)
    except ConfigError as exc:
        origin = [
            n
            for n in values
            if n in str(exc) and _env_name(n) in env and n not in (overrides or {})
        ]
        if origin:
            raise ConfigError(f"{exc} (from environment variable {_env_name(origin[0])})") from None
        raise
