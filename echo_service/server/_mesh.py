"""Connection settings that keep Echo healthy behind balancers and meshes,
and the TOML config file the CLI reads.

gRPC multiplexes every call of a client over one long-lived HTTP/2
connection. An L4 balancer (a Kubernetes Service, a cloud network balancer)
picks a backend per *connection*, so without help a client stays on the
replica it first reached forever, and replicas added later get no traffic.
Echo therefore ages connections out: after ``max_connection_age`` the server
sends GOAWAY, the client reconnects, and the balancer chooses again. Calls
still running get ``max_connection_age_grace`` to finish; a stream cut then
ends UNAVAILABLE and the client resumes from its last sequence number, which
Echo's streams are built for.

Keepalive pings find dead peers (a client that vanished without a FIN holds
a stream and its buffer until then). Proxies answer HTTP/2 pings themselves,
so pings do not keep a proxied stream alive end to end: that is what Echo's
in-band heartbeat messages are for.

Config precedence, highest first: command-line flags, ``ECHO_*`` environment
variables, the ``--config`` file, built-in defaults. ``load_config_file``
returns the file's layer with keys spelled like the flags' parameter names.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2_grpc

__all__ = [
    "KNOWN_SETTINGS",
    "ConfigFileError",
    "MeshSettings",
    "load_config_file",
    "parse_duration",
    "parse_size",
    "start_probe_server",
]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshSettings:
    """HTTP/2 connection settings of the server, with safe defaults.

    Attributes:
        keepalive_time: idle time after which the server pings a client to
            learn whether it is still there. gRPC's default is two hours,
            far longer than a NAT or a cloud balancer keeps an idle flow
            (often 350 s to 10 min); one minute finds dead peers early and
            keeps such flows open.
        keepalive_timeout: how long the server waits for the ping's answer
            before it closes the connection. 20 s, gRPC's default.
        min_ping_interval: the shortest interval between pings the server
            accepts from a client that sends no data. gRPC's default of five
            minutes makes it close, with GOAWAY ``too_many_pings``, every
            client that keeps alive more often; 10 s lets clients keep alive
            every 10 s or slower. Clients should use 30 s or more.
        permit_keepalive_without_calls: accept client pings on a connection
            with no call open. Without it such pings count as abuse, and an
            idle client that keeps its connection warm is cut off.
        max_connection_age: the server sends GOAWAY after a connection lived
            this long (gRPC adds +-10% jitter), so that clients reconnect and
            L4 balancers spread them over all replicas, new ones included.
            ``None`` keeps connections forever. 10 minutes.
        max_connection_age_grace: how long calls open at GOAWAY may still
            run before the connection is closed under them. Unary calls end
            in milliseconds; a stream cut then ends UNAVAILABLE and the
            client resumes after its last sequence. ``None`` waits for ever,
            which lets one long stream pin a connection. 2 minutes: enough
            for a large client-streamed assign.
        max_receive_message_size: the largest request message accepted, in
            bytes. 32 MiB: room above the file plan's 16 MiB read and write
            limits, and a full AssignMany (10,000 actions) with modest
            arguments fits; larger requests get RESOURCE_EXHAUSTED before
            they are parsed. gRPC's default is 4 MiB.
        max_send_message_size: the largest response message sent, in bytes.
            32 MiB, to match. Clients must raise their own receive limit
            (4 MiB by default) to accept replies larger than 4 MiB.
    """

    keepalive_time: timedelta = timedelta(minutes=1)
    keepalive_timeout: timedelta = timedelta(seconds=20)
    min_ping_interval: timedelta = timedelta(seconds=10)
    permit_keepalive_without_calls: bool = True
    max_connection_age: timedelta | None = timedelta(minutes=10)
    max_connection_age_grace: timedelta | None = timedelta(minutes=2)
    max_receive_message_size: int = 32 * MiB
    max_send_message_size: int = 32 * MiB

    def __post_init__(self) -> None:
        positive = {
            "keepalive_time": self.keepalive_time,
            "keepalive_timeout": self.keepalive_timeout,
            "min_ping_interval": self.min_ping_interval,
            "max_connection_age": self.max_connection_age,
        }
        for name, value in positive.items():
            if value is not None and value <= timedelta(0):
                raise ValueError(f"{name} must be positive, not {value}")
        grace = self.max_connection_age_grace
        if grace is not None and grace < timedelta(0):
            raise ValueError(f"max_connection_age_grace must not be negative: {grace}")
        for name, size in (
            ("max_receive_message_size", self.max_receive_message_size),
            ("max_send_message_size", self.max_send_message_size),
        ):
            if size <= 0:
                raise ValueError(f"{name} must be a positive number of bytes")

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> MeshSettings:
        """Settings from flag, ``ECHO_*`` or config-file values; others ignored.

        Durations may be ``timedelta``, seconds, or text such as ``"90s"``;
        ``"off"`` turns the connection age or its grace off. Sizes may be
        bytes or text such as ``"16MiB"``; ``max_message_bytes``, the CLI's
        one limit, sets both directions. Absent keys keep their defaults.
        """
        given: dict[str, object] = {}
        if (both := values.get("max_message_bytes")) is not None:
            for name in _SIZES:
                given[name] = _size(name, both)
        for name in _DURATIONS:
            if (value := values.get(name)) is not None:
                given[name] = _duration_or_off(name, value)
        for name in _SIZES:
            if (value := values.get(name)) is not None:
                given[name] = _size(name, value)
        if (permit := values.get("permit_keepalive_without_calls")) is not None:
            given["permit_keepalive_without_calls"] = _flag(permit)
        return cls(**given)  # type: ignore[arg-type]

    def server_options(self) -> list[tuple[str, int]]:
        """The settings as ``grpc.aio.server(options=...)`` channel arguments.

        ``grpc.so_reuseport`` is switched off as well: gRPC turns it on by
        default, and then a second server started on a taken port shares it
        silently instead of failing, splitting clients between two processes.
        """
        options: list[tuple[str, int]] = [
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", _ms(self.keepalive_time)),
            ("grpc.keepalive_timeout_ms", _ms(self.keepalive_timeout)),
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                _ms(self.min_ping_interval),
            ),
            (
                "grpc.keepalive_permit_without_calls",
                int(self.permit_keepalive_without_calls),
            ),
            ("grpc.max_receive_message_length", self.max_receive_message_size),
            ("grpc.max_send_message_length", self.max_send_message_size),
        ]
        if self.max_connection_age is not None:
            options.append(("grpc.max_connection_age_ms", _ms(self.max_connection_age)))
        if self.max_connection_age_grace is not None:
            options.append(
                (
                    "grpc.max_connection_age_grace_ms",
                    _ms(self.max_connection_age_grace),
                )
            )
        return options


def _ms(value: timedelta) -> int:
    return round(value.total_seconds() * 1000)


_DURATIONS = (
    "keepalive_time",
    "keepalive_timeout",
    "min_ping_interval",
    "max_connection_age",
    "max_connection_age_grace",
)
_OPTIONAL = frozenset({"max_connection_age", "max_connection_age_grace"})
_SIZES = ("max_receive_message_size", "max_send_message_size")


def _duration_or_off(name: str, value: object) -> timedelta | None:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and value.strip().lower() == "off":
        if name not in _OPTIONAL:
            raise ValueError(f"{name} cannot be off")
        return None
    if not isinstance(value, str | int | float):
        raise ValueError(f"{name}: not a duration: {value!r}")
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _size(name: str, value: object) -> int:
    if not isinstance(value, str | int):
        raise ValueError(f"{name}: not a size: {value!r}")
    try:
        return parse_size(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


async def start_probe_server(
    health: Any, *, host: str, port: int
) -> tuple[grpc.aio.Server, int]:
    """Serve only ``health`` (a ``grpc.aio`` HealthServicer), in plaintext.

    Kubernetes' native gRPC probes and many balancers' health checks cannot
    speak TLS. With TLS on the main port, this second port answers them. It
    shares the main server's HealthServicer, so both report the same status,
    and it serves nothing else: no Echo method is reachable without TLS.
    Returns the started server, which the caller stops with the main one,
    and the port bound (``port`` 0 picks one).
    """
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    address = (
        f"[{host}]:{port}"
        if ":" in host and not host.startswith("[")
        else (f"{host}:{port}")
    )
    bound = server.add_insecure_port(address)
    await server.start()
    return server, int(bound)


# --- values as written in flags, ECHO_* variables and the config file ---------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
}


def parse_duration(value: str | float) -> timedelta:
    """``"250ms"``, ``"30s"``, ``"10m"``, ``"1h30m"``, or a number of seconds.

    Raises ``ValueError`` for anything else, and for negative values.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            position, seconds = 0, 0.0
            for match in _DURATION_PART.finditer(text):
                if match.start() != position:
                    break
                seconds += float(match[1]) * _DURATION_UNITS[match[2]]
                position = match.end()
            if position != len(text) or not text:
                raise ValueError(
                    f"not a duration: {value!r} (write e.g. 250ms, 30s, 10m, 1h30m)"
                ) from None
    if seconds < 0:
        raise ValueError(f"a duration must not be negative: {value!r}")
    return timedelta(seconds=seconds)


