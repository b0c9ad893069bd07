"""Property-based fuzzing of every RPC: random valid-shaped messages, and
random bytes through a raw channel that skips serialization.

Whatever arrives, each call ends with a deliberate status (never UNKNOWN,
which is what an escaped exception becomes), the server keeps serving, no
stream handler stays open and no thread outlives the server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as _descriptor
from google.protobuf import message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echo_service._proto.echo.v1 import echo_service_pb2
from echo_service.server import EchoServer
from tests.conftest import WAIT, wait_until

pytestmark = pytest.mark.timeout(180)

SERVICE = echo_service_pb2.DESCRIPTOR.services_by_name["EchoService"]
METHODS = list(SERVICE.methods)
FD = _descriptor.FieldDescriptor

#: Codes an answer may carry. INTERNAL is gRPC's own "could not deserialize".
DELIBERATE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.INTERNAL,
}
#: Streams that parse run until the test's short deadline cuts them.
STREAM_DEADLINE = 0.3

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)

_TEXT = st.text(max_size=12)
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FD.TYPE_STRING: _TEXT,
    FD.TYPE_BYTES: st.binary(max_size=16),
    FD.TYPE_BOOL: st.booleans(),
    FD.TYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
    FD.TYPE_FLOAT: st.floats(width=32),
    FD.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: st.integers(-(2**63), 2**63 - 1),
    FD.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FD.TYPE_FIXED64: st.integers(0, 2**64 - 1),
    FD.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: st.integers(-(2**31), 2**31 - 1),
    FD.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FD.TYPE_FIXED32: st.integers(0, 2**32 - 1),
}


def _value(field: _descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.enum_type is not None:
        # Known values and an unknown one (open enums keep it).
        return st.sampled_from([v.number for v in field.enum_type.values] + [99])
    if field.message_type is not None:
        return messages(field.message_type, depth + 1)
    return _SCALARS[field.type]


@st.composite
def _fill(draw: st.DrawFn, descriptor: _descriptor.Descriptor, depth: int) -> Message:
    message = message_factory.GetMessageClass(descriptor)()
    if depth > 3:
        return message
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        target = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for _ in range(draw(st.integers(0, 2))):
                key = draw(_value(key_field, depth))
                value = draw(_value(value_field, depth))
                if value_field.type == FD.TYPE_MESSAGE:
                    target[key].CopyFrom(value)
                else:
                    target[key] = value
        elif _repeated(field):
            for _ in range(draw(st.integers(0, 2))):
                value = draw(_value(field, depth))
                if field.type == FD.TYPE_MESSAGE:
                    target.add().CopyFrom(value)
                else:
                    target.append(value)
        elif field.type == FD.TYPE_MESSAGE:
            target.CopyFrom(draw(_value(field, depth)))
        else:
            setattr(message, field.name, draw(_value(field, depth)))
    return message


def _repeated(field: _descriptor.FieldDescriptor) -> bool:
    # upb descriptors dropped ``label`` in newer protobuf releases.
    label = getattr(field, "label", None)
    if label is not None:
        return bool(label == FD.LABEL_REPEATED)
    return bool(field.is_repeated)


def messages(
    descriptor: _descriptor.Descriptor, depth: int = 0
) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor`` with random fields set (valid shape)."""
    return _fill(descriptor, depth)


def _call(
    channel: grpc.Channel, method: _descriptor.MethodDescriptor, payloads: list[bytes]
) -> grpc.StatusCode:
    """Send ``payloads`` as raw bytes; the call's final status code."""
    path = f"/{SERVICE.full_name}/{method.name}"
    streaming_out = method.server_streaming
    timeout = STREAM_DEADLINE if streaming_out else WAIT
    try:
        if method.client_streaming and streaming_out:
            for _ in channel.stream_stream(path)(iter(payloads), timeout=timeout):
                pass
        elif method.client_streaming:
            channel.stream_unary(path)(iter(payloads), timeout=timeout)
        elif streaming_out:
            for _ in channel.unary_stream(path)(payloads[0], timeout=timeout):
                pass
        else:
            channel.unary_unary(path)(payloads[0], timeout=timeout)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        if code is grpc.StatusCode.DEADLINE_EXCEEDED and streaming_out:
            return grpc.StatusCode.OK  # a stream that parsed and stayed open
        return code
    return grpc.StatusCode.OK


