"""A real ``grpc.aio`` server on its own event-loop thread, for sync tests.

The server carries a trivial byte-level service (``echo.test.Probe``) and the
standard health service, so the production building blocks (interceptors,
credentials, options, the proxy) can be proven before the Echo servicer exists.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

T = TypeVar("T")

PROBE = "echo.test.Probe"
ECHO = f"/{PROBE}/Echo"
COUNT = f"/{PROBE}/Count"
GATE = f"/{PROBE}/Gate"
COLLECT = f"/{PROBE}/Collect"
FAIL = f"/{PROBE}/Fail"
ABORT = f"/{PROBE}/Abort"
TICK = f"/{PROBE}/Tick"
WAIT = 10.0


class ProbeService:
    """Byte-in, byte-out methods; ``gate`` lets a test pace a stream."""

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.seen_metadata: list[dict[str, str]] = []

    async def echo(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.seen_metadata.append(
            {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        )
        return request

    async def count(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        for i in range(int(request)):
            yield str(i).encode()

    async def gate_stream(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        # The second message is produced only after the test opened the gate,
        # which it does only once the first one arrived: a buffering proxy
        # would hold the first and the test would time out.
        assert self.gate is not None
        yield b"first"
        await asyncio.wait_for(self.gate.wait(), WAIT)
        yield b"second"

    async def tick(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        # "count:seconds": a message every `seconds`, like a stream's heartbeat.
        count, _, interval = request.decode().partition(":")
        for i in range(int(count)):
            await asyncio.sleep(float(interval))
            yield str(i).encode()

    async def collect(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> bytes:
        total = 0
        async for message in requests:
            total += len(message)
        return str(total).encode()

    async def fail(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise RuntimeError(request.decode())

    async def abort(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        code = getattr(grpc.StatusCode, request.decode())
        await context.abort(code, f"aborted with {code.name}")
        raise AssertionError("abort returned")

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            PROBE,
            {
                "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
                "Count": grpc.unary_stream_rpc_method_handler(self.count),
                "Gate": grpc.unary_stream_rpc_method_handler(self.gate_stream),
                "Tick": grpc.unary_stream_rpc_method_handler(self.tick),
                "Collect": grpc.stream_unary_rpc_method_handler(self.collect),
                "Fail": grpc.unary_unary_rpc_method_handler(self.fail),
                "Abort": grpc.unary_unary_rpc_method_handler(self.abort),
            },
        )


class AioServer:
    """Runs a ``grpc.aio`` server with the probe and health services.

    The loop thread is owned by this object: ``stop()`` stops the server,
    stops the loop and joins the thread. Use as a context manager.
    """

    def __init__(
        self,
        *,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        credentials: grpc.ServerCredentials | None = None,
        options: Iterable[tuple[str, Any]] = (),
        address: str = "127.0.0.1:0",
        extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    ) -> None:
        self.probe = ProbeService()
        self._extra_handlers = list(extra_handlers)
        self._interceptors = list(interceptors)
        self._credentials = credentials
        self._options = list(options)
        self._address = address
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="aio-server", daemon=True
        )
        self._server: grpc.aio.Server | None = None
        self.health: Any = None
        self.port = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(WAIT)

    async def _start(self) -> int:
        server = grpc.aio.server(interceptors=self._interceptors, options=self._options)
        server.add_generic_rpc_handlers((self.probe.handler(), *self._extra_handlers))
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        if self._credentials is None:
            port = server.add_insecure_port(self._address)
        else:
            port = server.add_secure_port(self._address, self._credentials)
        await server.start()
        self.probe.gate = asyncio.Event()
        self._server = server
        return int(port)

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None

    def open_gate(self) -> None:
        assert self.probe.gate is not None
        self._loop.call_soon_threadsafe(self.probe.gate.set)

    def start(self) -> AioServer:
        self._thread.start()
        self.port = self.run(self._start())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.run(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(WAIT)
        self._loop.close()

    def __enter__(self) -> AioServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def health_check(channel: grpc.Channel, service: str = "") -> int:
    """The health status of ``service`` as the enum number (1 = SERVING)."""
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT)
    return int(reply.status)
