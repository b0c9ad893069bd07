"""The synchronous and the asyncio client behave alike against a live
server: each test runs through both, since they share everything but I/O."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from echo_client import (
    ActionRequest,
    AsyncClient,
    Backoff,
    Client,
    DeadlineExceededError,
    Event,
    InvalidArgumentError,
    Options,
    PermissionDeniedError,
    State,
)
from opentelemetry.sdk.trace import TracerProvider

from echo_service.server import EchoServer
from tests.clients.python._both import KINDS, WAIT_TD, use_client
from tests.conftest import Gates

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("kind", KINDS)
def test_assign_stream_refuses_a_bad_value_before_calling(
    server: EchoServer, kind: str
) -> None:
    actions = [ActionRequest("Add", (1, 2)), ActionRequest("Add", ({1, 2}, 1))]
    with pytest.raises(TypeError, match="Json"):
        use_client(kind, server.address, lambda c: c.assign_stream(actions))


@pytest.mark.parametrize("kind", KINDS)
def test_assign_stream_refuses_a_chunk_below_one(server: EchoServer, kind: str) -> None:
    actions = [ActionRequest("Add", (1, 2))]
    with pytest.raises(ValueError, match="chunk"):
        use_client(kind, server.address, lambda c: c.assign_stream(actions, chunk=0))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk", [1, 2, 256])
def test_assign_stream_keeps_the_order_whatever_the_chunk(
    server: EchoServer, kind: str, chunk: int
) -> None:
    actions = [ActionRequest("Add", (i, 1)) for i in range(5)]
    assigned = use_client(
        kind, server.address, lambda c: c.assign_stream(actions, chunk=chunk)
    )
    assert [a.action.args for a in assigned] == [(i, 1) for i in range(5)]
    assert len({a.action.id for a in assigned}) == 5


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_call_raises_the_same_error_with_its_violations(
    server: EchoServer, kind: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        use_client(
            kind,
            server.address,
            lambda c: c.assign("Add", 1, "two", options=Options(priority=0)),
        )
    assert [v.field for v in caught.value.field_violations] == ["action.args[1]"]
    assert isinstance(caught.value.__cause__, grpc.RpcError)


@pytest.mark.parametrize("kind", KINDS)
def test_the_current_trace_context_is_sent_with_the_call(
    client: Client, kind: str
) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("caller") as span:
        assigned = use_client(kind, client.target, lambda c: c.assign("Add", 1, 2))
    with client.stream(after=0, action_ids=[assigned.action.id]) as events:
        first = next(iter(events))
    assert first.trace_id == format(span.get_span_context().trace_id, "032x")


@pytest.mark.parametrize("kind", KINDS)
def test_wait_returns_the_final_state_or_raises_at_its_deadline(
    client: Client, gates: Gates, kind: str
) -> None:
    done = use_client(
        kind,
        client.target,
        lambda c: c.wait(client.assign("Echo", "hi").action.id, timeout=WAIT_TD),
    )
    assert (done.state, done.result) == (State.SUCCEEDED, "hi")
    blocked = client.assign("Block", f"wait-{kind}").action.id
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        use_client(
            kind,
            client.target,
            lambda c: c.wait(blocked, timeout=timedelta(milliseconds=300)),
        )
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("kind", KINDS)
def test_shutdown_needs_the_admin_token_and_reports_what_runs(
    make_server: Callable[..., EchoServer], gates: Gates, kind: str
) -> None:
    server = make_server(admin_token="t0ken")
    with pytest.raises(PermissionDeniedError):
        use_client(kind, server.address, lambda c: c.shutdown("wrong"))
    with Client(server.address, timeout=WAIT_TD) as client:
        client.assign("Block", f"shut-{kind}")
    assert gates.wait_entered(f"shut-{kind}")
    report = use_client(
        kind,
        server.address,
        lambda c: c.shutdown("t0ken", grace=timedelta(seconds=5)),
    )
    assert report.running == 1
    gates.open(f"shut-{kind}")
    assert server.wait(WAIT_TD)


def test_the_asyncio_stream_resumes_across_a_server_restart(
    make_server: Callable[..., EchoServer], tmp_path: Path
) -> None:
    """Given an asyncio stream on a server with a durable journal, when the
    server stops and another starts on the same port and journal, then the
    stream reconnects by itself and goes on after the last sequence seen."""
    journal = tmp_path / "journal"
    first = make_server(store="sqlite", data_dir=journal)

    async def scenario() -> tuple[list[Event], int, bool]:
        async with AsyncClient(first.address, timeout=WAIT_TD) as client:
            before = (await client.assign("Add", 1, 2)).action.id
            seen: list[Event] = []
            async with client.stream(
                after=0,
                timeout=WAIT_TD,
                backoff=Backoff(initial=timedelta(milliseconds=20)),
            ) as events:
                async for event in events:
                    seen.append(event)
                    if event.action_id == before and event.finished:
                        break
                await asyncio.to_thread(first.stop)
                await asyncio.to_thread(
                    make_server, store="sqlite", data_dir=journal, port=first.port
                )
                after = (await client.assign("Add", 3, 4)).action.id
                async for event in events:
                    seen.append(event)
                    if event.action_id == after and event.finished:
                        break
            retryable = events.end is not None and events.end.retryable
            return seen, events.reconnects, retryable

    seen, reconnects, retryable = asyncio.run(scenario())
    assert reconnects >= 1
    assert retryable
    sequences = [e.sequence for e in seen]
    assert sequences == list(range(1, len(sequences) + 1))
    assert seen[-1].result == 7


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_without_reconnect_ends_with_the_servers_final_end(
    make_server: Callable[..., EchoServer], kind: str
) -> None:
    server = make_server()

    def read(c: Any) -> Any:
        events = c.stream(after=0, reconnect=False, timeout=WAIT_TD)
        if kind == "sync":
            events.start()
            server.stop()
            return list(events), events.end

        async def go() -> Any:
            await events.start()
            await asyncio.to_thread(server.stop)
            return [e async for e in events], events.end

        return go()

    seen, end = use_client(kind, server.address, read)
    assert seen == []
    assert end is not None and end.retryable
