"""How nats-py's exceptions map onto spate.errors, without a server: a timeout is the
caller's error class and transient (an outage to ride out), not a lost connection;
refused credentials are a ConnectError that waiting cannot cure."""

from __future__ import annotations

import nats.errors
import nats.js.errors

from spate.brokers.nats.errors import to_spate_error
from spate.errors import CommitError, ConnectError, CoordinationError, PublishError


def test_a_timed_out_commit_is_a_transient_commit_error_not_a_connect_error() -> None:
    error = to_spate_error(nats.errors.TimeoutError(), "commit t[0] through 5", CommitError)
    assert type(error) is CommitError
    assert error.transient


def test_timeouts_keep_the_callers_class() -> None:
    assert type(to_spate_error(nats.errors.TimeoutError(), "publish", PublishError)) is PublishError
    lease = to_spate_error(TimeoutError(), "renew leases", CoordinationError)
    assert type(lease) is CoordinationError
    assert lease.transient


def test_a_lost_connection_is_a_transient_connect_error() -> None:
    for exc in (
        ConnectionRefusedError(111, "refused"),
        nats.errors.ConnectionReconnectingError(),
        nats.errors.NoServersError(),
        nats.errors.StaleConnectionError(),
    ):
        error = to_spate_error(exc, "fetch", CommitError)
        assert isinstance(error, ConnectError), exc
        assert error.transient, exc


def test_refused_credentials_and_a_closed_client_are_not_transient() -> None:
    for exc in (
        nats.errors.AuthorizationError(),
        nats.errors.ConnectionClosedError(),
        nats.errors.InvalidUserCredentialsError(),
    ):
        error = to_spate_error(exc, "connect", CommitError)
        assert isinstance(error, ConnectError), exc
        assert not error.transient, exc


def test_no_responders_while_jetstream_restarts_is_transient() -> None:
    error = to_spate_error(nats.errors.NoRespondersError(), "publish", PublishError)
    assert type(error) is PublishError
    assert error.transient
    other = to_spate_error(nats.js.errors.BadRequestError(), "publish", PublishError)
    assert not other.transient
