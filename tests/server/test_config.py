"""Settings: flags over ECHO_* environment over defaults, parsed and checked
in one place, with messages that name the flag and the variable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from echo_service.config import Config, ConfigError, load_config, parse_duration


def test_defaults_are_safe_and_documented() -> None:
    config = load_config({}, environ={})
    assert config.host == "127.0.0.1"
    assert config.port == 50051
    assert config.data_dir == Path("data")
    assert config.store == "sqlite"
    assert config.admin_token is None
    assert config.drain_grace == timedelta(seconds=10)
    assert config.drain_grace > timedelta(0)
    assert config == Config()


def test_a_flag_wins_over_the_environment_which_wins_over_the_default() -> None:
    environ = {"ECHO_PORT": "6000", "ECHO_DRAIN_GRACE": "1m", "ECHO_LOG_JSON": "yes"}
    config = load_config({"port": "7000"}, environ=environ)
    assert config.port == 7000
    assert config.drain_grace == timedelta(minutes=1)
    assert config.log_json is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10s", timedelta(seconds=10)),
        ("250ms", timedelta(milliseconds=250)),
        ("2m", timedelta(minutes=2)),
        ("1h", timedelta(hours=1)),
        ("1.5", timedelta(seconds=1.5)),
    ],
)
def test_durations_read_with_their_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("flags", "environ", "named"),
    [
        ({"port": "nope"}, {}, "--port"),
        ({}, {"ECHO_PORT": "70000"}, "--port"),
        ({}, {"ECHO_DRAIN_GRACE": "soon"}, "ECHO_DRAIN_GRACE"),
        ({"drain_grace": "-1s"}, {}, "--drain-grace"),
        ({"workers": "0"}, {}, "--workers"),
        ({"plan": "no_colon"}, {}, "--plan"),
        ({"log_level": "LOUD"}, {}, "--log-level"),
    ],
)
def test_bad_values_are_refused_naming_where_they_came_from(
    flags: dict[str, object], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(flags, environ=environ)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        load_config({"colour": "blue"}, environ={})


def test_the_admin_token_stays_out_of_the_repr() -> None:
    config = load_config({"admin_token": "hunter2"}, environ={})
    assert config.admin_token == "hunter2"
    assert "hunter2" not in repr(config)
