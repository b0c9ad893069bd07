"""``echo-service``: run the Echo service.

``echo-service serve`` takes its settings from flags and ``ECHO_*``
environment variables (see ``echo_service.config``). Once it listens it
writes one line to stderr, ``echo-service listening on HOST:PORT``, which is
how a script that asked for port 0 learns the port.

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
from datetime import timedelta
from types import FrameType
from typing import Annotated

import typer

from echo_service.config import Config, ConfigError, load_config
from echo_service.engine import Plan
from echo_service.plans import PlanLoadError, file_plan, load_plan

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
            help="Journal: sqlite, memory, or a postgresql:// URL."
            + _env("store", _DEFAULTS.store),
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
        "log_level": log_level,
        "log_json": log_json,
    }
    try:
        config = load_config(flags)
    except ConfigError as exc:
        typer.echo(f"echo-service: {exc}", err=True)
        raise typer.Exit(2) from None
    _configure_logging(config)
    raise typer.Exit(run(config))


def run(config: Config) -> int:
    """Serve until told to stop; the exit status."""
    # Imported here so that `--help` stays quick.
    from echo_service.server import build_server  # noqa: PLC0415

    try:
        served = _plan(config)
    except (PlanLoadError, OSError) as exc:
        typer.echo(f"echo-service: {exc}", err=True)
        return 2
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
            server = build_server(config, plan=served)
            server.start()
        except Exception as exc:
            logger.debug("start failed", exc_info=True)
            typer.echo(f"echo-service: cannot start: {exc}", err=True)
            return 1
        print(
            f"echo-service listening on {server.address}", file=sys.stderr, flush=True
        )
        # Wait for a signal or for the Shutdown RPC, whichever comes first.
        while not stop.wait(0.25):
            if server.wait(timedelta(0)):
                break
        server.stop(config.drain_grace)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _flush_telemetry(timedelta(seconds=5))
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
    handler = logging.StreamHandler(sys.stderr)
    if config.log_json:
        handler.setFormatter(_JsonLines())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level.upper())


class _JsonLines(logging.Formatter):
    """One JSON object per record, with the ``extra`` context it carries."""

    _PLAIN = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)))

    def format(self, record: logging.LogRecord) -> str:
        import json  # noqa: PLC0415 - only when JSON logs are on

        body: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._PLAIN and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def _flush_telemetry(limit: timedelta) -> None:
    """Flush the global OpenTelemetry providers, if they are SDK ones."""
    from opentelemetry import metrics, trace  # noqa: PLC0415

    millis = int(limit.total_seconds() * 1000)
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            try:
                flush(millis)
            except Exception:
                logger.warning("telemetry could not be flushed", exc_info=True)


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def main() -> None:
    """The ``echo-service`` console script."""
    app(prog_name="echo-service")


if __name__ == "__main__":
    main()
