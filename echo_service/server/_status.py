"""Errors to gRPC status, the one place where the error tree meets codes.

Each class of ``echo_service.errors`` maps to exactly one canonical code, and
details travel as google.rpc messages in the ``grpc-status-details-bin``
trailer: ``BadRequest`` field violations for INVALID_ARGUMENT, ``RetryInfo``
for RESOURCE_EXHAUSTED and UNAVAILABLE. Anything not raised on purpose is a
bug: it is logged with its traceback and answered INTERNAL with a message
that reveals nothing of the server's insides; the server goes on.

A Connect session answers a failed request with a ``RequestError`` rather
than a status; ``request_error`` builds it from the same mapping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from echo_service import errors
from echo_service._proto.echo.v1 import echo_service_pb2
from echo_service.server._convert import duration, field_violations_to_proto

__all__ = ["Problem", "problem_for", "request_error", "rpc_status_for"]

logger = logging.getLogger(__name__)

# Used when an error asks the client to come back but does not say when.
_DEFAULT_RETRY = timedelta(seconds=1)
# Messages and violations may quote what a caller sent; quoted whole, a huge
# input would overflow the trailers (the client then sees RESOURCE_EXHAUSTED
# "metadata size exceeds hard limit" instead of the error). Every text that
# leaves through a status or a RequestError is cut here, in one place.
# Bounds are UTF-8 bytes: the message travels percent-encoded in grpc-message
# and again in the details, which must stay well under the 8 KiB a peer
# accepts by default.
_MAX_MESSAGE_BYTES = 512
_MAX_FIELD_BYTES = 128
_MAX_DESCRIPTION_BYTES = 256
_VIOLATIONS_BUDGET = 2048
"""Bytes of field violations one answer carries; the rest are counted."""


# First match wins: OutOfRange before the InvalidArgument it extends.
_CODES: tuple[tuple[type[errors.EchoError], grpc.StatusCode], ...] = (
    (errors.OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.QueueFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.SlowConsumer, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.StoreError, grpc.StatusCode.INTERNAL),
)


@dataclass(frozen=True, slots=True)
class Problem:
    """What a failed request tells its caller."""

    code: grpc.StatusCode
    message: str
    violations: tuple[errors.FieldViolation, ...] = ()
    retry_delay: timedelta | None = None


def problem_for(exc: BaseException, *, rpc: str) -> Problem:
    """Classify ``exc``; log it when it is a bug or a journal failure."""
    code = next((c for cls, c in _CODES if isinstance(exc, cls)), None)
    if code is None:
        logger.error("unexpected error in %s", rpc, exc_info=exc)
        return Problem(grpc.StatusCode.INTERNAL, "internal error; see the server log")
    if isinstance(exc, errors.StoreError):
        logger.error("journal failure in %s", rpc, exc_info=exc)
        return Problem(code, "the journal failed; see the server log")
    violations: tuple[errors.FieldViolation, ...] = ()
    retry: timedelta | None = None
    if isinstance(exc, errors.InvalidArgument):
        violations = exc.violations
    elif isinstance(exc, errors.QueueFull):
        retry = exc.retry_after
    elif isinstance(exc, errors.Unavailable):
        retry = exc.retry_after or _DEFAULT_RETRY
    return Problem(
        code,
        _cut(str(exc) or code.name.lower(), _MAX_MESSAGE_BYTES),
        _bounded(violations),
        retry,
    )


def _bounded(
    violations: tuple[errors.FieldViolation, ...],
) -> tuple[errors.FieldViolation, ...]:
    """Each violation cut, and no more of them than the budget holds."""
    kept: list[errors.FieldViolation] = []
    spent = 0
    for i, v in enumerate(violations):
        cut = errors.FieldViolation(
            _cut(v.field, _MAX_FIELD_BYTES),
            _cut(v.description, _MAX_DESCRIPTION_BYTES),
        )
        spent += len(cut.field.encode()) + len(cut.description.encode())
        if spent > _VIOLATIONS_BUDGET:
            left = len(violations) - i
            kept.append(errors.FieldViolation("", f"and {left} more violations"))
            break
        kept.append(cut)
    return tuple(kept)


def _cut(text: str, limit: int) -> str:
    """``text`` bounded to ``limit`` UTF-8 bytes, marked when cut."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    kept = raw[: limit - 32].decode(errors="ignore")
    return f"{kept}... ({len(raw) - len(kept.encode())} more bytes)"


def rpc_status_for(problem: Problem) -> grpc.Status:
    """The status with google.rpc details, ready for ``abort_with_status``."""
    details: list[any_pb2.Any] = []
    if problem.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in problem.violations
            ]
        )
        details.append(_pack(bad))
    if problem.retry_delay is not None:
        details.append(
            _pack(
                error_details_pb2.RetryInfo(retry_delay=duration(problem.retry_delay))
            )
        )
    status = status_pb2.Status(
        code=_rpc_code(problem.code), message=problem.message, details=details
    )
    return rpc_status.to_status(status)


def request_error(problem: Problem) -> echo_service_pb2.RequestError:
    """The same problem as a Connect session's per-request error."""
    out = echo_service_pb2.RequestError(
        code=_rpc_code(problem.code),
        message=problem.message,
        field_violations=field_violations_to_proto(problem.violations),
    )
    if problem.retry_delay is not None:
        out.retry_delay.CopyFrom(duration(problem.retry_delay))
    return out


def _rpc_code(code: grpc.StatusCode) -> int:
    # grpc.StatusCode and google.rpc.Code share their numbers.
    value: int = code.value[0]
    return value


def _pack(
    message: error_details_pb2.BadRequest | error_details_pb2.RetryInfo,
) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
