"""The service's configuration: one frozen record, loaded in one place.

Every setting has a default, an ``ECHO_*`` environment variable and (for the
ones an operator tunes) a command-line flag, and may be written in a TOML
file (``--config`` or ``ECHO_CONFIG``). ``load_config`` resolves them in this
order, first found wins::

    flag  >  environment  >  config file  >  default

The file's keys are this record's field names (dashes or underscores); the
loader is handed the field list, so the file cannot name a setting that does
not exist, and an unknown key stops the start.

Defaults worth a word:

* ``host`` is ``127.0.0.1``. Echo has no authentication of its own by default
  and the file plan reads and writes files, so it listens on loopback unless
  told otherwise; in a container set ``ECHO_HOST=0.0.0.0`` (or ``[::]``,
  which also takes IPv4 where the kernel maps it).
* ``data_dir`` is ``./data`` beside where the service starts, as the
  repository's ``make serve`` expects. When it lies under the file plan's
  root, the plan refuses every path into it, so no client can read or
  overwrite the journal.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "Config",
    "ConfigError",
    "env_name",
    "load_config",
    "parse_duration",
    "parse_size",
]

_MIB = 1 << 20


def _default_workers() -> int:
    return max(2, os.cpu_count() or 2)


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything ``echo-service serve`` can be told. Units are in the types."""

    host: str = "127.0.0.1"
    """Interface to listen on; ``0.0.0.0`` or ``[::]`` for every interface."""
    port: int = 50051
    """TCP port; 0 picks a free one, which is logged and printed to stderr."""
    plan: str | None = None
    """A user plan as ``package.module:attribute`` (a Plan, or a function
    returning one); None serves the built-in file plan."""
    root: Path = Path()
    """The built-in file plan's root directory; every path is relative to it."""
    workers: int = field(default_factory=_default_workers)
    """Executor threads that run actions."""
    data_dir: Path = Path("data")
    """Where the SQLite journal lives; made if missing."""
    store: str = "sqlite"
    """The journal: ``sqlite``, ``memory`` (nothing survives a restart) or a
    ``postgresql://`` URL."""
    admin_token: str | None = field(default=None, repr=False)
    """The secret a Shutdown call must present; None disables Shutdown."""
    drain_grace: timedelta = timedelta(seconds=10)
    """How long running actions may take to finish when the service stops."""
    max_waiting: int = 1_000_000
    """Unfinished actions the journal may hold before assigns are refused
    with RESOURCE_EXHAUSTED."""
    max_message_bytes: int = 32 * _MIB
    """Largest gRPC message sent or received. Leaves room above the file
    plan's 16 MiB read and write limits."""
    max_read_bytes: int = 16 * _MIB
    """The file plan's Read limit."""
    max_write_bytes: int = 16 * _MIB
    """The file plan's Write limit."""
    log_level: str = "INFO"
    """Python logging level name."""
    log_json: bool = False
    """Log one JSON object per line instead of plain text."""
    max_batch: int = 10_000
    """Most actions one AssignMany or AssignStream call may carry."""
    rpc_threads: int = 16
    """Threads for engine calls that block (assign waits for the journal's
    commit; get; cancel). Streams never hold one."""
    key_retention: timedelta = timedelta(hours=24)
    """How long an idempotency key recognises a repeated assign."""
    stream_buffer: int = 4096
    """Events a stream may fall behind by before it ends as too slow."""
    session_window: int = 1024
    """Events a Connect session sends before it waits for an Ack."""
    heartbeat_interval: timedelta = timedelta(seconds=15)
    """Heartbeat interval of streams that do not ask for one."""
    min_heartbeat_interval: timedelta = timedelta(seconds=1)
    """Streams asking for a shorter interval get this one (tests lower it)."""
    max_heartbeat_interval: timedelta = timedelta(minutes=5)
    """Streams asking for a longer interval get this one."""
    stop_timeout: timedelta = timedelta(seconds=5)
    """After draining: how long open calls get to end before they are cut."""
    auth_token: str | None = field(default=None, repr=False)
    """Bearer tokens (comma separated) every call must present; None: no
    authentication. Health and reflection stay open."""
    metrics_port: int = 0
    """Serve Prometheus ``/metrics`` on this port; 0: off."""
    metrics_host: str = "0.0.0.0"  # every interface: metrics are read-only
    """Interface of the metrics endpoint."""
    keepalive_time: timedelta = timedelta(minutes=1)
    """Ping an idle client after this long to find dead peers."""
    keepalive_timeout: timedelta = timedelta(seconds=20)
    """Close a connection whose ping is not answered within this."""
    min_ping_interval: timedelta = timedelta(seconds=10)
    """Clients may ping this often; more often gets GOAWAY."""
    max_connection_age: timedelta | None = timedelta(minutes=10)
    """GOAWAY after this, so L4 balancers spread clients again; None: never."""
    max_connection_age_grace: timedelta | None = timedelta(minutes=2)
    """Calls open at GOAWAY may run this long; None: for ever."""
    health_check_interval: timedelta = timedelta(seconds=5)
    """How often health is re-checked (executor threads and journal)."""
    tls_cert: Path | None = None
    """Server certificate chain (PEM); with ``tls_key`` turns TLS on."""
    tls_key: Path | None = None
    """Private key of ``tls_cert`` (PEM, unencrypted)."""
    tls_client_ca: Path | None = None
    """CA that must sign client certificates (mutual TLS); needs ``tls_cert``."""
    health_port: int = 0
    """Plaintext port serving only health, for probes that cannot speak TLS;
    0: off."""
    retention: timedelta = timedelta(days=7)
    """How long a finished action and its events stay in the journal; a
    stream resuming from before that misses them."""
    lease: timedelta = timedelta(seconds=30)
    """In a shared (PostgreSQL) journal, how long a claim holds unless
    renewed: a replica that dies gives its work to the others after this."""

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError("; ".join(problems))


