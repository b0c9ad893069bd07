"""The client's errors: one class per status code a caller acts on.

    EchoError                    code, message, field_violations, retry_delay
    ├── InvalidArgumentError     INVALID_ARGUMENT: fix the request (see violations)
    ├── NotFoundError            NOT_FOUND: no action with that id
    ├── FailedPreconditionError  FAILED_PRECONDITION: e.g. cancel of a finished action
    ├── ResourceExhaustedError   RESOURCE_EXHAUSTED: queue full; retry after retry_delay
    ├── UnavailableError         UNAVAILABLE: draining or unreachable; retry later
    ├── PermissionDeniedError    PERMISSION_DENIED: no or wrong admin token
    ├── UnauthenticatedError     UNAUTHENTICATED: no or wrong bearer token
    ├── DeadlineExceededError    DEADLINE_EXCEEDED: the call's timeout passed
    ├── CallCancelledError       CANCELLED: the call was cancelled
    └── ServerError              INTERNAL, UNKNOWN and the rest

The server's google.rpc details (``grpc-status-details-bin``) are decoded
with grpcio-status' message types: ``BadRequest`` field violations and
``RetryInfo``. The gRPC error is chained as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from echo_client._proto.echo.v1 import echo_service_pb2

__all__ = [
    "CallCancelledError",
    "DeadlineExceededError",
    "EchoError",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "ServerError",
    "UnauthenticatedError",
    "UnavailableError",
    "error_from_request_error",
    "error_from_rpc",
]

_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request: a path such as ``action.args[1]``, and why."""

    field: str
    description: str


class EchoError(Exception):
    """Base of every error the client raises for a failed call."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        field_violations: Iterable[FieldViolation] = (),
        retry_delay: timedelta | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.retry_delay = retry_delay

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.field_violations:
            text += (
                " ("
                + "; ".join(
                    f"{v.field}: {v.description}" for v in self.field_violations
                )
                + ")"
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description, as ``echoctl`` prints it."""
        body: dict[str, Any] = {"code": self.code.name, "message": self.message}
        if self.field_violations:
            body["field_violations"] = [
                {"field": v.field, "description": v.description}
                for v in self.field_violations
            ]
        if self.retry_delay is not None:
            body["retry_delay"] = f"{self.retry_delay.total_seconds():g}s"
        return body


class InvalidArgumentError(EchoError):
    """The request does not fit the contract or the action's signature."""


class NotFoundError(EchoError):
    """No action with that id."""


class FailedPreconditionError(EchoError):
    """The action's state forbids the request (e.g. it already finished)."""


class ResourceExhaustedError(EchoError):
    """The server's queue is full; retry after ``retry_delay``."""


class UnavailableError(EchoError):
    """The server is draining or cannot be reached; retry later."""


class PermissionDeniedError(EchoError):
    """An admin call without the right admin token."""


class UnauthenticatedError(EchoError):
    """A call without a valid bearer token."""


class DeadlineExceededError(EchoError):
    """The call's timeout passed before the server answered."""


class CallCancelledError(EchoError):
    """The call was cancelled, by this client or on its way."""


class ServerError(EchoError):
    """INTERNAL, UNKNOWN or another code a caller cannot fix by itself."""


_CLASSES: dict[grpc.StatusCode, type[EchoError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CallCancelledError,
}
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def _make(
    code: grpc.StatusCode,
    message: str,
    violations: Iterable[FieldViolation],
    retry: timedelta | None,
) -> EchoError:
    cls = _CLASSES.get(code, ServerError)
    return cls(message, code=code, field_violations=violations, retry_delay=retry)


def error_from_rpc(error: grpc.RpcError) -> EchoError:
    """The client error for a failed call (sync or asyncio)."""
    code: grpc.StatusCode = (
        error.code()
        if callable(getattr(error, "code", None))
        else (grpc.StatusCode.UNKNOWN)
    )
    message = error.details() if callable(getattr(error, "details", None)) else ""
    violations: list[FieldViolation] = []
    retry: timedelta | None = None
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else ()
    for key, value in trailers or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                retry = info.retry_delay.ToTimedelta()
    made = _make(code, message or code.name.lower(), violations, retry)
    made.__cause__ = error
    return made


def error_from_request_error(error: echo_service_pb2.RequestError) -> EchoError:
    """The client error for a failed request of a Connect session."""
    code = _BY_NUMBER.get(error.code, grpc.StatusCode.UNKNOWN)
    retry = error.retry_delay.ToTimedelta() if error.HasField("retry_delay") else None
    violations = [
        FieldViolation(v.field, v.description) for v in error.field_violations
    ]
    return _make(code, error.message, violations, retry)
