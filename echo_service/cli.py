"""``echo-service``: run the Echo service.

``echo-service serve`` takes its settings from flags, ``ECHO_*``
environment variables and a TOML file (``--config``), in that order of
precedence (see ``echo_service.config``). Once it listens it
writes one line to stderr, ``echo-service listening on HOST:PORT``, which is
how a script that asked for port 0 learns the port. With ``--log-json`` the
same words come as the ``message`` of a JSON log line instead, so that every
line on stderr is JSON.

SIGTERM or SIGINT drains the service in the documented order (health
NOT_SERVING, assigns refused, running work finishes within the grace, streams
ended, server stopped) and exits 0. A second signal while draining gives up
on the grace and exits at once with status 1.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from echo_service.config import Config, ConfigError, load_config
from echo_service.engine import Plan
from echo_service.plans import PlanLoadError, file_plan, load_plan

if TYPE_CHECKING:
    from echo_service.server import EchoServer

__all__ = ["app", "main"]

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="Echo: a gRPC service that accepts, journals, runs and reports actions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DEFAULTS = Config()  # only to show the defaults in --help


def _env(name: str, default: object) -> str:
    return f" (env ECHO_{name.upper()}; default {default})"


@app.callback()
def _root() -> None:
    """Echo: a gRPC service that accepts, journals, runs and reports actions."""


@app.command()
def serve(  # noqa: PLR0917 - typer maps each parameter to a flag
    config_file: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="PATH",
            help="TOML file of settings, keys named like these flags "
            '(port = 50051, drain-grace = "20s"); flags and ECHO_* variables '
            "win over it, unknown keys stop the start. (env ECHO_CONFIG; "
            "default none)",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            metavar="HOST",
            help="Interface to listen on; 0.0.0.0 or [::] for all (containers)."
            + _env("host", _DEFAULTS.host),
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        str | None,
        typer.Option(
            metavar="PORT",
            help="TCP port; 0 picks a free one (printed to stderr)."
            + _env("port", _DEFAULTS.port),
            show_default=False,
        ),
    ] = None,
    plan: Annotated[
        str | None,
        typer.Option(
            metavar="MODULE:ATTR",
            help="Serve your own plan, given as package.module:attribute, instead "
            "of the built-in file plan." + _env("plan", "the file plan"),
            show_default=False,
        ),
    ] = None,
    root: Annotated[
        str | None,
        typer.Option(
            metavar="DIR",
            help="Root directory of the built-in file plan." + _env("root", "."),
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            metavar="N",
            help="Executor threads running actions." + _env("workers", "CPU count"),
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            metavar="DIR",
            help="Directory of the SQLite journal; the file plan never reaches "
            "into it." + _env("data_dir", _DEFAULTS.data_dir),
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            metavar="KIND",
            help="Journal: sqlite, memory, or a postgresql://user@host/db URL "
            "shared by replicas. Give a URL with a password through ECHO_STORE: "
            "flags show in ps." + _env("store", _DEFAULTS.store),
            show_default=False,
        ),
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            help="Secret the Shutdown RPC must present; without one Shutdown is "
            "disabled. Prefer the environment variable: flags show in ps."
            + _env("admin_token", "none"),
            show_default=False,
        ),
    ] = None,
    drain_grace: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="On stop, how long running actions may take to finish (10s, 1m)."
            + _env("drain_grace", "10s"),
            show_default=False,
        ),
    ] = None,
    max_waiting: Annotated[
        str | None,
        typer.Option(
            metavar="N",
            help="Unfinished actions before assigns get RESOURCE_EXHAUSTED."
            + _env("max_waiting", _DEFAULTS.max_waiting),
            show_default=False,
        ),
    ] = None,
    max_message_bytes: Annotated[
        str | None,
        typer.Option(
            metavar="BYTES",
            help="Largest gRPC message sent or received."
            + _env("max_message_bytes", _DEFAULTS.max_message_bytes),
            show_default=False,
        ),
    ] = None,
    max_read_bytes: Annotated[
        str | None,
        typer.Option(
            metavar="BYTES",
            help="The file plan's Read limit."
            + _env("max_read_bytes", _DEFAULTS.max_read_bytes),
            show_default=False,
        ),
    ] = None,
    max_write_bytes: Annotated[
        str | None,
        typer.Option(
            metavar="BYTES",
            help="The file plan's Write limit."
            + _env("max_write_bytes", _DEFAULTS.max_write_bytes),
            show_default=False,
        ),
    ] = None,
    retention: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="How long finished actions and their events stay in the "
            "journal (12h, 7d); streams cannot resume from before it."
            + _env("retention", "7d"),
            show_default=False,
        ),
    ] = None,
    key_retention: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="How long an idempotency key recognises a repeated assign."
            + _env("key_retention", "24h"),
            show_default=False,
        ),
    ] = None,
    lease: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="PostgreSQL journal: how long a replica's claim holds unless "
            "renewed; a dead replica's work moves on after it." + _env("lease", "30s"),
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="Server certificate chain (PEM); with --tls-key serves TLS."
            + _env("tls_cert", "none: plaintext"),
            show_default=False,
        ),
    ] = None,
    tls_key: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="Private key of --tls-cert (PEM, unencrypted)."
            + _env("tls_key", "none"),
            show_default=False,
        ),
    ] = None,
    tls_client_ca: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="Require client certificates signed by this CA (mutual TLS)."
            + _env("tls_client_ca", "none"),
            show_default=False,
        ),
    ] = None,
    health_port: Annotated[
        str | None,
        typer.Option(
            metavar="PORT",
            help="Also serve only health, in plaintext, on this port, for "
            "probes that cannot speak TLS; 0 is off." + _env("health_port", 0),
            show_default=False,
        ),
    ] = None,
    auth_token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN[,TOKEN]",
            help="Bearer tokens every call must present (health and reflection "
            "stay open). Prefer the environment variable: flags show in ps."
            + _env("auth_token", "none"),
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        str | None,
        typer.Option(
            metavar="PORT",
            help="Serve Prometheus /metrics on this port; 0 is off."
            + _env("metrics_port", 0),
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(
            metavar="HOST",
            help="Interface of /metrics."
            + _env("metrics_host", _DEFAULTS.metrics_host),
            show_default=False,
        ),
    ] = None,
    keepalive_time: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Ping an idle client after this long." + _env("keepalive_time", "1m"),
            show_default=False,
        ),
    ] = None,
    keepalive_timeout: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Close a connection whose ping is not answered in this time."
            + _env("keepalive_timeout", "20s"),
            show_default=False,
        ),
    ] = None,
    min_ping_interval: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Clients may ping this often." + _env("min_ping_interval", "10s"),
            show_default=False,
        ),
    ] = None,
    max_connection_age: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION|off",
            help="GOAWAY after this, so balancers spread clients again."
            + _env("max_connection_age", "10m"),
            show_default=False,
        ),
    ] = None,
    max_connection_age_grace: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION|off",
            help="Calls open at GOAWAY may run this long."
            + _env("max_connection_age_grace", "2m"),
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            metavar="LEVEL",
            help="DEBUG, INFO, WARNING or ERROR." + _env("log_level", "INFO"),
            show_default=False,
        ),
    ] = None,
    log_json: Annotated[
        bool | None,
        typer.Option(
            "--log-json/--no-log-json",
            help="Log JSON lines instead of text." + _env("log_json", "off"),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the Echo gRPC API until SIGTERM, SIGINT or an admin Shutdown."""
    flags: dict[str, object | None] = {
        "host": host,
        "port": port,
        "plan": plan,
        "root": root,
        "workers": workers,
        "data_dir": data_dir,
        "store": store,
        "admin_token": admin_token,
        "drain_grace": drain_grace,
        "max_waiting": max_waiting,
        "max_message_bytes": max_message_bytes,
        "max_read_bytes": max_read_bytes,
        "max_write_bytes": max_write_bytes,
        "retention": retention,
        "key_retention": key_retention,
        "lease": lease,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "tls_client_ca": tls_client_ca,
        "health_port": health_port,
        "auth_token": auth_token,
        "metrics_port": metrics_port,
        "metrics_host": metrics_host,
        "keepalive_time": keepalive_time,
        "keepalive_timeout": keepalive_timeout,
        "min_ping_interval": min_ping_interval,
        "max_connection_age": max_connection_age,
        "max_connection_age_grace": max_connection_age_grace,
        "log_level": log_level,
        "log_json": log_json,
    }
    path = config_file if config_file is not None else os.environ.get("ECHO_CONFIG")
    try:
        config = load_config(flags, config_file=Path(path) if path else None)
    except ConfigError as exc:
        typer.echo(f"echo-service: {exc}", err=True)
        raise typer.Exit(2) from None
    _configure_logging(config)
    raise typer.Exit(run(config))


