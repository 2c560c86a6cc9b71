"""The NATS connection: options from the URL and ``spate.connect(**options)``.

Options pass through to ``nats.connect`` untouched, so every authentication method
nats-py knows works: ``token=``, ``user=``/``password=``, ``nkeys_seed=`` (a seed
file), ``nkeys_seed_str=``, ``user_credentials=`` (a ``.creds`` file), ``tls=`` (an
``ssl.SSLContext``), ``tls_hostname=``. The URL may carry the common ones too::

    nats://user:secret@host:4222            user and password
    nats://s3cr3t@host:4222                 a token (user part without a password)
    tls://host:4222?tls_ca=ca.pem&tls_cert=c.pem&tls_key=k.pem
    nats://h1:4222,h2:4222?creds=/etc/app.creds&nkey_seed=/etc/app.nk&name=billing

Explicit keyword options win over the URL. Unlike nats-py's default, spate keeps
reconnecting forever (``max_reconnect_attempts=-1``): a worker should survive a broker
restart by itself; pass another value to give up sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nats.aio.client import Client
from nats.js import JetStreamContext

from spate.brokers.leased import DEFAULT_LEASE_TTL_S
from spate.brokers.nats.errors import refusal_reason, spate_errors
from spate.brokers.options import AdapterOptions, count, seconds
from spate.brokers.url import BrokerURL
from spate.clock import SYSTEM_CLOCK, Clock
from spate.errors import ConfigError, ConnectError

log = logging.getLogger("spate.nats")

DEFAULT_PORT = 4222

_QUERY_OPTIONS = {
    "token": "token",
    "creds": "user_credentials",
    "nkey_seed": "nkeys_seed",
    "name": "name",
    "tls_hostname": "tls_hostname",
}
_TLS_QUERY = ("tls_ca", "tls_cert", "tls_key")
_NKEY_OPTIONS = ("nkeys_seed", "nkeys_seed_str", "user_credentials")
_NATS_CONNECT_OPTIONS = frozenset(inspect.signature(Client.connect).parameters) - {"self"}


@dataclass(frozen=True, kw_only=True, slots=True)
class NatsOptions(AdapterOptions):
    """spate's own settings for the NATS adapter; every other option goes to nats.connect.

    Each can be given as a keyword to ``spate.connect`` or in the URL query.
    """

    adapter: ClassVar[str] = "NATS"

    lease_ttl_s: float = field(default=DEFAULT_LEASE_TTL_S, metadata=seconds())
    """Partition lease lifetime: how long a dead member's partitions stay unowned."""
    heartbeat_s: float | None = field(default=None, metadata=seconds())
    """How often a member renews its leases (default: a third of ``lease_ttl_s``)."""
    ack_wait_s: float = field(default=300.0, metadata=seconds())
    """JetStream's AckWait for the pull consumers spate creates."""
    max_ack_pending: int = field(default=100_000, metadata=count())
    """JetStream's MaxAckPending for the pull consumers spate creates."""
    request_timeout_s: float = field(default=10.0, metadata=seconds())
    """Timeout of one JetStream API request."""
    connect_timeout_s: float = field(default=10.0, metadata=seconds())
    """How long the first connection may take before start fails."""
    clock: Clock = SYSTEM_CLOCK
    """Time for lease deadlines, heartbeats and retry pauses (tests inject one)."""