def parse_size(value: str | int) -> int:
    """``"16MiB"``, ``"512KiB"``, ``"4MB"``, or a number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"not a size: {value!r} (write e.g. 16MiB, 4MB, 1024)")
        size = int(match[1]) * _SIZE_UNITS[(match[2] or "b").lower()]
    if size <= 0:
        raise ValueError(f"a size must be positive: {value!r}")
    return size


# --- the config file -------------------------------------------------------------

#: Settings a config file may hold: the parameter names of ``echo-service
#: serve``'s flags. The CLI should pass its own list (``known=``) so the two
#: cannot drift; this one documents what the operators' guide promises.
KNOWN_SETTINGS: frozenset[str] = frozenset(
    {
        # echo_service.config.Config as it stands
        "host",
        "port",
        "plan",
        "root",
        "workers",
        "data_dir",
        "store",
        "admin_token",
        "drain_grace",
        "max_waiting",
        "max_message_bytes",
        "max_read_bytes",
        "max_write_bytes",
        "log_level",
        "log_json",
        "max_batch",
        "rpc_threads",
        "key_retention",
        "stream_buffer",
        "session_window",
        "heartbeat_interval",
        "min_heartbeat_interval",
        "max_heartbeat_interval",
        "stop_timeout",
        "health_check_interval",
        "retention",
        "lease",
        # the production surface
        "auth_token",
        "tls_cert",
        "tls_key",
        "tls_client_ca",
        "health_port",
        "metrics_port",
        "metrics_host",
        "keepalive_time",
        "keepalive_timeout",
        "min_ping_interval",
        "max_connection_age",
        "max_connection_age_grace",
    }
)


class ConfigFileError(ValueError):
    """The config file cannot be read, is not TOML, or names unknown keys.

    A ``ValueError`` because it is bad configuration, reported by the CLI at
    start; it never crosses the wire.
    """


def load_config_file(
    path: Path | str, *, known: Collection[str] | None = None
) -> dict[str, object]:
    """Read a TOML config file into ``{parameter_name: value}``.

    Keys are the flags' names without the dashes, written either way:
    ``max-connection-age = "10m"`` and ``max_connection_age = "10m"`` both
    give ``max_connection_age``. Values stay as TOML gives them (strings,
    integers, booleans, lists); the caller converts them as it converts
    ``ECHO_*`` strings, so one parser serves every layer.

    Raises ``ConfigFileError`` for an unreadable file, invalid TOML, a table
    (settings are flat, like flags), a key given twice in two spellings, or a
    key that is not a setting, naming the closest setting when there is one.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(
            f"cannot read the config file {source}: {exc.strerror}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"the config file {source} is not UTF-8") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(
            f"the config file {source} is not valid TOML: {exc}"
        ) from exc
    return _settings(source, document, KNOWN_SETTINGS if known is None else known)


def _settings(
    source: Path, document: Mapping[str, object], known: Collection[str]
) -> dict[str, object]:
    settings: dict[str, object] = {}
    spelled: dict[str, str] = {}
    problems: list[str] = []
    for key, value in document.items():
        name = key.replace("-", "_")
        if isinstance(value, dict):
            problems.append(
                f"[{key}] is a table; settings are flat keys named like the flags"
            )
            continue
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0].replace('_', '-')}?)" if close else ""
            problems.append(f"{key!r} is not a setting{hint}")
            continue
        if name in settings:
            problems.append(f"{key!r} repeats {spelled[name]!r}")
            continue
        settings[name] = value
        spelled[name] = key
    if problems:
        raise ConfigFileError(f"the config file {source}: " + "; ".join(problems))
    return settings
