"""Requests that are not protobuf messages get INVALID_ARGUMENT.

``grpc.aio`` turns an exception raised by a request deserializer into
UNKNOWN, which tells a client nothing and looks like a server bug. This
interceptor takes deserialization over for Echo's methods: the servicer's
handler receives the raw bytes through an identity deserializer, decodes
them here, and a message that does not parse is refused as
INVALID_ARGUMENT naming the expected type. For streamed requests the
decoding error is raised from the request iterator as
``errors.InvalidArgument``, which the servicer maps like any other.

It runs innermost (after authentication), so nothing is parsed for a caller
without a valid token.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
import grpc.aio

from echo_service import errors
from echo_service.server._status import problem_for, rpc_status_for

__all__ = ["DecodeGuardInterceptor"]

logger = logging.getLogger(__name__)

Deserializer = Callable[[bytes], Any]


def _decode(deserialize: Deserializer, raw: bytes, method: str) -> Any:
    try:
        return deserialize(raw)
    except Exception as exc:
        logger.debug("%s: undecodable request: %s", method, exc)
        name = method.rsplit("/", 1)[-1]
        raise errors.InvalidArgument(
            f"the request is not a valid {name} request message"
        ) from None


class DecodeGuardInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Decode requests of methods under ``prefix`` itself (see module doc)."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method or ""
        if (
            handler is None
            or not method.startswith(self._prefix)
            or handler.request_deserializer is None
        ):
            return handler
        deserialize: Deserializer = handler.request_deserializer
        serializer = handler.response_serializer
        if handler.request_streaming:
            return _streamed(handler, deserialize, serializer, method)
        if handler.response_streaming:
            behavior = handler.unary_stream
            if not inspect.isasyncgenfunction(behavior):
                return handler

            async def stream(raw: bytes, context: Any) -> AsyncIterator[Any]:
                try:
                    request = _decode(deserialize, raw, method)
                except errors.InvalidArgument as exc:
                    await _refuse(context, exc, method)
                async for item in behavior(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                stream, response_serializer=serializer
            )
        behavior = handler.unary_unary
        if not inspect.iscoroutinefunction(behavior):
            return handler

        async def unary(raw: bytes, context: Any) -> Any:
            try:
                request = _decode(deserialize, raw, method)
            except errors.InvalidArgument as exc:
                await _refuse(context, exc, method)
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary, response_serializer=serializer
        )


def _streamed(
    handler: Any, deserialize: Deserializer, serializer: Any, method: str
) -> Any:
    async def decoded(requests: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        async for raw in requests:
            yield _decode(deserialize, raw, method)

    if handler.response_streaming:
        behavior = handler.stream_stream
        if not inspect.isasyncgenfunction(behavior):
            return handler

        async def both(requests: AsyncIterator[bytes], context: Any) -> Any:
            # The decoding error is raised from the request iterator. A
            # handler that reads its requests in a task of its own must end
            # the call with that error from the call's task (Connect's
            # session does: see ``Session._read``). Cancelling the call's
            # task from the reader instead would race the call's own
            # writes: a cancel that lands inside grpc's send of a response
            # ends the handler without any status, and the call stays open.
            async for item in behavior(decoded(requests), context):
                yield item

        return grpc.stream_stream_rpc_method_handler(
            both, response_serializer=serializer
        )
    behavior = handler.stream_unary
    if not inspect.iscoroutinefunction(behavior):
        return handler

    async def client_stream(requests: AsyncIterator[bytes], context: Any) -> Any:
        return await behavior(decoded(requests), context)

    return grpc.stream_unary_rpc_method_handler(
        client_stream, response_serializer=serializer
    )


async def _refuse(context: Any, exc: errors.InvalidArgument, method: str) -> NoReturn:
    await context.abort_with_status(rpc_status_for(problem_for(exc, rpc=method)))
    raise AssertionError("abort returned")  # pragma: no cover