def _tls_context(query: Mapping[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=query.get("tls_ca") or None)
    cert, key = query.get("tls_cert"), query.get("tls_key")
    if bool(cert) != bool(key):
        raise ConfigError("NATS URL: give tls_cert and tls_key together (client certificate)")
    if cert and key:
        context.load_cert_chain(cert, key)
    return context


def connect_options(parsed: BrokerURL, options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect`` from the URL and explicit options."""
    scheme = "tls" if parsed.scheme == "tls" else "nats"
    servers = [f"{scheme}://{host}:{port}" for host, port in parsed.host_list(DEFAULT_PORT)]
    result: dict[str, Any] = {
        "servers": servers,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        "error_cb": _log_error,
        "disconnected_cb": _log_disconnected,
        "reconnected_cb": _log_reconnected,
    }
    if parsed.username is not None and parsed.password is None:
        result["token"] = parsed.username
    elif parsed.username is not None:
        result["user"] = parsed.username
        result["password"] = parsed.password
    for query_name, value in parsed.query.items():
        if query_name in _QUERY_OPTIONS:
            result[_QUERY_OPTIONS[query_name]] = value
        elif query_name not in _TLS_QUERY:
            known = ", ".join(sorted([*_QUERY_OPTIONS, *_TLS_QUERY]))
            raise ConfigError(
                f"NATS URL {parsed.redacted!r}: unknown option {query_name!r}; known: {known} "
                "(pass anything else as a keyword to spate.connect)"
            )
    if any(name in parsed.query for name in _TLS_QUERY):
        result["tls"] = _tls_context(parsed.query)
    for name, value in options.items():
        if name not in _NATS_CONNECT_OPTIONS:
            raise ConfigError(
                f"NATS option {name!r} is neither a nats.connect() argument nor a spate option "
                f"({', '.join(sorted(NatsOptions.names()))}); check the spelling"
            )
        result[name] = value
    if any(name in result for name in _NKEY_OPTIONS) and importlib.util.find_spec("nkeys") is None:
        raise ConfigError(
            "NATS NKey and credentials-file authentication needs the nkeys package; "
            "install it with: pip install nkeys"
        )
    return result


async def _log_error(exc: Exception) -> None:
    log.debug("event=client_error error=%s", exc)


async def _log_disconnected() -> None:
    log.info("event=disconnected reconnect=unless_closed")


async def _log_reconnected() -> None:
    log.warning("event=reconnected")


async def _connect_unless_refused(
    client: Client, options: Mapping[str, Any], timeout_s: float
) -> None:
    """``client.connect`` within ``timeout_s``, or the server's refusal at once.

    nats-py retries a refused first connection like an unreachable one (forever, with
    spate's ``max_reconnect_attempts=-1``) and only tells the error callback, so the
    callback is watched here until the connection stands; after that it only forwards.
    """
    refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    forward = options.get("error_cb")

    async def on_error(exc: Exception) -> None:
        if not refused.done() and refusal_reason(exc) is not None:
            refused.set_result(exc)
        if forward is not None:
            await forward(exc)

    connecting = asyncio.ensure_future(client.connect(**{**options, "error_cb": on_error}))
    try:
        await asyncio.wait(
            (connecting, refused), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if refused.done():
            raise refused.result()
        if not connecting.done():
            raise TimeoutError
        connecting.result()
    finally:
        refused.cancel()
        if not connecting.done():
            connecting.cancel()
            await asyncio.wait((connecting,))


async def open_connection(
    options: Mapping[str, Any], redacted_url: str, timeout_s: float, connect_timeout_s: float
) -> tuple[Client, JetStreamContext]:
    """Connect within ``connect_timeout_s`` and check that JetStream is enabled.

    The first connection gets a deadline of its own because nats-py applies
    ``max_reconnect_attempts`` (forever, by spate's default) to it too: a wrong address
    must fail at start, not retry silently; refused credentials or an untrusted
    certificate fail at once, with the server's reason.
    """
    client = Client()
    try:
        await _connect_unless_refused(client, options, connect_timeout_s)
    except Exception as exc:
        with contextlib.suppress(Exception):
            await client.close()
        reason = refusal_reason(exc) or str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"no connection within {connect_timeout_s}s (is the address right?)"
        raise ConnectError(f"NATS: cannot connect to {redacted_url}: {reason}") from exc
    js = client.jetstream(timeout=timeout_s)
    try:
        with spate_errors(f"reach JetStream at {redacted_url}", ConnectError):
            await js.account_info()
    except ConnectError as exc:
        await client.close()
        raise ConnectError(
            f"NATS server at {redacted_url} has no JetStream (or this account may not use it); "
            "spate needs JetStream: start nats-server with -js or a jetstream {} block"
        ) from exc
    return client, js
