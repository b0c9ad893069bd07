"""What the server sends back, as the client's types and errors.

Pure: every function here reads a response, a stream message or a failed
status and returns what the caller sees, so the synchronous and the asyncio
client hand out the same values and raise the same errors. Status details
are decoded in ``_errors``; this module decides which error a failure of a
stream or a session becomes.
"""

from __future__ import annotations

import grpc

from echo_client._errors import EchoError, error_from_request_error, error_from_rpc
from echo_client._proto.echo.v1 import echo_service_pb2
from echo_client._types import Action, Assigned, Event, Signature, StreamEnd

__all__ = [
    "SessionMessage",
    "ShutdownReport",
    "ack_due",
    "action",
    "assigned",
    "assigned_all",
    "session_error",
    "shutdown_report",
    "signatures",
    "stream_cut",
    "stream_end",
    "stream_gave_up",
    "stream_not_started",
    "wait_ended_early",
]


class ShutdownReport:
    """What the server said when it began to drain."""

    def __init__(self, running: int, waiting: int) -> None:
        self.running = running
        self.waiting = waiting

    def __repr__(self) -> str:
        return f"ShutdownReport(running={self.running}, waiting={self.waiting})"


def assigned(response: echo_service_pb2.AssignResponse) -> Assigned:
    return Assigned.from_proto(response)


def assigned_all(
    response: echo_service_pb2.AssignManyResponse
    | echo_service_pb2.AssignStreamResponse,
) -> list[Assigned]:
    return [Assigned.from_proto(r) for r in response.results]


def action(
    response: echo_service_pb2.GetActionResponse | echo_service_pb2.CancelResponse,
) -> Action:
    return Action.from_proto(response.action)


def signatures(response: echo_service_pb2.ListSignaturesResponse) -> list[Signature]:
    return [Signature.from_proto(s) for s in response.signatures]


def shutdown_report(response: echo_service_pb2.ShutdownResponse) -> ShutdownReport:
    return ShutdownReport(response.running, response.waiting)


def stream_end(end: echo_service_pb2.StreamEnd) -> StreamEnd:
    return StreamEnd(end.reason, end.retryable, end.last_sequence)


def stream_cut(error: grpc.RpcError | None) -> EchoError:
    """A stream broken for good: the call's own error, or a cut without one."""
    if error is not None:
        return error_from_rpc(error)
    return EchoError("the stream was cut")


def stream_gave_up(error: grpc.RpcError | None) -> EchoError:
    """Reconnecting ran out of time: the last call's error, if it had one."""
    if error is not None:
        return error_from_rpc(error)
    return EchoError("the server kept ending the stream; gave up")


def stream_not_started() -> EchoError:
    return EchoError("the stream ended before it started")


def wait_ended_early(action_id: str) -> EchoError:
    return EchoError(f"the event stream of {action_id} ended early")


class SessionMessage:
    """One message of a session, tied to ``request_id``.

    ``kind`` is one of ``assigned``, ``cancelled``, ``subscribed``, ``event``,
    ``error``, ``heartbeat`` or ``end``; the matching attribute is set.
    """

    __slots__ = (
        "assigned",
        "cancelled",
        "end",
        "error",
        "event",
        "kind",
        "last_sequence",
        "request_id",
    )

    def __init__(self, message: echo_service_pb2.ConnectResponse) -> None:
        self.request_id = message.request_id
        self.kind: str = message.WhichOneof("kind") or ""
        self.assigned: Assigned | None = None
        self.cancelled: Action | None = None
        self.event: Event | None = None
        self.error: EchoError | None = None
        self.end: StreamEnd | None = None
        self.last_sequence: int | None = None
        if self.kind == "assigned":
            self.assigned = Assigned.from_proto(message.assigned)
        elif self.kind == "cancelled":
            self.cancelled = Action.from_proto(message.cancelled.action)
        elif self.kind == "event":
            self.event = Event.from_proto(message.event)
        elif self.kind == "error":
            self.error = error_from_request_error(message.error)
        elif self.kind == "end":
            self.end = stream_end(message.end)
        elif self.kind == "subscribed":
            self.last_sequence = message.subscribed.last_sequence
        elif self.kind == "heartbeat":
            self.last_sequence = message.heartbeat.last_sequence

    def __repr__(self) -> str:
        return f"SessionMessage({self.kind!r}, request_id={self.request_id!r})"


def ack_due(message: SessionMessage, *, auto_ack: bool) -> int | None:
    """The sequence to acknowledge once ``message`` is handed out, if any:
    with ``auto_ack`` every event reopens the server's window at once."""
    if auto_ack and message.kind == "event" and message.event is not None:
        return message.event.sequence
    return None


def session_error(error: grpc.RpcError) -> EchoError | None:
    """What a session's failed read raises; None when the session was
    cancelled (by ``close``), which ends the iteration quietly."""
    if error.code() == grpc.StatusCode.CANCELLED:
        return None
    return error_from_rpc(error)
