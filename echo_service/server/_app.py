"""The server's life: build, start, drain, stop.

``build_server`` is the one factory: the CLI serves through it and every test
starts its servers through it (on port 0), so tests run the production
wiring. The returned ``EchoServer`` has a synchronous face (``start``,
``port``, ``drain``, ``stop``, ``wait``) over a ``grpc.aio`` server that runs
on an event loop in a thread of its own.

Stopping, in order (each step once, however often and from wherever it is
asked: a signal, ``stop``, or the Shutdown RPC):

1. health turns NOT_SERVING, so balancers stop sending;
2. new assigns are refused with UNAVAILABLE and a retry hint;
3. the engine drains: running actions get ``grace`` to finish, then their
   cancellation tokens; what remains stays journaled and runs after a
   restart;
4. the journal is flushed, so every event of step 3 reaches the streams;
5. open streams and sessions send what they hold and a final StreamEnd;
6. the gRPC server stops (open calls get ``config.stop_timeout``);
7. the engine closes, then the journal if this server opened it.

Threads: the loop thread (``echo-server``) owns the gRPC server and the
runtime; the pool (``echo-rpc-*``) runs blocking engine calls; ``stop``
joins both.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from echo_service._proto.echo.v1 import echo_service_pb2, echo_service_pb2_grpc
from echo_service.config import Config
from echo_service.engine import DrainReport, Engine, Plan
from echo_service.server._decode import DecodeGuardInterceptor
from echo_service.server._mesh import MeshSettings, start_probe_server
from echo_service.server._reflection import enable_reflection
from echo_service.server._runtime import Runtime
from echo_service.server._security import (
    BearerAuthInterceptor,
    parse_tokens,
    server_credentials,
)
from echo_service.server._servicer import EchoServicer
from echo_service.store import Store, open_store

__all__ = ["SERVICE_NAME", "EchoServer", "build_server"]

logger = logging.getLogger(__name__)

_ANSWER_HEADROOM = 1024 * 1024
"""Bytes an answer may exceed the request limit by: ids, states, times.
It is also the room an event's fields other than its result need, so the
engine's result limit is the request limit itself."""

T = TypeVar("T")

SERVICE_NAME: str = echo_service_pb2.DESCRIPTOR.services_by_name[
    "EchoService"
].full_name
"""``echo.v1.EchoService``, as health checks and reflection name it."""


