"""The one exception tree of spate.

Every error spate raises, and every vendor error an adapter catches, ends up as one of
these, so user code can handle broker trouble without importing any client library::

    SpateError
    ├── ConfigError               bad settings, URLs, arguments: says which field and the fix
    ├── CapabilityError           the broker cannot give what was asked (e.g. exactly-once)
    ├── BrokerError               the broker or its storage failed
    │   ├── ConnectError          cannot reach / open the broker
    │   ├── TopicNotFoundError    the topic does not exist
    │   ├── TopicExistsError      the topic exists already
    │   ├── PublishError          a record was not acknowledged
    │   ├── CommitError           offsets were not committed
    │   └── ClosedError           the resource was used after close()
    ├── CoordinationError         group membership failed
    │   ├── LeaseLost             this member no longer owns a partition
    │   └── FencedError           a write carried a stale epoch: a newer owner exists
    ├── ProcessingError           a record could not be processed
    │   ├── SerdeError            a value could not be encoded or decoded
    │   │   └── DeserializationError  a stored record did not decode; names its location
    │   └── LateRecordError       a record came for a window (or join window) that had closed
    └── StateError                a store was used wrongly, or its state cannot be kept
        └── RecoveryError         a store could not be restored from its changelog

Wrap with ``raise ... from exc`` so the original cause stays visible.

``transient`` says whether waiting can cure the error: a broker that is restarting,
unreachable or slow to answer. The runtime rides those out (backing off, then starting
the processor again from its committed offsets) instead of stopping; a ConnectError is
transient unless the broker refused the credentials or the adapter gave up for good.
"""

from __future__ import annotations


class SpateError(Exception):
    """Base of every error spate raises."""

    transient: bool = False
    """True when the same call may succeed later without any change (an outage)."""

    def __init__(self, *args: object, transient: bool | None = None) -> None:
        super().__init__(*args)
        if transient is not None:
            self.transient = transient


class ConfigError(SpateError):
    """A setting, URL or argument is wrong; the message names the field and the fix."""


class CapabilityError(SpateError):
    """The broker cannot provide a requested feature or guarantee."""


class BrokerError(SpateError):
    """The broker, or the storage behind it, failed."""


class ConnectError(BrokerError):
    """The broker cannot be reached or opened."""

    transient = True


class TopicNotFoundError(BrokerError):
    """The named topic does not exist."""


class TopicExistsError(BrokerError):
    """A topic of that name exists already."""


class PublishError(BrokerError):
    """A record was not acknowledged by the broker."""


class CommitError(BrokerError):
    """Offsets could not be committed."""


class ClosedError(BrokerError):
    """A producer, consumer or broker was used after it was closed."""


class CoordinationError(SpateError):
    """Group membership or partition assignment failed."""


class LeaseLost(CoordinationError):
    """This member no longer owns a partition it worked on."""


class FencedError(CoordinationError):
    """A write carried a stale epoch: another member owns the partition now."""


class ProcessingError(SpateError):
    """A record could not be processed."""


class LateRecordError(ProcessingError):
    """A record's event time is behind its partition's watermark: the windows it belongs
    to were emitted already, or its join window closed (``join_stream``). Only dead
    letters carry it (``late="dead_letter"``)."""


class SerdeError(ProcessingError):
    """A value could not be encoded, or bytes could not be decoded."""


class DeserializationError(SerdeError):
    """A record's bytes could not be decoded.

    The message names topic, partition and offset so the record can be found again.
    """

    def __init__(self, message: str, *, topic: str, partition: int, offset: int) -> None:
        super().__init__(
            f"cannot decode record at topic={topic!r} partition={partition} offset={offset}: "
            f"{message}"
        )
        self.topic = topic
        self.partition = partition
        self.offset = offset


class StateError(SpateError):
    """A store key or value cannot be stored, or a store cannot be opened or written."""


class RecoveryError(StateError):
    """A store could not be restored from its changelog: the partition is not processed
    rather than processed from an empty or partial state."""
