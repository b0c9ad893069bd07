"""Fixtures shared by every test that needs a live Echo server.

The server is the production one: ``build_server`` on port 0, real sockets,
its own event-loop thread, torn down (drained, stopped, joined) after the
test. Reuse:

* ``gates`` and ``test_plan``: a small plan for tests (below); ``Block``
  actions wait until the test opens their gate, so "running work" is a
  state a test controls instead of a timing it hopes for.
* ``make_server(**settings)``: start a server with ``Config`` overrides (and
  optionally ``plan=``, ``journal=`` a store the test owns, and
  ``credentials=``, ``interceptors=``, ``tracer_provider=`` as
  ``build_server`` takes them); every server made is stopped at the end.
* ``server``: one running server with the test plan and a memory journal.
* ``client``: an ``echo_client.Client`` connected to ``server``.
* ``wait_until(predicate)``: poll a condition with a timeout (never a bare
  sleep).

The test plan's actions:

====================  =========================================================
``Echo(text)``        returns ``text``
``Add(a, b)``         returns ``a + b`` (ints)
``Json(value)``       returns the JSON ``value`` unchanged
``Fail(message)``     raises ``ValueError(message)``, not retryable
``Flaky(key, n)``     fails ``n`` times for ``key`` then returns the attempt
``Block(key)``        waits for ``gates.open(key)`` (or its cancellation)
``Nothing()``         returns no value
====================  =========================================================
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from echo_client import Client

from echo_service.config import Config
from echo_service.engine import (
    ExecutionContext,
    NonRetryable,
    Plan,
    PlanBuilder,
    ValueType,
)
from echo_service.server import EchoServer, build_server

WAIT = 10.0
"""Seconds a test waits for something that should happen at once."""


class Gates:
    """Named events that ``Block`` actions wait on; all opened at teardown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self.entered: dict[str, threading.Event] = {}

    def _get(self, table: dict[str, threading.Event], key: str) -> threading.Event:
        with self._lock:
            return table.setdefault(key, threading.Event())

    def open(self, key: str) -> None:
        self._get(self._events, key).set()

    def wait_entered(self, key: str, timeout: float = WAIT) -> bool:
        """Block until a ``Block(key)`` attempt is running."""
        return self._get(self.entered, key).wait(timeout)

    def block(self, ctx: ExecutionContext, key: str) -> str:
        self._get(self.entered, key).set()
        gate = self._get(self._events, key)
        while not gate.wait(0.02):
            if ctx.cancellation.cancelled:
                raise InterruptedError(
                    f"gate {key} abandoned: {ctx.cancellation.reason}"
                )
        return key

    def open_all(self) -> None:
        with self._lock:
            events = list(self._events.values())
        for event in events:
            event.set()


def make_test_plan(gates: Gates) -> Plan:
    builder = PlanBuilder()
    flaky_counts: dict[str, int] = {}
    lock = threading.Lock()

    @builder.action(
        "Echo", inputs=[("text", ValueType.STRING)], output=ValueType.STRING
    )
    def echo(ctx: ExecutionContext, text: str) -> str:
        return text

    @builder.action(
        "Add", inputs=[("a", ValueType.INT), ("b", ValueType.INT)], output=ValueType.INT
    )
    def add(ctx: ExecutionContext, a: int, b: int) -> int:
        return a + b

    @builder.action("Json", inputs=[("value", ValueType.JSON)], output=ValueType.JSON)
    def json_identity(ctx: ExecutionContext, value: object) -> object:
        return value

    @builder.action(
        "Fail", inputs=[("message", ValueType.STRING)], output=ValueType.STRING
    )
    def fail(ctx: ExecutionContext, message: str) -> str:
        raise NonRetryable(message) from ValueError(message)

    @builder.action(
        "Flaky",
        inputs=[("key", ValueType.STRING), ("n", ValueType.INT)],
        output=ValueType.INT,
    )
    def flaky(ctx: ExecutionContext, key: str, n: int) -> int:
        with lock:
            flaky_counts[key] = flaky_counts.get(key, 0) + 1
            seen = flaky_counts[key]
        if seen <= n:
            raise RuntimeError(f"failure {seen} of {n}")
        return ctx.attempt

    builder.action(
        "Block", inputs=[("key", ValueType.STRING)], output=ValueType.STRING
    )(gates.block)

    @builder.action("Nothing", output=ValueType.NONE)
    def nothing(ctx: ExecutionContext) -> None:
        return None

    return builder.build()


@pytest.fixture
def gates() -> Iterator[Gates]:
    found = Gates()
    yield found
    found.open_all()


@pytest.fixture
def test_plan(gates: Gates) -> Plan:
    return make_test_plan(gates)


def server_config(**overrides: Any) -> Config:
    """Settings for a test server: port 0, memory journal, quick heartbeats."""
    base = Config(
        port=0,
        store="memory",
        workers=2,
        rpc_threads=4,
        drain_grace=timedelta(seconds=5),
        min_heartbeat_interval=timedelta(milliseconds=20),
        stop_timeout=timedelta(seconds=2),
    )
    return replace(base, **overrides)


@pytest.fixture
def make_server(
    tmp_path: Path, test_plan: Plan, gates: Gates
) -> Iterator[Callable[..., EchoServer]]:
    started: list[EchoServer] = []

    def make(
        *,
        plan: Plan | None = None,
        journal: Any = None,
        credentials: Any = None,
        interceptors: Sequence[Any] = (),
        tracer_provider: Any = None,
        **overrides: Any,
    ) -> EchoServer:
        overrides.setdefault("data_dir", tmp_path / f"data{len(started)}")
        server = build_server(
            server_config(**overrides),
            plan=plan or test_plan,
            store=journal,
            credentials=credentials,
            interceptors=interceptors,
            tracer_provider=tracer_provider,
        )
        server.start()
        started.append(server)
        return server

    yield make
    gates.open_all()
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., EchoServer]) -> EchoServer:
    return make_server()


@pytest.fixture
def client(server: EchoServer) -> Iterator[Client]:
    with Client(server.address, timeout=timedelta(seconds=WAIT)) as found:
        yield found


def wait_until(
    predicate: Callable[[], bool], *, timeout: float = WAIT, every: float = 0.01
) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return predicate()
