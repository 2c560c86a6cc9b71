"""nats-py exceptions mapped onto :mod:`spate.errors`, in one place.

Every call into nats-py from this package runs inside :func:`spate_errors`, so no
``nats`` exception reaches user code: connection trouble becomes ConnectError,
everything else the error class the caller names, with the original as ``__cause__``.

A nats-py timeout is also a ``TimeoutError``, hence an ``OSError``: it is checked
first, because an operation that timed out (an ack, a publish, a KV read while the
server restarts) is the caller's error class, marked transient, not a lost connection.
Refused credentials and a client closed for good are ConnectErrors that waiting
cannot cure (not transient), so a worker stops on them instead of retrying forever.
"""

from __future__ import annotations

import ssl
from contextlib import AbstractContextManager

import nats.errors
import nats.js.errors

from spate.brokers.error_mapping import raising_spate_errors
from spate.errors import BrokerError, ConnectError, SpateError

_PERMANENT_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.AuthorizationError,
    nats.errors.SecureConnFailedError,
    nats.errors.SecureConnRequiredError,
    nats.errors.SecureConnWantedError,
    nats.errors.InvalidUserCredentialsError,
)
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    *_PERMANENT_CONNECTION_ERRORS,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionReconnectingError,
    OSError,
)

_NATIVE_ERRORS = (TimeoutError, nats.errors.Error, OSError)

# JetStream API error codes spate reacts to (nats-server's JSErrCodes).
STREAM_NOT_FOUND = 10059
CONSUMER_NOT_FOUND = 10014
WRONG_LAST_SEQUENCE = 10071
STREAM_NAME_IN_USE = 10058
SUBJECTS_OVERLAP = 10065


def api_code(exc: BaseException) -> int | None:
    """The JetStream ``err_code`` of an API error, if it is one."""
    if isinstance(exc, nats.js.errors.APIError):
        code = getattr(exc, "err_code", None)
        return int(code) if code is not None else None
    return None


def describe(exc: BaseException) -> str:
    """A short readable description of a nats-py error."""
    if isinstance(exc, nats.js.errors.APIError):
        text = getattr(exc, "description", None) or type(exc).__name__
        return f"{text} (code {getattr(exc, 'err_code', None)})"
    text = str(exc).strip()
    return text or type(exc).__name__


_REFUSED_BY_SERVER: tuple[type[BaseException], ...] = (
    nats.errors.AuthorizationError,
    nats.errors.InvalidUserCredentialsError,
    nats.errors.SecureConnRequiredError,
    nats.errors.SecureConnWantedError,
)
_REFUSAL_WORDS = ("authorization violation", "authentication")
# An EOF in the handshake is what a server restarting mid-handshake looks like too.
_TLS_OUTAGES = (ssl.SSLEOFError, ssl.SSLZeroReturnError)


def refusal_reason(exc: BaseException) -> str | None:
    """Why the server refused this client, if ``exc`` says so, else None.

    A refusal (bad credentials, an untrusted certificate, TLS required or wanted) is an
    answer, not an outage: retrying cannot fix it, so a first connection fails on it at
    once. nats-py reports the server's ``-ERR 'Authorization Violation'`` as a plain
    ``nats.errors.Error``, hence the look at the text.
    """
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, _TLS_OUTAGES):
        return f"TLS handshake failed: {describe(exc)}"
    text = describe(exc).removeprefix("nats: ").strip("'")
    if isinstance(exc, _REFUSED_BY_SERVER) or (
        isinstance(exc, nats.errors.Error) and any(w in text.lower() for w in _REFUSAL_WORDS)
    ):
        return f"the server refused the connection: {text}"
    return None


def to_spate_error(
    exc: BaseException, what: str, default: type[SpateError] = BrokerError
) -> SpateError:
    """The spate error for ``exc``, raised while doing ``what``."""
    if isinstance(exc, SpateError):
        return exc
    if isinstance(exc, TimeoutError):
        return default(f"NATS: cannot {what}: timed out", transient=True)
    if isinstance(exc, _CONNECTION_ERRORS):
        permanent = isinstance(exc, _PERMANENT_CONNECTION_ERRORS)
        return ConnectError(f"NATS: cannot {what}: {describe(exc)}", transient=not permanent)
    if isinstance(exc, nats.js.errors.NoStreamResponseError | nats.errors.NoRespondersError):
        # Also what JetStream answers for a moment after a restart, before its streams
        # are back: worth waiting for.
        return default(
            f"NATS: cannot {what}: no JetStream stream answered (is the topic there?)",
            transient=True,
        )
    return default(f"NATS: cannot {what}: {describe(exc)}")


def spate_errors(
    what: str, default: type[SpateError] = BrokerError
) -> AbstractContextManager[None]:
    """Re-raise any nats-py (or socket/timeout) error as a spate error."""
    return raising_spate_errors(_NATIVE_ERRORS, to_spate_error, what, default)
