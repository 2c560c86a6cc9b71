"""A broker that lacks a capability is refused up front with a CapabilityError that
names what was asked, by the CLI and TestApp alike; here on the embedded broker with
one flag turned off."""

from __future__ import annotations

import dataclasses
import sys
import uuid
from typing import Any

import pytest

from spate import App
from spate.brokers import schemes
from spate.brokers.base import Broker, CapabilityName
from spate.brokers.local import LocalBroker
from spate.brokers.url import BrokerURL
from spate.cli.main import main
from spate.errors import CapabilityError
from spate.testing.app import TestApp


def without(monkeypatch: pytest.MonkeyPatch, capability: CapabilityName) -> str:
    """A fresh ``memory://`` URL whose broker says it lacks ``capability``."""

    class Lacking(LocalBroker):
        capabilities = dataclasses.replace(LocalBroker.capabilities, **{capability: False})

    def factory(parsed: BrokerURL, options: dict[str, Any]) -> Broker:
        return Lacking.from_url(parsed, options)

    monkeypatch.setitem(schemes._SCHEMES, "memory", schemes.Scheme(factory, takes_path=True))
    return f"memory://lacking-{uuid.uuid4().hex[:8]}"


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["spate", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1


@pytest.mark.parametrize("capability", ["admin", "lag", "reader"])
def test_testapp_needs_admin_lag_and_reader(
    monkeypatch: pytest.MonkeyPatch, capability: CapabilityName
) -> None:
    app = App("caps")
    app.stream(app.topic("in"), group="g").to(app.topic("out"))
    with pytest.raises(CapabilityError, match=rf"cannot .*'{capability}' capability"):
        TestApp(app, broker=without(monkeypatch, capability)).__enter__()


@pytest.mark.parametrize(
    ("capability", "args"),
    [
        ("reader", ["consume", "events"]),
        ("admin", ["topics", "create", "events"]),
        ("admin", ["topics", "list"]),
        ("admin", ["topics", "describe", "events"]),
        ("admin", ["topics", "delete", "events"]),
        ("lag", ["groups", "list"]),
    ],
)
def test_cli_refuses_a_broker_without_the_capability(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    capability: CapabilityName,
    args: list[str],
) -> None:
    url = without(monkeypatch, capability)
    run_cli(monkeypatch, *args, "--broker", url)
    err = capsys.readouterr().err
    assert f"'{capability}' capability" in err
    assert "Capabilities." + capability in err


def test_a_broker_without_readers_says_so() -> None:
    broker = LocalBroker(None, memory_name="no-reader")
    with pytest.raises(CapabilityError, match="memory://no-reader has no partition reader"):
        Broker.reader(broker, "events")
