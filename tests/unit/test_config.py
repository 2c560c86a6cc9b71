"""Settings: arguments beat SPATE_* variables beat defaults; bad values name the field."""

from __future__ import annotations

import pytest

from spate.config import DEFAULT_BROKER, Settings, load_settings
from spate.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.broker == DEFAULT_BROKER
    assert settings.processing_guarantee == "at-least-once"


def test_environment_then_arguments() -> None:
    env = {"SPATE_BROKER": "memory://", "SPATE_BATCH_SIZE": "50", "SPATE_LOG_LEVEL": "debug"}
    settings = load_settings(environ=env)
    assert (settings.broker, settings.batch_size, settings.log_level) == ("memory://", 50, "DEBUG")
    settings = load_settings({"broker": "local://x", "batch_size": None}, environ=env)
    assert (settings.broker, settings.batch_size) == ("local://x", 50)


def test_bad_values_name_the_field_and_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"processing_guarantee='exactly_once'.*'exactly-once'"):
        load_settings({"processing_guarantee": "exactly_once"}, environ={})
    with pytest.raises(ConfigError, match="SPATE_BATCH_SIZE"):
        load_settings(environ={"SPATE_BATCH_SIZE": "many"})
    with pytest.raises(ConfigError, match=r"batch_size=0.*\(from environment variable"):
        load_settings(environ={"SPATE_BATCH_SIZE": "0"})
    with pytest.raises(ConfigError, match="unknown setting 'bach_size'"):
        load_settings({"bach_size": 3}, environ={})


def test_instance_id_must_be_a_plain_name() -> None:
    assert Settings(instance_id="web-0.eu").instance_id == "web-0.eu"
    with pytest.raises(ConfigError, match="instance_id='a b'"):
        Settings(instance_id="a b")
    assert load_settings(environ={"SPATE_INSTANCE_ID": "pod-3"}).instance_id == "pod-3"


def test_workers_come_from_the_environment() -> None:
    assert load_settings(environ={"SPATE_WORKERS": "4"}).workers == 4
    with pytest.raises(ConfigError, match=r"workers=0 must be a positive int.*SPATE_WORKERS"):
        load_settings(environ={"SPATE_WORKERS": "0"})


def test_metrics_port_is_off_unless_asked_and_must_be_a_port() -> None:
    assert load_settings(environ={}).metrics_port is None
    assert load_settings(environ={"SPATE_METRICS_PORT": "9100"}).metrics_port == 9100
    assert load_settings({"metrics_port": 0}, environ={}).metrics_port == 0
    with pytest.raises(ConfigError, match=r"metrics_port=70000 must be a TCP port 0..65535"):
        load_settings({"metrics_port": 70000}, environ={})
    with pytest.raises(ConfigError, match=r"metrics_port=-1.*SPATE_METRICS_PORT"):
        load_settings(environ={"SPATE_METRICS_PORT": "-1"})
    with pytest.raises(ConfigError, match="lag_interval_s=0"):
        Settings(lag_interval_s=0)


def test_state_settings_come_from_the_environment_and_a_bad_backend_names_the_choices() -> None:
    settings = load_settings(
        environ={"SPATE_STATE_DIR": "/srv/state", "SPATE_STATE_BACKEND": "SQLite"}
    )
    assert (settings.state_dir, settings.state_backend) == ("/srv/state", "sqlite")
    with pytest.raises(ConfigError, match=r"state_backend='lmdb' is not valid; use one of 'auto'"):
        load_settings({"state_backend": "lmdb"})
    with pytest.raises(ConfigError, match=r"state_dir='' must be a directory path"):
        load_settings({"state_dir": ""})
