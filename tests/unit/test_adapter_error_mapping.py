"""Every adapter maps its client library's errors under the same name (DESIGN §11)."""

from __future__ import annotations

import importlib
import inspect
import sqlite3

import pytest
from redis import exceptions as rex

from spate.errors import BrokerError, CommitError, ConnectError

ADAPTERS = ["kafka", "local", "nats", "redis"]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_to_spate_error_has_one_signature(adapter: str) -> None:
    module = importlib.import_module(f"spate.brokers.{adapter}.errors")
    signature = inspect.signature(module.to_spate_error)
    assert list(signature.parameters) == ["exc", "what", "default"]
    assert signature.parameters["default"].default is BrokerError


def test_the_default_class_is_used_for_errors_with_no_better_one() -> None:
    from spate.brokers.local.errors import to_spate_error as local
    from spate.brokers.redis.errors import to_spate_error as redis

    assert type(local(sqlite3.OperationalError("disk I/O error"), "db", CommitError)) is CommitError
    assert type(redis(rex.ResponseError("WRONGTYPE"), "commit", CommitError)) is CommitError
    assert type(redis(rex.ConnectionError("gone"), "commit", CommitError)) is ConnectError


@pytest.mark.parametrize("adapter", ["nats", "redis"])
def test_spate_errors_wraps_a_block(adapter: str) -> None:
    module = importlib.import_module(f"spate.brokers.{adapter}.errors")
    with pytest.raises(ConnectError) as caught, module.spate_errors("reach it", CommitError):
        raise ConnectionRefusedError("refused")
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert caught.value.transient
