"""Connect sessions whose request stream breaks end at once, with a status,
instead of holding the call open until its deadline.

A request stream that raises is made by an interceptor that breaks the
stream on a marked request, with an error or a cancellation.

A malformed gRPC frame cannot be sent through a gRPC library, so one test
speaks HTTP/2 itself: just enough framing and uncompressed HPACK literals to
open a Connect call and send a message whose length prefix lies.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from echo_client import Client

from echo_service._proto.echo.v1 import echo_service_pb2, echo_service_pb2_grpc
from echo_service.errors import StoreError
from echo_service.server import EchoServer
from echo_service.store import EventRecord, MemoryStore
from tests.conftest import WAIT, Gates, wait_until

pytestmark = pytest.mark.timeout(60)

_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY = 0, 1, 3, 4, 6, 7
_END_STREAM, _END_HEADERS, _ACK = 0x1, 0x4, 0x1


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _literal(name: str, value: str) -> bytes:
    """An HPACK literal header without indexing, no Huffman coding."""
    raw_name, raw_value = name.encode(), value.encode()
    return (
        b"\x00"
        + bytes([len(raw_name)])
        + raw_name
        + bytes([len(raw_value)])
        + raw_value
    )


def _read_frame(sock: socket.socket) -> tuple[int, int, int, bytes]:
    head = _read_exactly(sock, 9)
    length = int.from_bytes(head[:3], "big")
    stream = struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
    return head[3], head[4], stream, _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def _stream_ends(sock: socket.socket) -> str:
    """Read until stream 1 ends; say how (trailers, reset or goaway)."""
    while True:
        kind, flags, stream, payload = _read_frame(sock)
        if kind == _SETTINGS and not flags & _ACK:
            sock.sendall(_frame(_SETTINGS, _ACK, 0))
        elif kind == _PING and not flags & _ACK:
            sock.sendall(_frame(_PING, _ACK, 0, payload))
        elif kind == _HEADERS and stream == 1 and flags & _END_STREAM:
            return "trailers"
        elif kind == _RST_STREAM and stream == 1:
            return "reset"
        elif kind == _GOAWAY:
            return "goaway"


@pytest.mark.parametrize(
    "message",
    [
        b"\x00" + struct.pack(">I", 1000) + b"\x0a\x01",  # the length lies
        b"\x01" + struct.pack(">I", 2) + b"\x0a\x00",  # compressed, no encoding
    ],
    ids=["truncated", "compressed without an encoding"],
)
def test_a_malformed_frame_ends_the_session_with_a_status(
    server: EchoServer, message: bytes
) -> None:
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        headers = b"".join(
            _literal(name, value)
            for name, value in [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/echo.v1.EchoService/Connect"),
                (":authority", server.address),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
        )
        sock.sendall(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            + _frame(_SETTINGS, 0, 0)
            + _frame(_HEADERS, _END_HEADERS, 1, headers)
            + _frame(_DATA, _END_STREAM, 1, message)
        )
        assert _stream_ends(sock) in {"trailers", "reset", "goaway"}
    assert wait_until(lambda: server.open_streams == 0)


def test_a_session_whose_client_cancels_leaves_nothing_open(
    server: EchoServer, client: Client, gates: Gates
) -> None:
    # The request stream stays open until the call is cancelled: a client
    # that half-closed would end the session by itself.
    cancelled = threading.Event()

    def requests() -> Iterator[echo_service_pb2.ConnectRequest]:
        yield echo_service_pb2.ConnectRequest(
            request_id="watch", subscribe=echo_service_pb2.StreamRequest()
        )
        cancelled.wait(WAIT)

    with grpc.insecure_channel(server.address) as channel:
        stub = echo_service_pb2_grpc.EchoServiceStub(channel)
        call = stub.Connect(requests(), timeout=WAIT)
        assert next(call).WhichOneof("kind") == "subscribed"
        assert server.open_streams == 1
        call.cancel()
        cancelled.set()
        with pytest.raises(grpc.RpcError) as ended:
            next(call)
        assert ended.value.code() is grpc.StatusCode.CANCELLED
    assert wait_until(lambda: server.open_streams == 0)
    # The server goes on serving sessions.
    with client.connect() as session:
        rid = session.assign("Add", 1, 2)
        for message in session:
            if message.request_id == rid and message.event and message.event.finished:
                assert message.event.result == 3
                break


def test_a_session_still_sending_when_its_client_cancels_ends(
    make_server: Callable[..., EchoServer], gates: Gates
) -> None:
    server = make_server()
    with Client(server.address, timeout=timedelta(seconds=WAIT)) as client:
        session = client.connect()
        session.assign("Block", "held", request_id="held")
        for message in session:
            if message.kind == "assigned":
                break
        assert gates.wait_entered("held")
        session.close()
    assert wait_until(lambda: server.open_streams == 0)


class _BreakOnMark(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Connect's request iterator raises ``failure`` at a request whose
    bytes contain ``mark``."""

    def __init__(self, failure: BaseException) -> None:
        self._failure = failure

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        details: Any,
    ) -> Any:
        handler = await continuation(details)
        if handler is None or not details.method.endswith("/Connect"):
            return handler
        inner = handler.stream_stream
        failure = self._failure

        async def breaking(requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            async for raw in requests:
                if b"break-here" in raw:
                    raise failure
                yield raw

        async def behaviour(requests: AsyncIterator[bytes], context: Any) -> Any:
            async for item in inner(breaking(requests), context):
                yield item

        return grpc.stream_stream_rpc_method_handler(
            behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@pytest.mark.parametrize(
    "failure",
    [RuntimeError("the transport broke"), asyncio.CancelledError()],
    ids=["error", "cancellation"],
)
def test_a_request_stream_that_raises_ends_the_session_at_once_with_a_status(
    make_server: Callable[..., EchoServer], failure: BaseException
) -> None:
    server = make_server(interceptors=[_BreakOnMark(failure)])
    with grpc.insecure_channel(server.address) as channel:
        stub = echo_service_pb2_grpc.EchoServiceStub(channel)
        requests = [
            echo_service_pb2.ConnectRequest(
                request_id="watch", subscribe=echo_service_pb2.StreamRequest()
            ),
            echo_service_pb2.ConnectRequest(
                request_id="break-here", subscribe=echo_service_pb2.StreamRequest()
            ),
        ]
        # The iterator never half-closes: only the failure can end the call.
        forever = _then_wait(requests)
        started = time.monotonic()
        call = stub.Connect(forever, timeout=WAIT)
        with pytest.raises(grpc.RpcError) as ended:
            for _ in call:
                pass
        assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < WAIT / 2
        forever.close()
    assert wait_until(lambda: server.open_streams == 0)


def _then_wait(
    requests: list[echo_service_pb2.ConnectRequest],
) -> Any:
    """Yield ``requests``, then block (without half-closing) until closed."""
    stop = threading.Event()

    class _Requests:
        def __iter__(self) -> _Requests:
            return self

        def __next__(self) -> echo_service_pb2.ConnectRequest:
            if requests:
                return requests.pop(0)
            stop.wait(WAIT)
            raise StopIteration

        def close(self) -> None:
            stop.set()

    return _Requests()


class _ReplayFails(MemoryStore):
    """A journal whose replays from the start fail; others work."""

    def events_after(
        self,
        sequence: int,
        *,
        limit: int,
        action_ids: frozenset[str] = frozenset(),
        names: frozenset[str] = frozenset(),
    ) -> list[EventRecord]:
        if sequence == 0:
            raise StoreError("the replay read failed")
        return super().events_after(
            sequence, limit=limit, action_ids=action_ids, names=names
        )


def test_a_subscription_whose_journal_read_fails_errs_and_the_session_goes_on(
    make_server: Callable[..., EchoServer],
) -> None:
    server = make_server(journal=_ReplayFails())
    with (
        Client(server.address, timeout=timedelta(seconds=WAIT)) as client,
        client.connect() as session,
    ):
        client.assign("Add", 1, 1)
        sub = session.subscribe(after=0)
        seen = []
        for message in session:
            seen.append(message)
            if message.request_id == sub and message.kind == "error":
                break
        assert seen[-1].error is not None
        assert seen[-1].error.code is grpc.StatusCode.INTERNAL
        rid = session.assign("Add", 1, 2)
        for message in session:
            if message.request_id == rid and message.event and message.event.finished:
                assert message.event.result == 3
                break
