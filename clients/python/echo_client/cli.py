"""``echoctl``: the Echo service from a shell.

Output is machine-readable: one JSON object per line on stdout. Notes,
errors and progress go to stderr. Exit status:

* 0: everything asked was accepted (and, with ``--wait``, succeeded);
* 1: an action failed or was cancelled, a request or an input line was
  refused (each bad line is named on stderr with its line number);
* 2: the command line itself is wrong (a bad flag, a value outside what
  its proto field can hold, an unreadable ``--from`` file);
* 3: the server could not be reached, or a call failed for another reason;
* 130: interrupted (Ctrl-C).

A negative number is an argument, not a flag: ``echoctl assign Add -5 1``.
``--`` ends the flags; every word after it is an argument.

Every command takes ``--target HOST:PORT`` (or ``ECHO_TARGET``; default
``localhost:50051``), ``--auth-token`` (or ``ECHO_AUTH_TOKEN``) for a server
that asks for bearer tokens, and ``--tls``/``--tls-ca`` (with ``--tls-cert``
and ``--tls-key`` for mutual TLS) for a server behind TLS. See
``echo_client._lines`` for how arguments and input lines are typed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Annotated, Any

import grpc
import typer
import typer.core
import typer.main

from echo_client._aio import AsyncClient
from echo_client._call import DEFAULT_TARGET, Backoff
from echo_client._client import Client
from echo_client._errors import (
    DeadlineExceededError,
    EchoError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
)
from echo_client._lines import LineError, ParsedLine, coerce_words, dumps, parse_line
from echo_client._types import (
    FINAL_STATES,
    Action,
    Assigned,
    Event,
    Options,
    Signature,
    State,
)

__all__ = ["app", "main"]

OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3
INTERRUPTED = 130  # 128 + SIGINT, as shells report it

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
# Sequences are uint64 on the wire; the journal numbers them as int64.
_SEQUENCE_MAX = 2**63 - 1
_MAX_SECONDS = 315_576_000_000.0
"""The longest ``google.protobuf.Duration`` (10,000 years); also caps
``--timeout``, which a longer value would overflow."""


def _seconds(least: float) -> Callable[[str], float]:
    """A flag's parser for a finite count of seconds from ``least`` up."""

    def parse(text: str | float) -> float:
        try:
            value = float(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a number of seconds") from None
        if not (math.isfinite(value) and least <= value <= _MAX_SECONDS):
            raise typer.BadParameter(
                f"{text!r}: seconds from {least:g} to {_MAX_SECONDS:.0f}"
            )
        return value

    return parse


# Typer has shipped click both as a dependency and vendored; the public
# BadParameter names the base classes either way.
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


class _Command(typer.core.TyperCommand):
    """A command whose negative numbers are arguments, not unknown flags.

    Click reads any word starting with ``-`` as a flag, so ``Add -5 1`` fails
    with "No such option: -5". Here the words are split before click sees
    them: flags (with their values) first, then ``--``, then the arguments
    in their order. Words after the user's own ``--`` stay arguments.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        takes_value: set[str] = set()
        flags: set[str] = set()
        for param in self.get_params(ctx):
            if not isinstance(param, typer.core.TyperOption):
                continue
            names = [*param.opts, *param.secondary_opts]
            flags.update(names)
            if not param.is_flag and not param.count:
                takes_value.update(names)
        options: list[str] = []
        arguments: list[str] = []
        words = iter(args)
        for word in words:
            if word == "--":
                arguments.extend(words)
                break
            if _is_negative_number(word) and word not in flags:
                arguments.append(word)
            elif word.startswith("-") and len(word) > 1:
                options.append(word)
                if word in takes_value:
                    options.extend(itertools.islice(words, 1))
            else:
                arguments.append(word)
        if not arguments:
            return super().parse_args(ctx, options)
        return super().parse_args(ctx, [*options, "--", *arguments])


def _is_negative_number(word: str) -> bool:
    if not word.startswith("-") or word.startswith("--"):
        return False
    try:
        float(word)
    except ValueError:
        return False
    return True


app = typer.Typer(
    help="Talk to an Echo service: assign actions, wait, stream events, cancel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@dataclass(frozen=True, slots=True)
class _Settings:
    target: str
    timeout: timedelta
    metadata: tuple[tuple[str, str], ...] = ()
    credentials: grpc.ChannelCredentials | None = None

    def client_options(self) -> dict[str, Any]:
        return {
            "timeout": self.timeout,
            "metadata": self.metadata,
            "credentials": self.credentials,
        }


def _note(text: str) -> None:
    print(f"echoctl: {text}", file=sys.stderr, flush=True)


def _line_span(batch: list[ParsedLine]) -> str:
    """``line 3`` or ``lines 3-9``: the input lines a batch came from."""
    first, last = batch[0].number, batch[-1].number
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _out(body: object) -> None:
    sys.stdout.write(dumps(body) + "\n")


def _exit_for(error: EchoError) -> int:
    if isinstance(error, UnavailableError | DeadlineExceededError):
        return UNREACHABLE
    return FAILED


def _report(error: EchoError) -> int:
    _note(str(error))
    return _exit_for(error)


def _utf8(value: str, what: str) -> str:
    """``value`` unchanged, or a usage exit when it cannot be sent as text
    (words that were not UTF-8 reach Python as lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _note(f"{what} is not UTF-8 text")
        raise typer.Exit(USAGE) from None
    return value


def _header(value: str, what: str) -> str:
    """``value`` unchanged, or a usage exit when gRPC cannot carry it in a
    header (printable ASCII only)."""
    if not (value.isascii() and value.isprintable()):
        _note(f"{what} must be printable ASCII")
        raise typer.Exit(USAGE)
    return value


def _check_target(target: str) -> str:
    if (
        not target
        or not target.isascii()
        or not target.isprintable()
        or (" " in target)
    ):
        _note(f"--target {target!r}: expected HOST:PORT")
        raise typer.Exit(USAGE)
    found = re.fullmatch(r"(?:[^/]*):(\d+)", target)
    if found and not 0 < int(found.group(1)) <= 65535:
        _note(f"--target {target!r}: the port must be 1 to 65535")
        raise typer.Exit(USAGE)
    return target


@app.callback()
def _options(  # noqa: PLR0917 - typer maps each parameter to a flag
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Option(
            envvar="ECHO_TARGET", help="Server address, host:port.", show_envvar=True
        ),
    ] = DEFAULT_TARGET,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds each call may take.", parser=_seconds(0.001)),
    ] = 30.0,
    auth_token: Annotated[
        str | None,
        typer.Option(
            envvar="ECHO_AUTH_TOKEN",
            show_envvar=True,
            help="Bearer token sent with every call (prefer the variable).",
        ),
    ] = None,
    tls: Annotated[
        bool, typer.Option(help="Use TLS, trusting the system's root CAs.")
    ] = False,
    tls_ca: Annotated[
        Path | None,
        typer.Option(help="Use TLS, trusting this CA (PEM).", envvar="ECHO_TLS_CA"),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="Client certificate (PEM) for mutual TLS."),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="Its private key (PEM) for mutual TLS.")
    ] = None,
) -> None:
    """Talk to an Echo service: assign actions, wait, stream events, cancel."""
    _check_target(target)
    if auth_token:
        _header(auth_token, "--auth-token (or ECHO_AUTH_TOKEN)")
    metadata = (("authorization", f"Bearer {auth_token}"),) if auth_token else ()
    credentials = None
    if tls or tls_ca or tls_cert or tls_key:
        if (tls_cert is None) != (tls_key is None):
            _note("--tls-cert and --tls-key go together")
            raise typer.Exit(USAGE)
        try:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls_ca.read_bytes() if tls_ca else None,
                private_key=tls_key.read_bytes() if tls_key else None,
                certificate_chain=tls_cert.read_bytes() if tls_cert else None,
            )
        except OSError as exc:
            _note(f"cannot read {exc.filename}: {exc.strerror}")
            raise typer.Exit(USAGE) from None
    ctx.obj = _Settings(target, timedelta(seconds=timeout), metadata, credentials)


