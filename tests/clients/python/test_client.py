"""The Python client library: values, errors, deadlines, trace context, and
the asyncio client against a live server."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import grpc
import pytest
from echo_client import (
    ActionRequest,
    AsyncClient,
    Client,
    DeadlineExceededError,
    InvalidArgumentError,
    Json,
    NotFoundError,
    Options,
    State,
    from_value,
    to_value,
)
from echo_client._call import Deadline
from echo_client._errors import error_from_request_error
from google.protobuf import any_pb2, duration_pb2
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from echo_service._proto.echo.v1 import echo_service_pb2
from echo_service.server import EchoServer
from tests.conftest import WAIT, Gates

pytestmark = pytest.mark.timeout(60)

WAIT_TD = timedelta(seconds=WAIT)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("text", "string_value"),
        (7, "int_value"),
        (True, "bool_value"),
        (1.5, "double_value"),
        (b"\x00\x01", "bytes_value"),
        ({"a": [1, 2]}, "json_value"),
        ([1, "x"], "json_value"),
        (None, "json_value"),
        (Json("as json"), "json_value"),
        (2**70, "json_value"),
    ],
)
def test_python_values_pick_their_value_kind(value: object, kind: str) -> None:
    assert to_value(value).WhichOneof("kind") == kind


@pytest.mark.parametrize(
    "value", ["text", 7, -(2**63), True, 1.5, b"raw", {"n": 1, "big": 2**62}, [1, None]]
)
def test_values_come_back_as_they_went(value: object) -> None:
    back = from_value(to_value(value))
    assert back == value
    assert type(back) is type(value)


def test_json_wraps_strings_and_big_integers_stay_exact() -> None:
    assert from_value(to_value(Json("x"))) == "x"
    assert to_value(Json("x")).json_value == '"x"'
    assert from_value(to_value(10**30)) == 10**30


def test_packed_messages_travel_as_any() -> None:
    message = duration_pb2.Duration(seconds=3)
    value = to_value(message)
    back = from_value(value)
    assert isinstance(back, any_pb2.Any)
    unpacked = duration_pb2.Duration()
    assert back.Unpack(unpacked)
    assert unpacked.seconds == 3


def test_values_without_a_kind_are_refused() -> None:
    with pytest.raises(TypeError, match="Json"):
        to_value({1, 2})


def test_request_errors_decode_to_the_same_tree() -> None:
    error = echo_service_pb2.RequestError(
        code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
        message="bad",
        field_violations=[
            echo_service_pb2.FieldViolation(field="action.name", description="required")
        ],
    )
    decoded = error_from_request_error(error)
    assert isinstance(decoded, InvalidArgumentError)
    assert decoded.field_violations[0].field == "action.name"


def test_a_refused_call_carries_code_message_and_field_violations(
    client: Client,
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.assign("Add", 1, "two", options=Options(priority=1))
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["action.args[1]"]
    assert "action.args[1]" in str(error)
    assert isinstance(error.__cause__, grpc.RpcError)


def test_wait_honours_its_timeout(client: Client, gates: Gates) -> None:
    action_id = client.assign("Block", "slow").action.id
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        client.wait(action_id, timeout=timedelta(milliseconds=300))
    assert time.monotonic() - started < 5


def test_a_stream_timeout_is_its_deadline(client: Client) -> None:
    started = time.monotonic()
    with (
        pytest.raises(DeadlineExceededError),
        client.stream(timeout=timedelta(milliseconds=200)) as events,
    ):
        next(events)
    assert time.monotonic() - started < 5


def test_no_timeout_means_no_deadline_and_a_derived_one_never_exceeds_it() -> None:
    assert Deadline(None).remaining() is None
    deadline = Deadline(timedelta(seconds=2))
    remaining = deadline.remaining()
    assert remaining is not None
    assert 0 < remaining <= 2
    assert not deadline.expired
    spent = Deadline(timedelta(0))
    assert spent.expired
    assert spent.remaining() == pytest.approx(0.001)


def test_the_current_trace_context_is_sent_with_each_call(client: Client) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("caller") as span:
        assigned = client.assign("Add", 1, 2)
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert _action_trace(client, assigned.action.id) == trace_id
    assert trace.get_current_span() is trace.INVALID_SPAN


def _action_trace(client: Client, action_id: str) -> str:
    with client.stream(after=0, action_ids=[action_id]) as events:
        return next(iter(events)).trace_id


def test_the_async_client_assigns_waits_and_streams(server: EchoServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.address, timeout=WAIT_TD) as client:
            signatures = await client.list_signatures()
            assert "Add" in {s.name for s in signatures}
            assigned = await client.assign("Add", 20, 22)
            done = await client.wait(assigned.action.id, timeout=WAIT_TD)
            assert done.state is State.SUCCEEDED
            assert done.result == 42
            requests = [ActionRequest("Add", (i, 1)) for i in range(3)]
            many = await client.assign_many(requests)
            streamed = await client.assign_stream(requests, chunk=2)
            assert [a.action.args for a in many] == [a.action.args for a in streamed]
            seen = []
            async with client.stream(after=0) as events:
                async for event in events:
                    seen.append(event.sequence)
                    if len(seen) == 4:
                        break
            assert seen == [1, 2, 3, 4]
            with pytest.raises(NotFoundError):
                await client.get("nope")

    asyncio.run(scenario())


def test_the_async_session_ties_events_to_request_ids(server: EchoServer) -> None:
    async def scenario() -> list[str]:
        async with AsyncClient(server.address, timeout=WAIT_TD) as client:
            session = await client.connect()
            async with session:
                rid = await session.assign("Echo", "hello")
                kinds = []
                async for message in session:
                    if message.request_id == rid:
                        kinds.append(message.kind)
                        if message.event is not None and message.event.finished:
                            assert message.event.result == "hello"
                            break
                return kinds

    kinds = asyncio.run(scenario())
    assert kinds[0] == "assigned"
    assert set(kinds[1:]) == {"event"}
