"""The transport's physical limit: a bare grpcio server speaking Echo's contract.

It answers every call with a prebuilt message of the same size as Echo's
answer and does no work at all: no validation, no journal, no executor. What
Echo reaches against it is the share of the transport's limit it keeps. It
runs as its own process, like Echo's server, in the same style (sync thread
pool or asyncio) as the server it is compared with.

Run as ``python -m bench._raw_server --port 0 --style sync|aio``; it prints
``raw-grpc listening on HOST:PORT`` to stderr once it serves. Streams read
the invocation metadata ``x-bench-mode``: ``idle`` sends one message (so
the client knows the stream is up) and then holds the stream open without
sending anything (for memory per stream); otherwise the stream sends
the prebuilt event until the client cancels or ``x-bench-count`` messages
went out.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from echo_service._proto.echo.v1 import action_pb2, echo_service_pb2
from echo_service._proto.echo.v1 import echo_service_pb2_grpc as rpc

__all__ = ["default_assign_response", "default_stream_response", "main"]

logger = logging.getLogger(__name__)

# Seconds an idle stream waits between checks that its call is still alive.
_IDLE_POLL = 1.0


def default_assign_response() -> echo_service_pb2.AssignResponse:
    """A plausible answer to Assign, for when no real one was captured."""
    response = echo_service_pb2.AssignResponse()
    action = response.action
    action.id = "0197d5c2-7a8e-7c3e-9f21-4b1f0e2d3c4a"
    action.name = "Noop"
    action.state = action_pb2.ACTION_STATE_ACCEPTED
    action.create_time.FromSeconds(1_780_000_000)
    action.update_time.FromSeconds(1_780_000_000)
    return response


def default_stream_response() -> echo_service_pb2.StreamResponse:
    """A plausible event message, for when no real one was captured."""
    response = echo_service_pb2.StreamResponse()
    event = response.event
    event.sequence = 123_456
    event.action_id = "0197d5c2-7a8e-7c3e-9f21-4b1f0e2d3c4a"
    event.action_name = "Noop"
    event.state = action_pb2.ACTION_STATE_SUCCEEDED
    event.attempt = 1
    event.time.FromSeconds(1_780_000_000)
    event.trace_id = "0" * 32
    return response


class _Answers:
    """Prebuilt answers; read-only once built, so any thread may use them."""

    def __init__(
        self,
        assign: echo_service_pb2.AssignResponse,
        event: echo_service_pb2.StreamResponse,
    ) -> None:
        self.assign = assign
        self.event = event

    def many(self, count: int) -> echo_service_pb2.AssignManyResponse:
        response = echo_service_pb2.AssignManyResponse()
        response.results.extend([self.assign] * count)
        return response

    def streamed(self, count: int) -> echo_service_pb2.AssignStreamResponse:
        response = echo_service_pb2.AssignStreamResponse()
        response.results.extend([self.assign] * count)
        return response


def _mode(metadata: object) -> tuple[str, int]:
    pairs = dict(metadata or ())  # type: ignore[call-overload]
    count = int(pairs.get("x-bench-count", "0") or 0)
    return str(pairs.get("x-bench-mode", "send")), count


class _SyncServicer(rpc.EchoServiceServicer):  # type: ignore[misc]
    def __init__(self, answers: _Answers) -> None:
        self._answers = answers

    def Assign(self, request: object, context: grpc.ServicerContext) -> object:  # noqa: N802
        return self._answers.assign

    def AssignMany(  # noqa: N802
        self, request: echo_service_pb2.AssignManyRequest, context: object
    ) -> object:
        return self._answers.many(len(request.actions))

    def AssignStream(  # noqa: N802
        self, requests: Iterator[echo_service_pb2.AssignStreamRequest], context: object
    ) -> object:
        count = sum(len(request.actions) for request in requests)
        return self._answers.streamed(count)

    def Stream(  # noqa: N802
        self, request: object, context: grpc.ServicerContext
    ) -> Iterator[object]:
        mode, count = _mode(context.invocation_metadata())
        if mode == "idle":
            yield self._answers.event
            ended = threading.Event()
            context.add_callback(ended.set)
            while not ended.wait(_IDLE_POLL) and context.is_active():
                pass
            return
        sent = 0
        while context.is_active() and (count == 0 or sent < count):
            yield self._answers.event
            sent += 1


class _AioServicer(rpc.EchoServiceServicer):  # type: ignore[misc]
    def __init__(self, answers: _Answers) -> None:
        self._answers = answers

    async def Assign(self, request: object, context: object) -> object:  # noqa: N802
        return self._answers.assign

    async def AssignMany(  # noqa: N802
        self, request: echo_service_pb2.AssignManyRequest, context: object
    ) -> object:
        return self._answers.many(len(request.actions))

    async def AssignStream(  # noqa: N802
        self,
        requests: AsyncIterator[echo_service_pb2.AssignStreamRequest],
        context: object,
    ) -> object:
        count = 0
        async for request in requests:
            count += len(request.actions)
        return self._answers.streamed(count)

    async def Stream(  # noqa: N802
        self, request: object, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[object]:
        mode, count = _mode(context.invocation_metadata())
        if mode == "idle":
            yield self._answers.event
            # Cancellation of the call cancels this coroutine.
            await asyncio.Event().wait()
            return
        sent = 0
        while count == 0 or sent < count:
            yield self._answers.event
            sent += 1


def _serve_sync(answers: _Answers, port: int, threads: int) -> None:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="raw-grpc"),
        maximum_concurrent_rpcs=None,
    )
    rpc.add_EchoServiceServicer_to_server(_SyncServicer(answers), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"raw-grpc listening on 127.0.0.1:{bound}", file=sys.stderr, flush=True)
    stop.wait()
    server.stop(grace=1).wait()


async def _serve_aio(answers: _Answers, port: int) -> None:
    server = grpc.aio.server()
    rpc.add_EchoServiceServicer_to_server(_AioServicer(answers), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"raw-grpc listening on 127.0.0.1:{bound}", file=sys.stderr, flush=True)
    await stop.wait()
    await server.stop(grace=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--style", choices=("sync", "aio"), default="sync")
    parser.add_argument("--threads", type=int, default=16, help="sync pool size")
    parser.add_argument("--assign-response", type=Path, help="AssignResponse bytes")
    parser.add_argument("--stream-response", type=Path, help="StreamResponse bytes")
    args = parser.parse_args(argv)
    assign = default_assign_response()
    if args.assign_response:
        assign = echo_service_pb2.AssignResponse.FromString(
            args.assign_response.read_bytes()
        )
    event = default_stream_response()
    if args.stream_response:
        event = echo_service_pb2.StreamResponse.FromString(
            args.stream_response.read_bytes()
        )
    answers = _Answers(assign, event)
    if args.style == "sync":
        _serve_sync(answers, args.port, args.threads)
    else:
        asyncio.run(_serve_aio(answers, args.port))


if __name__ == "__main__":
    main()
