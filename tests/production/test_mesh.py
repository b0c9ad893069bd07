"""Connection settings on a real server, and the TOML config file."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from echo_service.server._mesh import (
    KNOWN_SETTINGS,
    ConfigFileError,
    MeshSettings,
    load_config_file,
    parse_duration,
    parse_size,
)
from tests.production._servers import ECHO, GATE, WAIT, AioServer

# --- options -------------------------------------------------------------------


def test_default_options_are_the_documented_safe_values() -> None:
    options = dict(MeshSettings().server_options())

    assert options == {
        "grpc.so_reuseport": 0,
        "grpc.keepalive_time_ms": 60_000,
        "grpc.keepalive_timeout_ms": 20_000,
        "grpc.http2.min_ping_interval_without_data_ms": 10_000,
        "grpc.keepalive_permit_without_calls": 1,
        "grpc.max_connection_age_ms": 600_000,
        "grpc.max_connection_age_grace_ms": 120_000,
        "grpc.max_receive_message_length": 32 * 1024 * 1024,
        "grpc.max_send_message_length": 32 * 1024 * 1024,
    }


def test_an_unset_connection_age_leaves_both_age_options_out() -> None:
    settings = MeshSettings(max_connection_age=None, max_connection_age_grace=None)

    names = {name for name, _ in settings.server_options()}

    assert "grpc.max_connection_age_ms" not in names
    assert "grpc.max_connection_age_grace_ms" not in names


@pytest.mark.parametrize(
    "bad",
    [
        {"keepalive_time": timedelta(0)},
        {"keepalive_timeout": timedelta(seconds=-1)},
        {"max_connection_age": timedelta(0)},
        {"max_connection_age_grace": timedelta(seconds=-1)},
        {"max_receive_message_size": 0},
    ],
)
def test_settings_that_cannot_work_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        MeshSettings(**bad)  # type: ignore[arg-type]


def test_settings_come_from_flag_env_or_file_values() -> None:
    settings = MeshSettings.from_values(
        {
            "keepalive_time": "90s",
            "keepalive_timeout": 5,
            "max_connection_age": "off",
            "max_connection_age_grace": timedelta(seconds=30),
            "max_receive_message_size": "32MiB",
            "max_send_message_size": 1_000_000,
            "permit_keepalive_without_calls": "false",
            "port": 50051,  # not a mesh setting: ignored
        }
    )

    assert settings == MeshSettings(
        keepalive_time=timedelta(seconds=90),
        keepalive_timeout=timedelta(seconds=5),
        max_connection_age=None,
        max_connection_age_grace=timedelta(seconds=30),
        max_receive_message_size=32 * 1024 * 1024,
        max_send_message_size=1_000_000,
        permit_keepalive_without_calls=False,
    )


def test_a_bad_value_names_its_setting() -> None:
    with pytest.raises(ValueError, match="keepalive_time: not a duration"):
        MeshSettings.from_values({"keepalive_time": "soon"})
    with pytest.raises(ValueError, match="keepalive_time cannot be off"):
        MeshSettings.from_values({"keepalive_time": "off"})


def test_a_second_server_on_a_taken_port_fails_instead_of_sharing_it() -> None:
    options = MeshSettings().server_options()
    with AioServer(options=options) as first:
        second = AioServer(options=options, address=f"127.0.0.1:{first.port}")
        with pytest.raises(RuntimeError):
            second.start()
        second.stop()


def test_a_request_above_the_receive_limit_is_refused_before_parsing() -> None:
    settings = MeshSettings(max_receive_message_size=1024)
    with (
        AioServer(options=settings.server_options()) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        echo = channel.unary_unary(ECHO)
        assert echo(b"x" * 1000, timeout=WAIT) == b"x" * 1000
        with pytest.raises(grpc.RpcError) as caught:
            echo(b"x" * 2000, timeout=WAIT)

    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_an_aged_connection_is_closed_so_the_client_reconnects_elsewhere() -> None:
    settings = MeshSettings(
        max_connection_age=timedelta(milliseconds=300),
        max_connection_age_grace=timedelta(milliseconds=300),
    )
    went_idle = threading.Event()
    seen: list[grpc.ChannelConnectivity] = []

    def watch(state: grpc.ChannelConnectivity) -> None:
        seen.append(state)
        if grpc.ChannelConnectivity.READY in seen and (
            state is grpc.ChannelConnectivity.IDLE
        ):
            went_idle.set()

    with (
        AioServer(options=settings.server_options()) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        channel.subscribe(watch)
        assert channel.unary_unary(ECHO)(b"1", timeout=WAIT) == b"1"
        assert went_idle.wait(WAIT), seen
        # A new call opens a new connection, which a balancer places afresh.
        assert channel.unary_unary(ECHO)(b"2", timeout=WAIT) == b"2"
        channel.unsubscribe(watch)


def test_a_stream_outliving_the_age_grace_ends_unavailable_so_it_can_resume() -> None:
    settings = MeshSettings(
        max_connection_age=timedelta(milliseconds=300),
        max_connection_age_grace=timedelta(milliseconds=300),
    )
    with (
        AioServer(options=settings.server_options()) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stream = channel.unary_stream(GATE)(b"", timeout=WAIT)
        assert next(stream) == b"first"
        with pytest.raises(grpc.RpcError) as caught:
            next(stream)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.slow
def test_a_client_pinging_more_often_than_allowed_is_sent_away() -> None:
    client_options = [
        ("grpc.keepalive_time_ms", 200),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    with (
        AioServer(options=MeshSettings().server_options()) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}", client_options) as channel,
    ):
        stream = channel.unary_stream(GATE)(b"", timeout=WAIT)
        assert next(stream) == b"first"
        with pytest.raises(grpc.RpcError) as caught:
            next(stream)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "ping" in (caught.value.details() or "").lower()


# --- values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30),
        ("10m", 600),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("45", 45),
        (7, 7),
        (0.5, 0.5),
        ("0", 0),
    ],
)
def test_durations_read_as_people_write_them(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "ten", "10 s", "5d", "-1s", "1h-5m", "-3", True])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("16MiB", 16 * 1024 * 1024),
        ("512KiB", 512 * 1024),
        ("4MB", 4_000_000),
        ("1gib", 1024**3),
        ("2048", 2048),
        (100, 100),
    ],
)
def test_sizes_read_with_binary_or_decimal_units(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "16 MiBs", "-1", "1.5MiB", False])
def test_anything_else_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


# --- config file ---------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "echo.toml"
    path.write_text(text)
    return path


def test_the_config_file_gives_settings_named_like_the_flags(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'port = 6000\nmax-connection-age = "5m"\nlog_json = true\n'
        "metrics-port = 9464\n",
    )

    assert load_config_file(path) == {
        "port": 6000,
        "max_connection_age": "5m",
        "log_json": True,
        "metrics_port": 9464,
    }


def test_an_unknown_key_is_refused_with_the_closest_setting(tmp_path: Path) -> None:
    path = _write(tmp_path, 'max-conection-age = "5m"\nbogus = 1\n')

    with pytest.raises(ConfigFileError) as caught:
        load_config_file(path)

    message = str(caught.value)
    assert (
        "'max-conection-age' is not a setting (did you mean max-connection-age?)"
        in (message)
    )
    assert "'bogus' is not a setting" in message
    assert str(path) in message


def test_a_table_is_refused_because_settings_are_flat(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"\[tls\] is a table"):
        load_config_file(_write(tmp_path, '[tls]\ncert = "a.pem"\n'))


def test_one_setting_in_two_spellings_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="'max_connection_age' repeats"):
        load_config_file(
            _write(tmp_path, 'max-connection-age = "5m"\nmax_connection_age = "6m"\n')
        )


def test_invalid_toml_is_reported_with_its_position(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"not valid TOML: .*line 1"):
        load_config_file(_write(tmp_path, "port = \n"))


def test_a_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read the config file"):
        load_config_file(tmp_path / "absent.toml")


def test_the_caller_may_pass_its_own_list_of_settings(tmp_path: Path) -> None:
    path = _write(tmp_path, "workers = 4\n")

    assert load_config_file(path, known={"workers"}) == {"workers": 4}
    with pytest.raises(ConfigFileError):
        load_config_file(path, known={"port"})


def test_every_tunable_mesh_setting_is_a_known_config_key() -> None:
    durations = {
        name
        for name, spec in MeshSettings.__dataclass_fields__.items()
        if "timedelta" in str(spec.type)
    }

    assert durations <= KNOWN_SETTINGS
    assert "max_message_bytes" in KNOWN_SETTINGS


def test_the_clis_one_message_limit_sets_both_directions() -> None:
    settings = MeshSettings.from_values({"max_message_bytes": "8MiB"})

    assert settings.max_receive_message_size == 8 * 1024 * 1024
    assert settings.max_send_message_size == 8 * 1024 * 1024