def build_server(
    config: Config,
    *,
    plan: Plan,
    store: Store | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> EchoServer:
    """Wire a server for ``config`` serving ``plan``; call ``start`` next.

    Args:
        config: settings; ``host`` and ``port`` say where to listen.
        plan: the actions to offer.
        store: the journal to use; None opens the one ``config.store`` names
            (and the server closes it when it stops).
        interceptors: ``grpc.aio`` server interceptors, outermost first
            (telemetry, then authentication).
        credentials: TLS credentials; None takes them from ``config.tls_*``
            (plaintext when those are unset).
        tracer_provider: where the engine's spans go; None: the global one.
        meter_provider: where the engine's metrics go; None: the global one.
    """
    if credentials is None and config.tls_cert is not None:
        # Before the journal opens, so a bad file fails first (TLSConfigError).
        assert config.tls_key is not None  # Config checks they come together
        credentials = server_credentials(
            config.tls_cert, config.tls_key, config.tls_client_ca
        )
    owns_store = store is None
    if store is None:
        store = open_store(
            config.store, data_dir=config.data_dir, key_retention=config.key_retention
        )
    try:
        engine = Engine(
            plan,
            store,
            workers=config.workers,
            max_waiting=config.max_waiting,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            retention=config.retention,
            key_retention=config.key_retention,
            lease=config.lease,
            max_result_bytes=config.max_message_bytes,
        )
    except BaseException:
        if owns_store:
            store.close()
        raise
    return EchoServer(
        config,
        engine=engine,
        store=store,
        owns_store=owns_store,
        interceptors=interceptors,
        credentials=credentials,
    )


class EchoServer:
    """A running Echo service. See the module docstring for the stop order."""

    def __init__(
        self,
        config: Config,
        *,
        engine: Engine,
        store: Store,
        owns_store: bool,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.config = config
        self._interceptors = tuple(interceptors)
        self._credentials = credentials
        self.engine = engine
        self.store = store
        self._owns_store = owns_store
        self._pool = ThreadPoolExecutor(
            max_workers=config.rpc_threads, thread_name_prefix="echo-rpc"
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port: int | None = None
        self._terminated = threading.Event()
        # Loop-owned from start on:
        self._server: grpc.aio.Server | None = None
        self._health: HealthServicer | None = None
        self._runtime: Runtime | None = None
        self._drain_task: asyncio.Task[DrainReport] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._probe: grpc.aio.Server | None = None
        self._probe_port: int | None = None

    # -- the synchronous face -------------------------------------------------

    @property
    def port(self) -> int:
        """The port bound, also when the config asked for 0."""
        if self._port is None:
            raise RuntimeError("the server has not started")
        return self._port

    @property
    def health_port(self) -> int | None:
        """The plaintext health-only port, when ``config.health_port`` is set."""
        return self._probe_port

    @property
    def address(self) -> str:
        """``host:port`` as a client would dial it."""
        return f"{_bracketed(self.config.host)}:{self.port}"

    @property
    def open_streams(self) -> int:
        """Stream and Connect calls open now (a gauge for tests and metrics)."""
        runtime = self._runtime
        return 0 if runtime is None else len(runtime.streams)

    def start(self) -> None:
        """Recover the journal, start the engine and the gRPC server.

        Returns once the port is bound and health reports SERVING.
        """
        if self._thread is not None:
            raise RuntimeError("a server starts once")
        self.engine.start()
        started = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run_loop, args=(started, failure), name="echo-server"
        )
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._close_quietly()
            raise failure[0]
        logger.info("echo-service listening on %s", self.address)

    def drain(self, grace: timedelta | None = None) -> DrainReport:
        """Steps 1 to 5 of the stop order; later calls return the first report."""
        return self._call(self._drain(grace))

    def stop(self, grace: timedelta | None = None) -> None:
        """Drain (if not yet), stop serving, close everything; idempotent."""
        if self._thread is None:
            self._close_quietly()
            return
        if self._loop is not None and not self._loop.is_closed():
            self._call(self._stop(grace))
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._pool.shutdown(wait=True)

    def wait(self, timeout: timedelta | None = None) -> bool:
        """Block until the server stopped (by ``stop`` or the Shutdown RPC)."""
        return self._terminated.wait(
            None if timeout is None else timeout.total_seconds()
        )

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop -------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _run_loop(self, started: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:
                failure.append(exc)
                return
            finally:
                started.set()
            loop.run_forever()
        finally:
            try:
                _finish_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _start(self) -> None:
        config = self.config
        self._runtime = Runtime(
            engine=self.engine,
            store=self.store,
            config=config,
            pool=self._pool,
            request_shutdown=self._request_shutdown,
        )
        interceptors = list(self._interceptors)
        if config.auth_token:
            # The admin token is a bearer token too, so Shutdown works with
            # authentication on and only the admin token at hand.
            tokens = [*parse_tokens(config.auth_token)]
            if config.admin_token:
                tokens.append(config.admin_token)
            interceptors.append(BearerAuthInterceptor(tokens))
        # Innermost: requests are decoded only after authentication passed.
        interceptors.append(DecodeGuardInterceptor(f"/{SERVICE_NAME}/"))
        server = grpc.aio.server(
            interceptors=interceptors, options=mesh_settings(config).server_options()
        )
        echo_service_pb2_grpc.add_EchoServiceServicer_to_server(
            EchoServicer(self._runtime), server
        )
        self._health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        enable_reflection(
            [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name],
            server,
        )
        address = f"{_bracketed(config.host)}:{config.port}"
        try:
            if self._credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self._credentials)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {address}: {exc}") from exc
        if not port:
            raise OSError(f"cannot listen on {address}")
        await server.start()
        self._server = server
        self._port = port
        for service in ("", SERVICE_NAME):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        if config.health_port:
            # Shares the HealthServicer: both ports always report the same.
            try:
                self._probe, self._probe_port = await start_probe_server(
                    self._health, host=config.host, port=config.health_port
                )
            except BaseException:
                await server.stop(None)
                raise
            if not self._probe_port:
                await self._probe.stop(None)
                await server.stop(None)
                raise OSError(f"cannot listen for health on port {config.health_port}")
        self._watcher = asyncio.get_running_loop().create_task(self._watch_health())

    async def _watch_health(self) -> None:
        """Report NOT_SERVING while the engine is unhealthy (a dead executor
        thread, a journal that cannot write), SERVING again once it recovers.
        Ends when the drain begins, which sets NOT_SERVING for good."""
        runtime, health = self._runtime, self._health
        assert runtime is not None and health is not None
        serving = True
        interval = self.config.health_check_interval.total_seconds()
        while not runtime.draining:
            await asyncio.sleep(interval)
            healthy = await runtime.blocking(self.engine.healthy)
            if healthy == serving or runtime.draining:
                continue
            serving = healthy
            if healthy:
                logger.warning("the engine is healthy again: serving")
            else:
                logger.error("the engine is unhealthy: reporting NOT_SERVING")
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if healthy
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for service in ("", SERVICE_NAME):
                await health.set(service, status)

    def _request_shutdown(self, grace: timedelta) -> None:
        """The Shutdown RPC's way in; the loop runs the stop in a task."""
        asyncio.get_running_loop().create_task(self._stop(grace))

    async def _drain(self, grace: timedelta | None) -> DrainReport:
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(
                self._drain_once(self.config.drain_grace if grace is None else grace)
            )
        return await asyncio.shield(self._drain_task)

    async def _drain_once(self, grace: timedelta) -> DrainReport:
        runtime, health = self._runtime, self._health
        assert runtime is not None and health is not None
        runtime.draining = True
        if self._watcher is not None:
            self._watcher.cancel()
        await health.enter_graceful_shutdown()
        logger.info("draining: running actions get %ss", grace.total_seconds())
        report = await runtime.blocking(self.engine.drain, grace)
        await runtime.blocking(self.store.flush)
        left = await runtime.end_streams(self.config.stop_timeout)
        logger.info(
            "drained: %d finished, %d interrupted, %d abandoned; %d streams cut",
            report.finished,
            report.interrupted,
            report.abandoned,
            left,
        )
        return report

    async def _stop(self, grace: timedelta | None) -> None:
        if self._stop_task is None:
            self._stop_task = asyncio.get_running_loop().create_task(
                self._stop_once(grace)
            )
        await asyncio.shield(self._stop_task)

    async def _stop_once(self, grace: timedelta | None) -> None:
        runtime = self._runtime
        assert runtime is not None and self._server is not None
        try:
            await self._drain(grace)
        finally:
            await self._server.stop(self.config.stop_timeout.total_seconds())
            # The probe port last: probes see NOT_SERVING for the whole drain.
            if self._probe is not None:
                await self._probe.stop(None)
            # gRPC has cancelled the calls still open; let their handlers
            # run their cleanup (closing feeds, joining reader threads).
            await runtime.end_streams(self.config.stop_timeout)
            await runtime.blocking(self._close_quietly)
            self._terminated.set()
            logger.info("echo-service stopped")

    def _close_quietly(self) -> None:
        try:
            self.engine.close()
        except Exception:
            logger.exception("the engine did not close cleanly")
        if self._owns_store:
            try:
                self.store.close()
            except Exception:
                logger.exception("the journal did not close cleanly")
        self._terminated.set()


def mesh_settings(config: Config) -> MeshSettings:
    """The HTTP/2 connection settings ``config`` asks for."""
    return MeshSettings(
        keepalive_time=config.keepalive_time,
        keepalive_timeout=config.keepalive_timeout,
        min_ping_interval=config.min_ping_interval,
        max_connection_age=config.max_connection_age,
        max_connection_age_grace=config.max_connection_age_grace,
        max_receive_message_size=config.max_message_bytes,
        # An answer carries the action it accepted, arguments included, plus
        # what the server adds: it must never be refused for a request that
        # was itself accepted (and journaled).
        max_send_message_size=config.max_message_bytes + _ANSWER_HEADROOM,
    )


def _finish_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what still runs on the loop and let it unwind, as asyncio.run
    does, so no task is destroyed while pending."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _bracketed(host: str) -> str:
    """An IPv6 literal in brackets, as gRPC addresses want it."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host
