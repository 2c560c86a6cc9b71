"""Third-party adapters: one register() call makes a scheme parse, connect and run Apps."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

import spate
from spate.app import App
from spate.brokers import registry, schemes
from spate.brokers.local import LocalBroker
from spate.brokers.url import parse_broker_url
from spate.errors import ConfigError
from spate.testing.app import TestApp
from third_party_adapter import QueueBroker


@pytest.fixture(autouse=True)
def restore_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemes, "_SCHEMES", dict(schemes._SCHEMES))


async def test_a_registered_scheme_parses_and_connects() -> None:
    registry.register("myq", QueueBroker.from_url)
    host = f"q{uuid.uuid4().hex}"
    url = parse_broker_url(f"myq://{host}:1234?x=1")
    assert (url.scheme, url.hosts, url.query) == ("myq", ((host, 1234),), {"x": "1"})
    async with spate.connect(f"myq://{host}:1234") as broker:
        assert isinstance(broker, QueueBroker)
        await broker.create_topic("orders", 2)
        async with spate.connect(f"MYQ://{host}:1234", lease_ttl_s=5) as again:
            assert [t.name for t in await again.list_topics()] == ["orders"]


def test_an_app_runs_on_a_registered_scheme() -> None:
    registry.register("myq", QueueBroker.from_url)
    url = f"myq://q{uuid.uuid4().hex}:1234"
    app = App("shop", broker=url)
    orders, doubled = app.topic("orders"), app.topic("doubled")

    @app.handler(orders, group="g", output=doubled)
    def double(value: int) -> int:
        return value * 2

    with TestApp(app, broker=url) as t:
        for i in range(3):
            t.send(orders, i)
        t.run_until_idle()
        assert sorted(t.outputs(doubled)) == [0, 2, 4]


def test_a_scheme_may_take_a_path() -> None:
    registry.register("myfile", LocalBroker.from_url, takes_path=True)
    url = parse_broker_url("myfile://var/data?synchronous=normal")
    assert (url.hosts, url.path, url.query) == ((), "var/data", {"synchronous": "normal"})


def test_an_unknown_scheme_lists_the_registered_ones_too() -> None:
    registry.register("myq", QueueBroker.from_url)
    with pytest.raises(ConfigError, match="scheme 'nope' is unknown") as info:
        spate.connect("nope://h:1")
    assert "local, memory, kafka" in str(info.value)
    assert "myq" in str(info.value)
    assert "register" in str(info.value)


@pytest.mark.parametrize("url", ["mqtt://localhost:1883", "mqtts://localhost:8883"])
def test_mqtt_is_not_supported_yet(url: str) -> None:
    with pytest.raises(ConfigError, match="not supported yet") as info:
        parse_broker_url(url)
    assert "MQTT" in str(info.value)


@pytest.mark.parametrize("scheme", ["", "1q", "my q", "my_q", None])
def test_a_bad_scheme_name_is_refused(scheme: Any) -> None:
    with pytest.raises(ConfigError, match=r"scheme .* is not valid"):
        registry.register(scheme, QueueBroker.from_url)


def test_a_factory_must_be_callable() -> None:
    with pytest.raises(ConfigError, match="not callable"):
        registry.register("myq", "QueueBroker")  # type: ignore[arg-type]


def test_the_example_in_docs_runs(capsys: pytest.CaptureFixture[str]) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "brokers.md").read_text()
    section = docs.split("## Adapters of your own", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    exec(compile(block.group(1), "docs/brokers.md", "exec"), {"__name__": "docs_example"})
    assert capsys.readouterr().out == "['orders']\n"