def _settings(ctx: typer.Context) -> _Settings:
    settings = ctx.obj
    assert isinstance(settings, _Settings)
    return settings


def _client(settings: _Settings) -> Client:
    return Client(settings.target, **settings.client_options())


def _signatures(client: Client) -> dict[str, Signature]:
    return {s.name: s for s in client.list_signatures()}


# -- simple commands ---------------------------------------------------------


@app.command(cls=_Command)
def signatures(ctx: typer.Context) -> None:
    """Print the plan's signatures, one JSON object per line."""
    settings = _settings(ctx)
    try:
        with _client(settings) as client:
            found = client.list_signatures()
    except EchoError as exc:
        raise typer.Exit(_report(exc)) from None
    for signature in found:
        _out(signature.as_dict())


@app.command(cls=_Command)
def get(
    ctx: typer.Context, action_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """Print one action, with its state, as a JSON object."""
    _utf8(action_id, "ID")
    try:
        with _client(_settings(ctx)) as client:
            _out(client.get(action_id).as_dict())
    except EchoError as exc:
        raise typer.Exit(_report(exc)) from None


@app.command(cls=_Command)
def cancel(
    ctx: typer.Context,
    action_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Recorded with the cancellation.")] = "",
) -> None:
    """Cancel an action; print it as it stands afterwards."""
    _utf8(action_id, "ID")
    _utf8(reason, "--reason")
    try:
        with _client(_settings(ctx)) as client:
            _out(client.cancel(action_id, reason).as_dict())
    except EchoError as exc:
        raise typer.Exit(_report(exc)) from None


@app.command(cls=_Command)
def shutdown(
    ctx: typer.Context,
    admin_token: Annotated[
        str,
        typer.Option(
            envvar="ECHO_ADMIN_TOKEN",
            show_envvar=True,
            help="The server's admin token (prefer the environment variable).",
            prompt=False,
        ),
    ] = "",
    grace: Annotated[
        float | None,
        typer.Option(help="Seconds running actions may take.", parser=_seconds(0)),
    ] = None,
) -> None:
    """Ask the server to drain and stop; needs its admin token."""
    if not admin_token:
        _note("an admin token is required (--admin-token or ECHO_ADMIN_TOKEN)")
        raise typer.Exit(USAGE)
    _header(admin_token, "--admin-token (or ECHO_ADMIN_TOKEN)")
    try:
        with _client(_settings(ctx)) as client:
            report = client.shutdown(
                admin_token, grace=None if grace is None else timedelta(seconds=grace)
            )
    except EchoError as exc:
        raise typer.Exit(_report(exc)) from None
    _out({"running": report.running, "waiting": report.waiting})


@app.command(cls=_Command)
def stream(  # noqa: PLR0917 - typer maps each parameter to a flag
    ctx: typer.Context,
    after: Annotated[
        int | None,
        typer.Option(
            help="Replay events after this sequence first (0: all).",
            min=0,
            max=_SEQUENCE_MAX,
        ),
    ] = None,
    action_id: Annotated[
        list[str] | None, typer.Option("--id", help="Only this action (repeatable).")
    ] = None,
    name: Annotated[
        list[str] | None,
        typer.Option("--name", help="Only this action name (repeatable)."),
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="NAME",
            help="Only events in this state, e.g. succeeded (repeatable).",
        ),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(
            help="Stop after this many events (default: until Ctrl-C).", min=1
        ),
    ] = None,
) -> None:
    """Print events as JSON lines as they happen; reconnects and resumes.

    --state keeps the events in the states named (e.g. --state succeeded
    --state failed --state cancelled for outcomes alone). Runs until
    --count events are printed or Ctrl-C (exit status 130).
    """
    for word in (*(action_id or ()), *(name or ())):
        _utf8(word, "--id/--name")
    states = _states(state or ())
    printed = 0
    try:
        with (
            _client(_settings(ctx)) as client,
            client.stream(
                after=after,
                action_ids=action_id or (),
                names=name or (),
                states=states,
            ) as events,
        ):
            for event in events:
                _out(event.as_dict())
                sys.stdout.flush()
                printed += 1
                if count is not None and printed >= count:
                    break
    except EchoError as exc:
        raise typer.Exit(_report(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(INTERRUPTED) from None


def _states(names: Iterable[str]) -> list[State]:
    """The states ``--state`` names, in any case; a usage exit for a name
    that is none (UNSPECIFIED, which the server refuses, included)."""
    known = {s.value: s for s in State if s is not State.UNSPECIFIED}
    out: list[State] = []
    for name in names:
        found = known.get(name.lower().removeprefix("action_state_"))
        if found is None:
            _note(f"--state {name!r}: expected one of {', '.join(known)}")
            raise typer.Exit(USAGE)
        out.append(found)
    return out


# -- assign -----------------------------------------------------------------


@app.command(cls=_Command)
def assign(  # noqa: PLR0917 - typer maps each parameter to a flag
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="The action's name.")] = None,
    args: Annotated[
        list[str] | None, typer.Argument(help="Arguments, typed by the signature.")
    ] = None,
    from_file: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="FILE",
            help='Assign every line of a JSON-lines file ("-" for stdin): '
            '{"name": ..., "args": [...], "options": {...}, "metadata": {...}}.',
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for each action and print its outcome.")
    ] = False,
    delay: Annotated[
        float | None,
        typer.Option(help="Seconds before the action may run.", parser=_seconds(0)),
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option(help="Higher runs first.", min=_INT32_MIN, max=_INT32_MAX),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="A repeat with this key returns the first action."),
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE metadata (repeatable).")
    ] = None,
    chunk: Annotated[
        int, typer.Option(help="Actions per AssignMany call with --from.", min=1)
    ] = 500,
) -> None:
    """Assign one action (NAME ARG...) or every line of --from FILE.

    Negative numbers are arguments (Add -5 1); -- ends the flags.
    """
    settings = _settings(ctx)
    if from_file is not None:
        if name is not None or args:
            _note("give either NAME ARG... or --from FILE, not both")
            raise typer.Exit(USAGE)
        raise typer.Exit(_assign_file(settings, from_file, wait=wait, chunk=chunk))
    if name is None:
        _note("an action name (or --from FILE) is required")
        raise typer.Exit(USAGE)
    _utf8(name, "the action name")
    if idempotency_key is not None:
        _utf8(idempotency_key, "--idempotency-key")
    pairs = {}
    for item in metadata or ():
        key, sep, value = _utf8(item, "--metadata").partition("=")
        if not sep or not key:
            _note(f"--metadata {item!r}: expected KEY=VALUE")
            raise typer.Exit(USAGE)
        pairs[key] = value
    options = Options(
        delay=None if delay is None else timedelta(seconds=delay),
        priority=priority,
        idempotency_key=idempotency_key,
    )
    raise typer.Exit(_assign_one(settings, name, args or [], options, pairs, wait=wait))


