"""A stream's or a subscription's states filter, and ``wait``'s own, against
a live server: only the states asked for arrive, every (re)opened call asks
for them, and a state the server refuses is the client's
``InvalidArgumentError``. Each test that can runs through both clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from echo_client import (
    FINAL_STATES,
    Backoff,
    Client,
    Event,
    InvalidArgumentError,
    State,
)
from echo_client._proto.echo.v1 import action_pb2, echo_service_pb2

from echo_service.server import EchoServer
from tests.clients.python._both import KINDS, WAIT_TD, use_client

pytestmark = pytest.mark.timeout(60)

FINAL_NUMBERS = [
    action_pb2.ACTION_STATE_SUCCEEDED,
    action_pb2.ACTION_STATE_FAILED,
    action_pb2.ACTION_STATE_CANCELLED,
]


class StreamRequests(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Records the request of every Stream call the server answers."""

    def __init__(self) -> None:
        self.seen: list[echo_service_pb2.StreamRequest] = []

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None or not details.method.endswith("/Stream"):
            return handler
        inner = handler.unary_stream

        # The server's own decoding runs inside: the request is still bytes.
        async def behaviour(raw: bytes, context: Any) -> AsyncIterator[Any]:
            self.seen.append(echo_service_pb2.StreamRequest.FromString(raw))
            async for item in inner(raw, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(
            behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _until_finished(kind: str, events: Any) -> Any:
    """The events up to the first final one (the events' own ``close`` is
    the caller's)."""
    if kind == "sync":
        out: list[Event] = []
        for event in events:
            out.append(event)
            if event.finished:
                break
        return out

    async def read() -> list[Event]:
        out: list[Event] = []
        async for event in events:
            out.append(event)
            if event.finished:
                break
        return out

    return read()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "states",
    [
        [State.RUNNING, State.SUCCEEDED],
        ["running", "ACTION_STATE_SUCCEEDED"],
        [action_pb2.ACTION_STATE_RUNNING, action_pb2.ACTION_STATE_SUCCEEDED],
    ],
    ids=["states", "names", "numbers"],
)
def test_a_stream_delivers_only_the_states_it_asks_for(
    client: Client, server: EchoServer, kind: str, states: list[Any]
) -> None:
    action_id = client.assign("Add", 2, 40).action.id
    client.wait(action_id, timeout=WAIT_TD)

    def read(c: Any) -> Any:
        events = c.stream(
            after=0, action_ids=[action_id], states=states, timeout=WAIT_TD
        )
        return _until_finished(kind, events)

    seen = use_client(kind, server.address, read)
    assert [e.state for e in seen] == [State.RUNNING, State.SUCCEEDED]
    assert seen[-1].result == 42


@pytest.mark.parametrize("kind", KINDS)
def test_a_live_stream_of_final_states_sees_no_transition_first(
    server: EchoServer, kind: str
) -> None:
    def read(c: Any) -> Any:
        events = c.stream(names=["Add"], states=FINAL_STATES, timeout=WAIT_TD)
        if kind == "sync":
            events.start()
            c.assign("Add", 1, 2)
            return _until_finished(kind, events)

        async def go() -> Any:
            await events.start()
            await c.assign("Add", 1, 2)
            return await _until_finished(kind, events)

        return go()

    seen = use_client(kind, server.address, read)
    assert [(e.state, e.result) for e in seen] == [(State.SUCCEEDED, 3)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("state", [State.UNSPECIFIED, 99])
def test_a_state_the_server_refuses_ends_the_stream_with_invalid_argument(
    server: EchoServer, kind: str, state: State | int
) -> None:
    def read(c: Any) -> Any:
        events = c.stream(states=[State.FAILED, state], timeout=WAIT_TD)
        if kind == "sync":
            with pytest.raises(InvalidArgumentError) as refused:
                events.start()
            return refused.value, events.reconnects

        async def go() -> Any:
            with pytest.raises(InvalidArgumentError) as refused:
                await events.start()
            return refused.value, events.reconnects

        return go()

    error, reconnects = use_client(kind, server.address, read)
    assert [v.field for v in error.field_violations] == ["states[1]"]
    assert reconnects == 0


def test_a_reconnected_stream_asks_for_its_states_again(
    make_server: Callable[..., EchoServer], tmp_path: Path
) -> None:
    """Given a stream of SUCCEEDED events on a server with a durable journal,
    when the server stops and another starts on the same port and journal,
    then the reopened call asks for SUCCEEDED again, after the last sequence
    seen, and no transition of a later action arrives."""
    journal = tmp_path / "journal"
    recorded = StreamRequests()
    first = make_server(store="sqlite", data_dir=journal, interceptors=[recorded])
    with Client(first.address, timeout=WAIT_TD) as client:
        before = client.assign("Add", 1, 2).action.id
        events = client.stream(
            after=0,
            states=[State.SUCCEEDED],
            timeout=WAIT_TD,
            backoff=Backoff(initial=timedelta(milliseconds=20)),
        )
        seen = [next(events)]
        first.stop()
        make_server(
            store="sqlite", data_dir=journal, port=first.port, interceptors=[recorded]
        )
        after = client.assign("Add", 3, 4).action.id
        seen.append(next(events))
        events.close()
    assert [(e.action_id, e.state, e.result) for e in seen] == [
        (before, State.SUCCEEDED, 3),
        (after, State.SUCCEEDED, 7),
    ]
    assert events.reconnects >= 1
    [opened, *reopened] = recorded.seen
    assert reopened, "the stream was never reopened"
    for request in (opened, *reopened):
        assert list(request.states) == [action_pb2.ACTION_STATE_SUCCEEDED]
    assert reopened[-1].after_sequence >= seen[0].sequence


@pytest.mark.parametrize("kind", KINDS)
def test_wait_asks_only_for_the_final_states_of_its_action(
    make_server: Callable[..., EchoServer], kind: str
) -> None:
    recorded = StreamRequests()
    server = make_server(interceptors=[recorded])

    def run(c: Any) -> Any:
        if kind == "sync":
            return c.wait(c.assign("Add", 20, 22).action.id, timeout=WAIT_TD)

        async def go() -> Any:
            assigned = await c.assign("Add", 20, 22)
            return await c.wait(assigned.action.id, timeout=WAIT_TD)

        return go()

    done = use_client(kind, server.address, run)
    assert (done.state, done.result) == (State.SUCCEEDED, 42)
    [request] = recorded.seen
    assert list(request.action_ids) == [done.id]
    assert list(request.states) == FINAL_NUMBERS


def test_a_subscription_delivers_only_its_states_and_a_refused_one_fails_alone(
    client: Client,
) -> None:
    action_id = client.assign("Add", 5, 6).action.id
    client.wait(action_id, timeout=WAIT_TD)
    with client.connect() as session:
        bad = session.subscribe(states=[State.UNSPECIFIED])
        good = session.subscribe(
            after=0, action_ids=[action_id], states=[State.SUCCEEDED, "failed"]
        )
        refused = events = None
        for message in session:
            if message.kind == "error":
                refused = message
            elif message.kind == "event" and message.event is not None:
                events = message
            if refused is not None and events is not None:
                break
    assert refused is not None and refused.request_id == bad
    assert isinstance(refused.error, InvalidArgumentError)
    fields = [v.field for v in refused.error.field_violations]
    assert len(fields) == 1 and fields[0].endswith("states[0]"), fields
    assert events is not None and events.request_id == good
    assert events.event is not None
    assert (events.event.state, events.event.result) == (State.SUCCEEDED, 11)
