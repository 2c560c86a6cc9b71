"""confluent-kafka errors → :mod:`spate.errors`, at the adapter boundary.

librdkafka reports trouble as ``KafkaException`` carrying a ``KafkaError`` code (or as
the error of a message/future). One table maps the codes that mean something to
spate's caller; everything else becomes the ``default`` class given by the call site,
with librdkafka's own message kept in the text and the original as ``__cause__``.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from spate.errors import (
    BrokerError,
    CapabilityError,
    ConfigError,
    ConnectError,
    FencedError,
    SpateError,
    TopicExistsError,
    TopicNotFoundError,
)

_BY_CODE: dict[int, type[SpateError]] = {
    KafkaError._TRANSPORT: ConnectError,
    KafkaError._ALL_BROKERS_DOWN: ConnectError,
    KafkaError._RESOLVE: ConnectError,
    KafkaError._AUTHENTICATION: ConnectError,
    KafkaError.SASL_AUTHENTICATION_FAILED: ConnectError,
    KafkaError.UNKNOWN_TOPIC_OR_PART: TopicNotFoundError,
    KafkaError._UNKNOWN_TOPIC: TopicNotFoundError,
    KafkaError._UNKNOWN_PARTITION: TopicNotFoundError,
    KafkaError.TOPIC_ALREADY_EXISTS: TopicExistsError,
    KafkaError._FENCED: FencedError,
    KafkaError.PRODUCER_FENCED: FencedError,
    KafkaError.INVALID_PRODUCER_EPOCH: FencedError,
    KafkaError.TRANSACTION_COORDINATOR_FENCED: FencedError,
    KafkaError.ILLEGAL_GENERATION: FencedError,
    KafkaError.UNKNOWN_MEMBER_ID: FencedError,
    KafkaError.FENCED_INSTANCE_ID: FencedError,
    KafkaError._ASSIGNMENT_LOST: FencedError,
    KafkaError._INVALID_ARG: ConfigError,
    KafkaError.INVALID_CONFIG: ConfigError,
    KafkaError.INVALID_PARTITIONS: ConfigError,
    KafkaError.INVALID_REPLICATION_FACTOR: ConfigError,
    KafkaError.POLICY_VIOLATION: ConfigError,
    KafkaError.INVALID_SESSION_TIMEOUT: ConfigError,
    KafkaError.GROUP_AUTHORIZATION_FAILED: ConfigError,
    KafkaError.TOPIC_AUTHORIZATION_FAILED: ConfigError,
    KafkaError._UNSUPPORTED_FEATURE: CapabilityError,
    KafkaError.UNSUPPORTED_VERSION: CapabilityError,
}


_REFUSED = (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
"""Connection errors that waiting cannot cure: a worker stops on them."""
_TIMEOUTS = (KafkaError._TIMED_OUT, KafkaError._MSG_TIMED_OUT, KafkaError.REQUEST_TIMED_OUT)
"""Requests that got no answer in time: an outage the runtime rides out."""


def error_of(exc: BaseException) -> KafkaError | None:
    """The ``KafkaError`` inside a confluent-kafka exception, if any."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def to_spate_error(
    exc: KafkaError | BaseException, what: str, default: type[SpateError] = BrokerError
) -> SpateError:
    """The spate error for ``exc`` (a KafkaError or exception), prefixed by ``what``.

    Use as ``raise to_spate_error(exc, "create topic 'x'") from exc``.
    """
    kafka_error = exc if isinstance(exc, KafkaError) else error_of(exc)
    if kafka_error is None:
        return default(f"{what}: {exc}")
    code = kafka_error.code()
    cls = _BY_CODE.get(code, default)
    transient = code not in _REFUSED and (cls is ConnectError or code in _TIMEOUTS)
    return cls(f"{what}: {kafka_error.str()} ({kafka_error.name()})", transient=transient)


def is_fencing(error: KafkaError) -> bool:
    """True when ``error`` means another member or producer owns the work now."""
    return _BY_CODE.get(error.code()) is FencedError


UNRECOVERABLE = (
    KafkaError.INVALID_SESSION_TIMEOUT,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
)
"""Errors librdkafka reports as non-fatal and retries forever, though no retry can
succeed without a configuration change: spate fails the consumer with them instead."""

TOPIC_GONE = (
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
)
"""What librdkafka reports, as a log-like error, when a subscribed topic is deleted."""