def _assign_one(
    settings: _Settings,
    name: str,
    words: Sequence[str],
    options: Options,
    metadata: dict[str, str],
    *,
    wait: bool,
) -> int:
    try:
        with _client(settings) as client:
            try:
                values = coerce_words(name, words, _signatures(client))
            except LineError as exc:
                _note(str(exc))
                return FAILED
            assigned = client.assign(name, *values, options=options, metadata=metadata)
            if not wait:
                _out(_accepted(assigned, None))
                return OK
            done = client.wait(assigned.action.id, timeout=None)
    except EchoError as exc:
        return _report(exc)
    _out(_outcome_of_action(done, None))
    return OK if done.state is State.SUCCEEDED else FAILED


def _accepted(assigned: Assigned, line: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": assigned.action.id,
        "name": assigned.action.name,
        "state": str(assigned.action.state),
    }
    if assigned.duplicate:
        body["duplicate"] = True
    if line is not None:
        body["line"] = line
    return body


def _outcome_of_action(action: Action, line: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": action.id,
        "name": action.name,
        "state": str(action.state),
    }
    if action.state is State.SUCCEEDED:
        body["result"] = action.result
    elif action.error is not None:
        body["error"] = action.error.as_dict()
    if line is not None:
        body["line"] = line
    return body


