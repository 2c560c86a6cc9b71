"""``spate run --workers N``: what each worker process is told to run with."""

from __future__ import annotations

import orjson
import pytest

from spate.cli.worker import worker_commands
from spate.config import Settings
from spate.errors import ConfigError


def passed_settings(settings: Settings) -> list[dict[str, object]]:
    commands = worker_commands("shop:app", {"broker": "memory://"}, settings)
    return [orjson.loads(command[-1]) for command in commands]


def test_worker_i_listens_on_metrics_port_plus_i_and_is_named_instance_i() -> None:
    passed = passed_settings(Settings(workers=3, metrics_port=9100, instance_id="pod"))
    assert [p["metrics_port"] for p in passed] == [9100, 9101, 9102]
    assert [p["instance_id"] for p in passed] == ["pod-0", "pod-1", "pod-2"]
    assert all(p["workers"] == 1 and p["broker"] == "memory://" for p in passed)


def test_without_a_metrics_port_no_worker_serves_metrics_and_port_0_is_each_its_own() -> None:
    assert all("metrics_port" not in p for p in passed_settings(Settings(workers=2)))
    passed = passed_settings(Settings(workers=2, metrics_port=0))
    assert [p["metrics_port"] for p in passed] == [0, 0]


def test_ports_past_65535_are_refused_before_any_worker_starts() -> None:
    with pytest.raises(ConfigError, match=r"metrics_port=65535 with workers=2: worker 1 .* 65536"):
        passed_settings(Settings(workers=2, metrics_port=65535))
