"""Config: the replaced system's defaults, validated at construction."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs
import pytest

from fsm_live.config import Config
from fsm_live.core.backoff import ByErrorClass, ExponentialJitter, FixedDelay
from fsm_live.errors import ConfigError


def test_defaults_are_the_seeds() -> None:
    config = Config()
    assert config.heartbeat_interval == 15
    assert config.heartbeat_timeout == 30
    assert config.token_refresh_interval == 72000
    assert config.token_retry_interval == 7200
    assert config.message_expire_time * 1000 == 300000
    assert config.max_failures == 5
    assert config.message_concurrency == 100
    assert isinstance(config.backoff, ExponentialJitter)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("heartbeat_interval", 0, "positive finite"),
        ("heartbeat_interval", -1.5, "positive finite"),
        ("open_timeout", math.inf, "positive finite"),
        ("close_timeout", math.nan, "positive finite"),
        ("stability_window", "10", "number of seconds"),
        ("retry_after_cap", True, "number of seconds"),
        ("max_failures", 0, "whole number >= 1"),
        ("max_failures", 2.5, "whole number >= 1"),
        ("message_concurrency", None, "whole number >= 1"),
        ("max_escalations", -1, "whole number >= 0"),
        ("backoff", "exponential", "backoff policy"),
    ],
)
def test_bad_values_name_the_field(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Config(**{field: value})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_timeout_must_exceed_interval() -> None:
    with pytest.raises(ConfigError, match="greater than heartbeat_interval") as caught:
        Config(heartbeat_interval=30, heartbeat_timeout=30)
    assert caught.value.field == "heartbeat_timeout"


def test_config_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="open_timeout"):
        Config(open_timeout=-1)


def test_ints_become_floats_and_replace_validates() -> None:
    config = Config(heartbeat_interval=5, heartbeat_timeout=12)
    assert isinstance(config.heartbeat_interval, float)
    assert config.replace(max_failures=3).max_failures == 3
    with pytest.raises(ConfigError, match="heartbeat_timeout"):
        config.replace(heartbeat_timeout=4)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        config.replace(heartbeat=1)


def test_any_policy_object_is_accepted() -> None:
    assert Config(backoff=ByErrorClass()).backoff == ByErrorClass()


def test_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.max_failures = 9  # type: ignore[misc]


def test_load_layers_file_env_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "fsm_live.toml"
    path.write_text(
        "heartbeat_interval = 10\nmax_failures = 7\ncompression = true\n"
        '[backoff]\npolicy = "fixed"\nseconds = 4\n'
    )
    env = {"FSM_LIVE_MAX_FAILURES": "3", "FSM_LIVE_COOKIES": "not config", "HOME": "/x"}
    config = Config.load(path, env=env, overrides={"heartbeat_timeout": 25.0})
    assert config.heartbeat_interval == 10
    assert config.max_failures == 3  # env wins over the file
    assert config.heartbeat_timeout == 25  # flags win over both
    assert config.compression is True
    assert config.backoff == FixedDelay(4)


def test_load_defaults_without_sources() -> None:
    assert Config.load(env={}) == Config()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FSM_LIVE_MAX_FAILURE": "3"}, "FSM_LIVE_MAX_FAILURE: unknown setting"),
        ({"FSM_LIVE_MAX_FAILURES": "x"}, "FSM_LIVE_MAX_FAILURES: expected a number"),
        ({"FSM_LIVE_MAX_FAILURES": "0"}, r"FSM_LIVE_MAX_FAILURES \(max_failures\): must be"),
        ({"FSM_LIVE_COMPRESSION": "maybe"}, "FSM_LIVE_COMPRESSION: expected true or false"),
        ({"FSM_LIVE_BACKOFF_POLICY": "random"}, "unknown policy 'random'"),
    ],
)
def test_env_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.load(env=env)


def test_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("heartbeat_intervl = 3\n")
    with pytest.raises(ConfigError, match=r"c.toml: heartbeat_intervl: unknown setting"):
        Config.load(path, env={})
    path.write_text("open_timeout = -1\n")
    with pytest.raises(ConfigError, match=r"c.toml: open_timeout: must be"):
        Config.load(path, env={})
    path.write_text("open_timeout = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(path, env={})
    path.write_bytes(b"\xff\xfe open_timeout = 3\n")
    with pytest.raises(ConfigError, match=r"c.toml: not UTF-8 text"):
        Config.load(path, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        Config.load(tmp_path / "missing.toml", env={})


def test_the_documented_fields_are_the_fields() -> None:
    """docs/configuration.md's table of fields names every field of Config, and no other."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text(
        encoding="utf-8"
    )
    table = text.partition("## Fields")[2].partition("\n\n")[2].partition("\n\n")[0]
    documented = [line.split("|")[1].strip().strip("`") for line in table.splitlines()[2:]]
    assert documented == [field.name for field in attrs.fields(Config)]
