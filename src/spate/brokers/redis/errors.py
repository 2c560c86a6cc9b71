"""redis-py exceptions mapped onto :mod:`spate.errors`, in one place.

Refused credentials and ACL denials are ConnectErrors that waiting cannot cure (not
transient); the error answers of spate's scripts (``SPATE_FENCED``,
``SPATE_NO_TOPIC``) become the errors they stand for.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from redis import exceptions as rex

from spate.brokers.error_mapping import raising_spate_errors
from spate.errors import (
    BrokerError,
    ConnectError,
    FencedError,
    SpateError,
    TopicNotFoundError,
)

_NATIVE_ERRORS = (rex.RedisError, OSError)


def to_spate_error(
    exc: BaseException, what: str, default: type[SpateError] = BrokerError
) -> SpateError:
    """The spate error for a redis-py (or socket) error raised while doing ``what``."""
    message = f"{what}: {exc}"
    if isinstance(exc, rex.AuthenticationError | rex.AuthorizationError):
        return ConnectError(
            f"{what}: Redis refused the credentials ({exc}); check user:password",
            transient=False,
        )
    if isinstance(exc, rex.ConnectionError | rex.TimeoutError | OSError):
        return ConnectError(f"{what}: cannot reach Redis ({exc})")
    if isinstance(exc, rex.ResponseError):
        text = str(exc)
        if text.startswith("SPATE_FENCED"):
            return FencedError(f"{what}: {text.removeprefix('SPATE_FENCED ')}")
        if text.startswith("SPATE_NO_TOPIC"):
            return TopicNotFoundError(f"{what}: the topic does not exist")
        if text.startswith("NOPERM") or text.startswith("NOAUTH"):
            return ConnectError(
                f"{what}: Redis refused the command ({text}); check the ACL", transient=False
            )
    return default(message)


def spate_errors(
    what: str, default: type[SpateError] = BrokerError
) -> AbstractContextManager[None]:
    """Turn every redis-py (or socket) error inside the block into a spate error."""
    return raising_spate_errors(_NATIVE_ERRORS, to_spate_error, what, default)
