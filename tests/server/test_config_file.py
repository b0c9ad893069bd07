"""The config file layer, typed TOML values, day durations, TLS pairing,
and retention and lease reaching both the journal and the engine."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta
from pathlib import Path

import pytest

from echo_service.config import Config, ConfigError, load_config, parse_duration
from echo_service.server import build_server
from echo_service.server._mesh import KNOWN_SETTINGS
from tests.conftest import Gates, make_test_plan


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "echo.toml"
    path.write_text(text)
    return path


def test_the_file_documented_settings_are_exactly_the_config_fields() -> None:
    assert set(KNOWN_SETTINGS) == {f.name for f in fields(Config)}


def test_flags_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    path = _file(tmp_path, 'port = 1111\nhost = "0.0.0.0"\nworkers = 3\n')
    env = {"ECHO_PORT": "2222", "ECHO_WORKERS": "5"}
    config = load_config({"port": "3333"}, env, config_file=path)
    assert (config.port, config.workers, config.host) == (3333, 5, "0.0.0.0")
    assert load_config({}, env, config_file=path).port == 2222
    assert load_config({}, {}, config_file=path).port == 1111
    assert load_config({}, {}).port == Config().port


def test_typed_toml_values_are_taken_as_what_they_mean(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "drain-grace = 2.5\n"
        'retention = "7d"\n'
        'max-connection-age = "off"\n'
        "log-json = true\n"
        'max-message-bytes = "8MiB"\n'
        "max-batch = 50\n"
        'tls-cert = "server.crt"\n'
        'tls-key = "server.key"\n',
    )
    config = load_config({}, {}, config_file=path)
    assert config.drain_grace == timedelta(seconds=2.5)
    assert config.retention == timedelta(days=7)
    assert config.max_connection_age is None
    assert config.log_json is True
    assert config.max_message_bytes == 8 << 20
    assert config.max_batch == 50
    assert config.tls_cert == Path("server.crt")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('max-conection-age = "10m"\n', "did you mean max-connection-age"),
        ("[tls]\ncert = 'x'\n", "table"),
        ("port = \n", "not valid TOML"),
        ("port = true\n", "port"),
        ('workers = "many"\n', "workers"),
        ("drain-grace = [1]\n", "drain-grace"),
    ],
)
def test_a_bad_file_is_a_config_error_naming_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config({}, {}, config_file=_file(tmp_path, text))


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config({}, {}, config_file=tmp_path / "absent.toml")


def test_durations_take_days() -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("1d12h") == timedelta(days=1, hours=12)
    assert load_config({"key_retention": "2d"}, {}).key_retention == timedelta(days=2)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"tls_cert": "c.pem"}, "go together"),
        ({"tls_key": "k.pem"}, "go together"),
        ({"tls_client_ca": "ca.pem"}, "mutual TLS is TLS first"),
        ({"health_port": "50051", "port": "50051"}, "must differ"),
        ({"health_port": "70000"}, "between 0 and 65535"),
        ({"retention": "0s"}, "must be positive"),
        ({"lease": "0s"}, "must be positive"),
    ],
)
def test_settings_that_cannot_work_together_are_refused(
    given: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(given, {})


def test_retention_and_lease_reach_the_journal_and_the_engine(tmp_path: Path) -> None:
    config = load_config(
        {
            "port": "0",
            "store": "memory",
            "retention": "3d",
            "key_retention": "36h",
            "lease": "45s",
            "data_dir": str(tmp_path),
        },
        {},
    )
    server = build_server(config, plan=make_test_plan(Gates()))
    try:
        engine = server.engine
        assert engine._retention == timedelta(days=3)
        assert engine._key_retention == timedelta(hours=36)
        assert engine._lease == timedelta(seconds=45)
        assert server.store._key_retention == timedelta(hours=36).total_seconds()  # type: ignore[attr-defined]
    finally:
        server.stop()