def _payloads(method: _descriptor.MethodDescriptor) -> st.SearchStrategy[list[bytes]]:
    size = 3 if method.client_streaming else 1
    raw = st.binary(max_size=4096)
    shaped = messages(method.input_type).map(lambda m: m.SerializeToString())
    return st.lists(st.one_of(raw, shaped), min_size=1, max_size=size)


def _serving(server: EchoServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=WAIT)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        request = echo_service_pb2.AssignRequest()
        request.action.name = "Echo"
        request.action.args.add().string_value = "still here"
        channel.unary_unary(
            f"/{SERVICE.full_name}/Assign",
            request_serializer=echo_service_pb2.AssignRequest.SerializeToString,
            response_deserializer=echo_service_pb2.AssignResponse.FromString,
        )(request, timeout=WAIT)


@pytest.fixture
def fuzzed(
    make_server: Callable[..., EchoServer],
) -> Iterator[tuple[EchoServer, grpc.Channel]]:
    # grpc.aio's completion-queue poller is one thread for the process,
    # started with the first aio server; it is not the server's to stop.
    before = set(threading.enumerate())
    server = make_server(max_message_bytes=1 << 20)
    with grpc.insecure_channel(server.address) as channel:
        yield server, channel
    _serving(server)
    assert wait_until(lambda: server.open_streams == 0)
    server.stop()
    assert wait_until(lambda: not _new_threads(before)), _new_threads(before)


def _new_threads(before: set[threading.Thread]) -> list[str]:
    return [
        t.name
        for t in set(threading.enumerate()) - before
        if "_poll_wrapper" not in t.name
    ]


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_every_rpc_answers_random_input_with_a_deliberate_status(
    fuzzed: tuple[EchoServer, grpc.Channel], method: _descriptor.MethodDescriptor
) -> None:
    server, channel = fuzzed
    seen: set[grpc.StatusCode] = set()

    @FUZZ
    @given(payloads=_payloads(method))
    def check(payloads: list[bytes]) -> None:
        code = _call(channel, method, payloads)
        seen.add(code)
        assert code in DELIBERATE, (method.name, code, payloads)

    check()
    assert seen, "no example ran"
    _serving(server)


def test_bytes_that_are_not_a_message_get_a_status_not_a_crash(
    fuzzed: tuple[EchoServer, grpc.Channel],
) -> None:
    _, channel = fuzzed
    # A field header promising more bytes than follow: not a protobuf message.
    for method in METHODS:
        code = _call(channel, method, [b"\x0a\xff\xff\xff\x0f"])
        assert code in {grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT}, (
            method.name,
            code,
        )


def test_without_the_token_every_rpc_is_unauthenticated_whatever_the_bytes(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server(auth_token="fuzz-token")
    with grpc.insecure_channel(server.address) as channel:

        @FUZZ
        @given(
            method=st.sampled_from(METHODS),
            payload=st.binary(max_size=1024),
        )
        def check(method: _descriptor.MethodDescriptor, payload: bytes) -> None:
            assert _call(channel, method, [payload]) is (
                grpc.StatusCode.UNAUTHENTICATED
            )

        check()


def test_a_bad_frame_right_after_an_answered_request_ends_connect_at_once(
    fuzzed: tuple[EchoServer, grpc.Channel],
) -> None:
    _, channel = fuzzed
    connect = channel.stream_stream(f"/{SERVICE.full_name}/Connect")
    valid = echo_service_pb2.ConnectRequest(request_id="r1").SerializeToString()
    # The bad frame arrives while the session is writing the answer to the
    # valid one: the session must still end with a status, not stay open.
    for _ in range(20):
        call = connect(iter([valid, b"\xff\xfe\xfd"]), timeout=WAIT)
        with pytest.raises(grpc.RpcError) as ended:
            for _ in call:
                pass
        assert ended.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid Connect request" in (ended.value.details() or "")