def run(config: Config) -> int:
    """Serve until told to stop; the exit status."""
    # Imported here so that `--help` stays quick.
    from echo_service.server import build_server  # noqa: PLC0415
    from echo_service.server._security import (  # noqa: PLC0415
        TLSConfigError,
        server_credentials,
    )
    from echo_service.telemetry import (  # noqa: PLC0415
        RpcTelemetryInterceptor,
        TelemetryConfigError,
        setup_telemetry,
    )

    try:
        # Certificates first: a bad file is a configuration error (status 2),
        # found before the journal is opened.
        credentials = (
            server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
            if config.tls_cert is not None and config.tls_key is not None
            else None
        )
        served = _plan(config)
        telemetry = setup_telemetry(
            metrics_port=config.metrics_port or None,
            metrics_host=config.metrics_host,
            set_global=True,
        )
    except (PlanLoadError, OSError, TelemetryConfigError, TLSConfigError) as exc:
        typer.echo(f"echo-service: {exc}", err=True)
        return 2
    try:
        return _serve(
            config,
            build=lambda: build_server(
                config,
                plan=served,
                interceptors=[
                    RpcTelemetryInterceptor(
                        tracer_provider=telemetry.tracer_provider,
                        meter_provider=telemetry.meter_provider,
                    )
                ],
                credentials=credentials,
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
            ),
        )
    finally:
        # Last, after the gRPC server stopped, so the drain's own spans go too.
        telemetry.shutdown(timedelta(seconds=5))