def _outcome_of_event(event: Event, line: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event.action_id,
        "name": event.action_name,
        "state": str(event.state),
    }
    if event.state is State.SUCCEEDED:
        body["result"] = event.result
    elif event.error is not None:
        body["error"] = event.error.as_dict()
    if line is not None:
        body["line"] = line
    return body


# -- assign --from ------------------------------------------------------------


def _lines(source: str) -> Iterator[bytes]:
    """Raw lines: each is decoded on its own so that one line that is not
    UTF-8 is refused by its number instead of sinking the whole input."""
    if source == "-":
        yield from sys.stdin.buffer
        return
    with Path(source).open("rb") as handle:
        yield from handle


def _assign_file(settings: _Settings, source: str, *, wait: bool, chunk: int) -> int:
    try:
        lines = list(_lines(source))
    except OSError as exc:
        _note(f"cannot read {source}: {exc.strerror or exc}")
        return USAGE
    try:
        return asyncio.run(_Bulk(settings, lines, wait=wait, chunk=chunk).run())
    except KeyboardInterrupt:
        return INTERRUPTED


class _Progress:
    """A bar on a terminal; otherwise a line every ten seconds on long runs."""

    _EVERY = 10.0

    def __init__(self, total: int, *, stream: IO[str]) -> None:
        self._total = total
        self._done = 0
        self._stream = stream
        self._bar: Any = None
        self._started = self._last = time.monotonic()
        if total and stream.isatty():
            from rich.console import Console  # noqa: PLC0415 - terminals only
            from rich.progress import Progress  # noqa: PLC0415

            self._bar = Progress(console=Console(file=stream), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("finished", total=total)

    def advance(self) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.advance(self._task)
            return
        now = time.monotonic()
        if now - self._last >= self._EVERY:
            self._last = now
            print(
                f"echoctl: {self._done}/{self._total} finished "
                f"after {now - self._started:.0f}s",
                file=self._stream,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


class _Bulk:
    """Assign many lines in chunks, and (with ``wait``) collect every outcome
    from one event stream opened before the first assign."""

    def __init__(
        self, settings: _Settings, lines: Sequence[bytes], *, wait: bool, chunk: int
    ) -> None:
        self._settings = settings
        self._lines = lines
        self._wait = wait
        self._chunk = chunk
        self._status = OK
        self._pending: dict[str, int] = {}  # action id -> its first line
        self._finals: dict[str, Event] = {}  # ended before their assign answered
        self._reported: set[str] = set()
        self._first_line: dict[str, int] = {}  # action id -> its first line
        self._assigning = True
        self._all_done = asyncio.Event()
        self._progress: _Progress | None = None

    def _fail(self, status: int = FAILED) -> None:
        self._status = max(self._status, status)

    async def run(self) -> int:
        async with AsyncClient(
            self._settings.target, **self._settings.client_options()
        ) as client:
            try:
                signatures = {s.name: s for s in await client.list_signatures()}
            except EchoError as exc:
                return _report(exc)
            parsed = self._parse(signatures)
            if not self._wait:
                await self._assign_all(client, parsed)
                return self._status
            self._progress = _Progress(len(parsed), stream=sys.stderr)
            names = {p.request.name for p in parsed}
            # Outcomes only: the transitions before them are of no use here.
            events = client.stream(names=names, states=FINAL_STATES)
            try:
                await events.start()
                consumer = asyncio.create_task(self._consume(events))
                await self._assign_all(client, parsed)
                self._assigning = False
                self._check_done()
                waiter = asyncio.create_task(self._all_done.wait())
                await asyncio.wait(
                    {consumer, waiter}, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                if consumer.done() and (error := consumer.exception()) is not None:
                    if isinstance(error, EchoError):
                        _note(f"the event stream failed: {error}")
                    self._fail(UNREACHABLE)
                    _note(f"{len(self._pending)} actions' outcomes are unknown")
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer
            except EchoError as exc:
                return max(self._status, _report(exc))
            finally:
                events.close()
                self._progress.close()
            return self._status

    def _parse(self, signatures: dict[str, Signature]) -> list[ParsedLine]:
        parsed: list[ParsedLine] = []
        for number, raw in enumerate(self._lines, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                _note(
                    f"line {number}: not UTF-8 text "
                    f"(byte {raw[exc.start]:#04x} at column {exc.start + 1})"
                )
                self._fail()
                continue
            try:
                line = parse_line(text, number, signatures)
            except LineError as exc:
                _note(f"line {number}: {exc}")
                self._fail()
                continue
            if line is not None:
                parsed.append(line)
        return parsed

    async def _assign_all(self, client: AsyncClient, parsed: list[ParsedLine]) -> None:
        for start in range(0, len(parsed), self._chunk):
            batch = parsed[start : start + self._chunk]
            for line, assigned in await self._assign_chunk(client, batch):
                self._accepted(line, assigned)
        sys.stdout.flush()

    async def _assign_chunk(
        self, client: AsyncClient, batch: list[ParsedLine]
    ) -> list[tuple[int, Assigned]]:
        """AssignMany with retries: after the server's hint when its queue is
        full, with backoff when it is unavailable, once without the lines it
        refused as invalid (a batch is all or none), and in halves when it
        was too large for the server's message limit."""
        backoff = Backoff(initial=timedelta(milliseconds=200))
        while batch:
            try:
                results = await client.assign_many([p.request for p in batch])
                return [(p.number, a) for p, a in zip(batch, results, strict=True)]
            except InvalidArgumentError as exc:
                bad = self._refused_lines(batch, exc)
                if not bad:
                    _note(f"{_line_span(batch)}: refused: {exc.message}")
                    self._fail()
                    return []
                batch = [p for i, p in enumerate(batch) if i not in bad]
            except ResourceExhaustedError as exc:
                if exc.retry_delay is None:  # no queue hint: the call was too big
                    return await self._in_halves(client, batch, exc)
                seconds = exc.retry_delay.total_seconds()
                _note(f"the server's queue is full; retrying in {seconds:g}s")
                await asyncio.sleep(seconds)
            except UnavailableError as exc:
                pause = backoff.next_delay()
                if pause is None:
                    raise
                _note(f"the server is unavailable ({exc.message}); retrying")
                await asyncio.sleep(pause)
        return []

    async def _in_halves(
        self, client: AsyncClient, batch: list[ParsedLine], exc: EchoError
    ) -> list[tuple[int, Assigned]]:
        """A batch over the server's message limit, sent again as two halves
        until each fits; one line that alone is too big is refused."""
        if len(batch) == 1:
            _note(f"line {batch[0].number}: refused: {exc.message}")
            self._fail()
            return []
        half = len(batch) // 2
        first = await self._assign_chunk(client, batch[:half])
        return first + await self._assign_chunk(client, batch[half:])

    def _refused_lines(self, batch: list[ParsedLine], error: EchoError) -> set[int]:
        bad: dict[int, list[str]] = {}
        for violation in error.field_violations:
            found = re.match(r"actions\[(\d+)\]\.?(.*)", violation.field)
            if found and int(found.group(1)) < len(batch):
                index = int(found.group(1))
                bad.setdefault(index, []).append(
                    f"{found.group(2) or 'action'}: {violation.description}"
                )
        for index, problems in sorted(bad.items()):
            _note(f"line {batch[index].number}: refused: {'; '.join(problems)}")
            self._fail()
        return set(bad)

    def _accepted(self, line: int, assigned: Assigned) -> None:
        action = assigned.action
        if not self._wait:
            _out(_accepted(assigned, line))
            return
        first = self._first_line.setdefault(action.id, line)
        if first != line:  # a repeat: one outcome per action, said so
            _note(
                f"line {line}: the action of line {first} again (same "
                "idempotency key); its outcome is reported once, for line "
                f"{first}"
            )
            self._progress_advance()
            return
        if action.finished:
            self._report_action(action, line)
        elif (event := self._finals.pop(action.id, None)) is not None:
            self._report_event(event, line)
        else:
            self._pending[action.id] = line

    async def _consume(self, events: Any) -> None:
        async for event in events:
            if not event.finished:
                continue
            line = self._pending.pop(event.action_id, None)
            if line is not None:
                self._report_event(event, line)
                self._check_done()
            elif self._assigning and event.action_id not in self._reported:
                self._finals[event.action_id] = event

    def _check_done(self) -> None:
        if not self._assigning and not self._pending:
            self._all_done.set()

    def _report_event(self, event: Event, line: int) -> None:
        self._reported.add(event.action_id)
        _out(_outcome_of_event(event, line))
        if event.state is not State.SUCCEEDED:
            self._fail()
        self._progress_advance()

    def _report_action(self, action: Action, line: int) -> None:
        self._reported.add(action.id)
        _out(_outcome_of_action(action, line))
        if action.state is not State.SUCCEEDED:
            self._fail()
        self._progress_advance()

    def _progress_advance(self) -> None:
        if self._progress is not None:
            self._progress.advance()


def _usage(error: Exception) -> int:
    """Click's usage errors as one ``echoctl:`` line instead of a block."""
    if type(error).__name__ == "NoArgsIsHelpError":
        getattr(error, "show")()  # the help text itself  # noqa: B009
        return USAGE
    message = " ".join(str(getattr(error, "format_message", error.__str__)()).split())
    command = getattr(getattr(error, "ctx", None), "command_path", "echoctl")
    _note(f"{message} (see '{command} --help')")
    return USAGE


def _say_reconnects() -> None:
    """The client library logs each reopened event stream; a person at the
    terminal should see it too, not a stream silently waiting."""
    library = logging.getLogger("echo_client")
    if any(getattr(h, "echoctl", False) for h in library.handlers):
        return  # main() run again in one process
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("echoctl: %(message)s"))
    handler.echoctl = True  # type: ignore[attr-defined]
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    library.propagate = False


def main(argv: Iterable[str] | None = None) -> None:
    """The ``echoctl`` console script."""
    _say_reconnects()
    command = typer.main.get_command(app)
    try:
        status = command.main(
            args=None if argv is None else list(argv),
            prog_name="echoctl",
            standalone_mode=False,
        )
    except _UsageError as exc:
        status = _usage(exc)
    except _ClickException as exc:
        _note(" ".join(str(exc).split()))
        status = USAGE
    except (KeyboardInterrupt, typer.Abort):
        status = INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``| head``): not an error of ours.
        with contextlib.suppress(OSError):
            sys.stderr.close()
        status = OK
    sys.exit(status if isinstance(status, int) else OK)


if __name__ == "__main__":
    main()
