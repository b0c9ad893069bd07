"""Server reflection that also finds a method by its full name.

Tools that work without the ``.proto`` files (grpcurl ``describe``, ghz)
ask reflection for the file containing ``echo.v1.EchoService.Assign``.
protobuf's upb descriptor pool resolves services and messages by name but
not methods, so the library's servicer answers NOT_FOUND. On such a miss
this servicer retries with the parent name and answers with the service's
file when that service has the method; everything else is the library's.

grpcio-reflection ships only the ``v1alpha`` service. ``v1`` has the same
messages on the wire under another service name, so the same servicer is
registered under both: newer clients ask ``v1`` first, older ones
``v1alpha``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import grpc
import grpc.aio
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

__all__ = ["REFLECTION_SERVICE_NAMES", "enable_reflection"]

logger = logging.getLogger(__name__)

_V1ALPHA = reflection.SERVICE_NAME
_V1 = "grpc.reflection.v1.ServerReflection"

REFLECTION_SERVICE_NAMES: tuple[str, ...] = (_V1, _V1ALPHA)
"""Both reflection services this server answers."""


class _MethodAwareReflection(ReflectionServicer):  # type: ignore[misc]
    """The library's servicer, plus methods as symbols (see module doc)."""

    def _file_containing_symbol(
        self, request: Any, fully_qualified_name: str
    ) -> reflection_pb2.ServerReflectionResponse:
        response = super()._file_containing_symbol(request, fully_qualified_name)
        if not response.HasField("error_response"):
            return response
        parent, _, method = fully_qualified_name.rpartition(".")
        if not parent:
            return response
        try:
            service = self._pool.FindServiceByName(parent)
        except KeyError:
            return response
        if method not in service.methods_by_name:
            return response
        return super()._file_containing_symbol(request, service.full_name)


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection (``v1`` and ``v1alpha``) for ``service_names``.

    The reflection services list themselves; callers name only theirs.
    """
    servicer = _MethodAwareReflection([*service_names, *REFLECTION_SERVICE_NAMES])
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    methods = {"ServerReflectionInfo": handler}
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(name, methods)
            for name in REFLECTION_SERVICE_NAMES
        ]
    )