def _serve(config: Config, *, build: Callable[[], EchoServer]) -> int:
    """Start, announce the address, wait for a signal or Shutdown, stop."""
    stop = threading.Event()
    signals = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            logger.warning("second %s while draining: exiting now", _name(signum))
            os._exit(1)
        logger.info("%s received: draining", _name(signum))
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            server = build()
            server.start()
        except Exception as exc:
            logger.debug("start failed", exc_info=True)
            typer.echo(f"echo-service: cannot start: {exc}", err=True)
            return 1
        if not config.log_json:  # with JSON logs, the server's own record says it
            print(
                f"echo-service listening on {server.address}",
                file=sys.stderr,
                flush=True,
            )
        # Wait for a signal or for the Shutdown RPC, whichever comes first.
        while not stop.wait(0.25):
            if server.wait(timedelta(0)):
                break
        server.stop(config.drain_grace)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _plan(config: Config) -> Plan:
    if config.plan is not None:
        return load_plan(config.plan)
    root = config.root.resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"--root {config.root} is not a directory")
    reserved = [config.data_dir.resolve()] if config.store == "sqlite" else []
    logger.info("serving the file plan rooted at %s", root)
    return file_plan(
        root,
        reserved=reserved,
        max_read_bytes=config.max_read_bytes,
        max_write_bytes=config.max_write_bytes,
    )


def _configure_logging(config: Config) -> None:
    from echo_service.telemetry import configure_logging  # noqa: PLC0415

    configure_logging(config.log_level, json=config.log_json)


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def main() -> None:
    """The ``echo-service`` console script."""
    app(prog_name="echo-service")


if __name__ == "__main__":
    main()
