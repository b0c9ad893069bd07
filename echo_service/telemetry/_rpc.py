"""One server span per RPC, continuing the caller's trace.

The interceptor reads the W3C ``traceparent`` (and whatever else the global
propagator understands) from the call's metadata, opens a SERVER span named
after the method as OpenTelemetry's RPC conventions say
(``echo.v1.EchoService/Assign``), and makes it current while the servicer
runs. The servicer then hands ``current_traceparent()`` to the engine in
``ActionSpec.trace_context``, so an action's spans, on whatever worker thread
runs them, sit under the call that assigned it.

The span is made current only while servicer code runs: for a streaming
response it is attached around each step of the servicer's generator and
detached before the message is handed to gRPC. A context attached across a
``yield`` could be detached from another task when gRPC closes the generator,
which the context API refuses.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
import grpc.aio
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from echo_service.telemetry._metrics import RPC_DURATION

__all__ = ["UNTRACED_METHOD_PREFIXES", "RpcTelemetryInterceptor", "current_traceparent"]

logger = logging.getLogger(__name__)

#: Health checks arrive every few seconds from every probe and balancer; a
#: span or a histogram sample for each would drown the real calls.
UNTRACED_METHOD_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/",)

# Server span status per OpenTelemetry's gRPC conventions: only these codes
# mean the server failed; the others are the caller's mistake or choice.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

# How a call ends when its client goes away: the handler's task is cancelled,
# or a streaming handler's generator is closed.
_ENDED = (asyncio.CancelledError, GeneratorExit)

_W3C = TraceContextTextMapPropagator()


def current_traceparent() -> dict[str, str]:
    """The current span as a W3C carrier (``traceparent``, ``tracestate``).

    Empty when no valid span is current. This is what the servicer puts in
    ``ActionSpec.trace_context`` when the request's own is empty.
    """
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier


class _MetadataGetter(Getter[Iterable[tuple[str, Any]]]):
    """Reads propagation fields out of gRPC metadata (key, value) pairs."""

    def get(self, carrier: Iterable[tuple[str, Any]], key: str) -> list[str] | None:
        wanted = key.lower()
        found = [
            value
            for k, value in carrier
            if k.lower() == wanted and isinstance(value, str)
        ]
        return found or None

    def keys(self, carrier: Iterable[tuple[str, Any]]) -> list[str]:
        return [k for k, _ in carrier]


_GETTER = _MetadataGetter()


def _split_method(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


def _peer_attributes(peer: str) -> dict[str, str | int]:
    """``ipv4:10.0.0.1:5000`` or ``ipv6:[::1]:5000`` as semantic attributes."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6") or not rest:
        return {}
    host, _, port = rest.rpartition(":")
    attributes: dict[str, str | int] = {"network.peer.address": host.strip("[]")}
    if port.isdigit():
        attributes["network.peer.port"] = int(port)
    return attributes


class _Call:
    """The span, the clock and the outcome of one RPC."""

    def __init__(
        self,
        owner: RpcTelemetryInterceptor,
        method: str,
        metadata: Iterable[tuple[str, Any]],
        servicer_context: Any,
    ) -> None:
        self._owner = owner
        self._servicer_context = servicer_context
        service, name = _split_method(method)
        self._labels: dict[str, str | int] = {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": name,
        }
        parent = propagate.extract(list(metadata or ()), getter=_GETTER)
        self.span = owner.tracer.start_span(
            f"{service}/{name}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={**self._labels, **_peer_attributes(servicer_context.peer())},
        )
        self.context = trace.set_span_in_context(self.span, parent)
        self._started = time.perf_counter()

    def finish(self, error: BaseException | None) -> None:
        """Close the span exactly once, with the call's status code."""
        code = self._status_code(error)
        self.span.set_attribute("rpc.grpc.status_code", code.value[0])
        if error is not None and not isinstance(error, (grpc.aio.AbortError, *_ENDED)):
            # An exception the servicer did not turn into a status: recorded
            # here once; the span was started without automatic recording.
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}"))
        elif code in _SERVER_ERRORS:
            details = self._servicer_context.details()
            if isinstance(details, bytes):
                details = details.decode("utf-8", "replace")
            self.span.set_status(Status(StatusCode.ERROR, details or code.name))
        self.span.end()
        self._owner.record_duration(
            time.perf_counter() - self._started,
            {**self._labels, "rpc.grpc.status_code": code.value[0]},
        )

    def _status_code(self, error: BaseException | None) -> grpc.StatusCode:
        if isinstance(error, _ENDED):
            return grpc.StatusCode.CANCELLED
        if error is not None and not isinstance(error, grpc.aio.AbortError):
            return grpc.StatusCode.UNKNOWN
        code = self._servicer_context.code()
        if code is None:
            return grpc.StatusCode.OK
        if isinstance(code, grpc.StatusCode):
            return code
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate
        return grpc.StatusCode.UNKNOWN


Behavior = Callable[..., Any]


class RpcTelemetryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Trace and time every RPC of a ``grpc.aio`` server.

    Put it first in the server's interceptor list so that calls refused by
    later interceptors (authentication) are traced and counted too. Only
    coroutine and async-generator handlers are wrapped, which is all a
    ``grpc.aio`` servicer has; a synchronous handler passes through untraced.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        untraced_prefixes: Iterable[str] = UNTRACED_METHOD_PREFIXES,
    ) -> None:
        self.tracer = trace.get_tracer(
            "echo_service.telemetry", tracer_provider=tracer_provider
        )
        meter = metrics.get_meter(
            "echo_service.telemetry", meter_provider=meter_provider
        )
        self._duration = meter.create_histogram(
            RPC_DURATION.source, unit="s", description=RPC_DURATION.description
        )
        self._untraced = tuple(untraced_prefixes)

    def record_duration(self, seconds: float, labels: Mapping[str, str | int]) -> None:
        self._duration.record(seconds, labels)

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method or ""
        if handler is None or method.startswith(self._untraced):
            return handler
        metadata = tuple(handler_call_details.invocation_metadata or ())
        if handler.request_streaming and handler.response_streaming:
            behavior, factory = (
                handler.stream_stream,
                grpc.stream_stream_rpc_method_handler,
            )
        elif handler.request_streaming:
            behavior, factory = (
                handler.stream_unary,
                grpc.stream_unary_rpc_method_handler,
            )
        elif handler.response_streaming:
            behavior, factory = (
                handler.unary_stream,
                grpc.unary_stream_rpc_method_handler,
            )
        else:
            behavior, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
        wrapped = self._wrap(behavior, method, metadata)
        if wrapped is None:
            return handler
        return factory(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(
        self, behavior: Behavior, method: str, metadata: tuple[tuple[str, Any], ...]
    ) -> Behavior | None:
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                call = _Call(self, method, metadata, context)
                inner = behavior(request, context)
                error: BaseException | None = None
                try:
                    while True:
                        token = otel_context.attach(call.context)
                        try:
                            item = await inner.__anext__()
                        except StopAsyncIteration:
                            break
                        finally:
                            otel_context.detach(token)
                        yield item
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    await inner.aclose()
                    call.finish(error)

            return stream

        if inspect.iscoroutinefunction(behavior):

            async def unary(request: Any, context: Any) -> Any:
                call = _Call(self, method, metadata, context)
                token = otel_context.attach(call.context)
                error: BaseException | None = None
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    otel_context.detach(token)
                    call.finish(error)

            return unary

        logger.debug("not tracing %s: its handler is synchronous", method)
        return None
