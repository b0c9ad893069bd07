"""Python client of the Echo action service, and the ``echoctl`` command.

``Client`` is synchronous and thread-safe; ``AsyncClient`` is its asyncio
twin. Both speak the ``echo.v1`` contract: assign actions (one, a batch, or a
client stream), wait for them, stream their events (reconnecting and
resuming by sequence number), cancel, read, list the plan's signatures, hold
a bidirectional session, and ask an admin Shutdown. Values go in and come
out as plain Python (see ``Json`` for the one rule to know); failures raise
the ``EchoError`` subclass of their status code.
"""

from echo_client._aio import AsyncClient, AsyncEventStream, AsyncSession
from echo_client._answers import SessionMessage, ShutdownReport
from echo_client._call import DEFAULT_TARGET, Backoff
from echo_client._client import Client, EventStream, Session
from echo_client._errors import (
    CallCancelledError,
    DeadlineExceededError,
    EchoError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServerError,
    UnauthenticatedError,
    UnavailableError,
)
from echo_client._types import (
    FINAL_STATES,
    Action,
    ActionError,
    ActionRequest,
    Assigned,
    Event,
    Options,
    Parameter,
    RetryPolicy,
    Signature,
    State,
    StreamEnd,
)
from echo_client._values import Json, from_value, to_value

__all__ = [
    "DEFAULT_TARGET",
    "FINAL_STATES",
    "Action",
    "ActionError",
    "ActionRequest",
    "Assigned",
    "AsyncClient",
    "AsyncEventStream",
    "AsyncSession",
    "Backoff",
    "CallCancelledError",
    "Client",
    "DeadlineExceededError",
    "EchoError",
    "Event",
    "EventStream",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "Json",
    "NotFoundError",
    "Options",
    "Parameter",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "ServerError",
    "Session",
    "SessionMessage",
    "ShutdownReport",
    "Signature",
    "State",
    "StreamEnd",
    "UnauthenticatedError",
    "UnavailableError",
    "from_value",
    "to_value",
]