class ConfigError(ValueError):
    """A setting that cannot be used; the message names flag and variable."""


def env_name(name: str) -> str:
    """The environment variable of the field ``name``: ``ECHO_DRAIN_GRACE``."""
    return "ECHO_" + name.upper()


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+)\s*([kmg]i?b|b)?")
_SIZE_SCALE = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
}
_OFF = frozenset({"off", "none", "never"})


def parse_duration(text: str) -> timedelta:
    """``"1.5s"``, ``"250ms"``, ``"2m"``, ``"1h30m"``, ``"7d"`` or seconds."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ValueError(
                f"not a duration: {text!r} (try 10s, 500ms, 2m, 7d)"
            ) from None
        seconds = sum(float(n) * _DURATION_SCALE[u] for n, u in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite duration: {text!r}")
    return timedelta(seconds=seconds)


def parse_size(text: str) -> int:
    """Bytes: ``"1048576"``, ``"16MiB"``, ``"512KiB"``, ``"4MB"``."""
    found = _SIZE.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(f"not a size: {text!r} (try 16MiB or a number of bytes)")
    return int(found.group(1)) * _SIZE_SCALE[found.group(2) or "b"]


def _parse_optional_duration(text: str) -> timedelta | None:
    return None if text.strip().lower() in _OFF else parse_duration(text)


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r} (try true or false)")


def _parse_optional_str(text: str) -> str | None:
    return text or None


_PARSERS: dict[str, Callable[[str], Any]] = {
    "port": int,
    "workers": int,
    "max_waiting": int,
    "max_message_bytes": parse_size,
    "max_read_bytes": parse_size,
    "max_write_bytes": parse_size,
    "max_batch": int,
    "metrics_port": int,
    "health_port": int,
    "tls_cert": Path,
    "tls_key": Path,
    "tls_client_ca": Path,
    "auth_token": _parse_optional_str,
    "max_connection_age": _parse_optional_duration,
    "max_connection_age_grace": _parse_optional_duration,
    "rpc_threads": int,
    "stream_buffer": int,
    "session_window": int,
    "root": Path,
    "data_dir": Path,
    "plan": _parse_optional_str,
    "admin_token": _parse_optional_str,
    "log_json": _parse_bool,
}
_DURATIONS = frozenset(
    f.name for f in fields(Config) if f.type in ("timedelta", timedelta)
)
_OPTIONAL_DURATIONS = frozenset(
    f.name for f in fields(Config) if f.type == "timedelta | None"
)
_PATHS = frozenset(
    f.name for f in fields(Config) if f.type in ("Path", "Path | None", Path)
)


def _convert(name: str, raw: object) -> object:
    """Parse a string from a flag, the environment or the file; take TOML's
    typed values (a number for a duration is seconds)."""
    if isinstance(raw, str):
        if name in _DURATIONS:
            return parse_duration(raw)
        if name in _OPTIONAL_DURATIONS:
            return _parse_optional_duration(raw)
        return _PARSERS.get(name, str)(raw)
    if isinstance(raw, timedelta) or raw is None:
        return raw
    # Typed values, as a TOML file (or a caller) gives them.
    if isinstance(raw, bool):
        if name == "log_json":
            return raw
        raise ValueError(f"expected {_expected(name)}, not a boolean")
    if isinstance(raw, int | float) and (name in _DURATIONS | _OPTIONAL_DURATIONS):
        if not math.isfinite(raw):
            raise ValueError(f"not a finite duration: {raw!r}")
        return timedelta(seconds=raw)
    if isinstance(raw, int) and _PARSERS.get(name) in (int, parse_size):
        return raw
    if isinstance(raw, Path) and name in _PATHS:
        return raw
    raise ValueError(f"expected {_expected(name)}, not {type(raw).__name__}")


def _expected(name: str) -> str:
    if name in _DURATIONS | _OPTIONAL_DURATIONS:
        return 'a duration such as "10s" or a number of seconds'
    if _PARSERS.get(name) in (int, parse_size):
        return "a number"
    if name == "log_json":
        return "true or false"
    return "a string"


def load_config(
    flags: Mapping[str, object | None],
    environ: Mapping[str, str] | None = None,
    *,
    config_file: Path | None = None,
) -> Config:
    """Resolve every setting: a flag's value (None means not given), else
    ``ECHO_<NAME>`` from ``environ`` (default ``os.environ``), else the key in
    ``config_file`` (TOML), else the default.

    Raises:
        ConfigError: a value does not parse or is out of range, or the file
            cannot be read or names an unknown key; the message names the
            flag and the variable (or the file and key).
    """
    # Imported here: the server package imports this module.
    from echo_service.server._mesh import (  # noqa: PLC0415
        ConfigFileError,
        load_config_file,
    )

    env = os.environ if environ is None else environ
    known = {f.name for f in fields(Config)}
    unknown = set(flags) - known
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    try:
        from_file = (
            load_config_file(config_file, known=known)
            if config_file is not None
            else {}
        )
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from None
    values: dict[str, object] = {}
    for name in sorted(known):
        raw = flags.get(name)
        source = f"--{name.replace('_', '-')}"
        if raw is None and env_name(name) in env:
            raw, source = env[env_name(name)], env_name(name)
        if raw is None and name in from_file:
            raw, source = from_file[name], f"{config_file}: {name.replace('_', '-')}"
        if raw is None:
            continue
        try:
            values[name] = _convert(name, raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return Config(**values)  # type: ignore[arg-type]


def _problems(config: Config) -> list[str]:
    def where(name: str) -> str:
        return f"--{name.replace('_', '-')} ({env_name(name)})"

    problems: list[str] = []
    if not 0 <= config.port <= 65535:
        problems.append(f"{where('port')} must be between 0 and 65535")
    for name in (
        "workers",
        "max_waiting",
        "max_message_bytes",
        "max_read_bytes",
        "max_write_bytes",
        "max_batch",
        "rpc_threads",
        "stream_buffer",
        "session_window",
    ):
        if getattr(config, name) < 1:
            problems.append(f"{where(name)} must be at least 1")
    for name in _DURATIONS | _OPTIONAL_DURATIONS:
        value = getattr(config, name)
        if value is not None and value < timedelta(0):
            problems.append(f"{where(name)} must not be negative")
    for name in ("keepalive_time", "keepalive_timeout", "min_ping_interval"):
        if getattr(config, name) <= timedelta(0):
            problems.append(f"{where(name)} must be positive")
    if config.max_connection_age is not None and config.max_connection_age <= timedelta(
        0
    ):
        problems.append(f"{where('max_connection_age')} must be positive, or off")
    for name in ("metrics_port", "health_port"):
        value = getattr(config, name)
        if not 0 <= value <= 65535:
            problems.append(f"{where(name)} must be between 0 and 65535")
        elif value and value == config.port:
            problems.append(f"{where(name)} must differ from {where('port')}")
    if (config.tls_cert is None) != (config.tls_key is None):
        problems.append(
            f"{where('tls_cert')} and {where('tls_key')} go together: give both"
        )
    if config.tls_client_ca is not None and config.tls_cert is None:
        problems.append(
            f"{where('tls_client_ca')} needs {where('tls_cert')} and "
            f"{where('tls_key')}: mutual TLS is TLS first"
        )
    for name in ("retention", "key_retention", "lease"):
        if getattr(config, name) <= timedelta(0):
            problems.append(f"{where(name)} must be positive")
    if config.min_heartbeat_interval > config.max_heartbeat_interval:
        problems.append("the heartbeat bounds are the wrong way round")
    if not config.host:
        problems.append(f"{where('host')} must not be empty")
    if config.plan is not None and ":" not in config.plan:
        problems.append(f"{where('plan')} must look like package.module:attribute")
    if config.log_level.upper() not in (
        "CRITICAL",
        "ERROR",
        "WARNING",
        "INFO",
        "DEBUG",
    ):
        problems.append(f"{where('log_level')} must be DEBUG, INFO, WARNING or ERROR")
    return problems
