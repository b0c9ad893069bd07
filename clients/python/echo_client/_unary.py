"""Each unary call as data: the RPC, its request, and how to read its answer.

Both clients run a ``UnaryCall`` the same way (the stub's method, the
timeout, the metadata, the error mapping) and differ only in whether they
await it; everything else about a call is decided here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from echo_client import _answers as answers
from echo_client import _requests as requests
from echo_client._answers import ShutdownReport
from echo_client._proto.echo.v1 import action_pb2
from echo_client._types import Action, ActionRequest, Assigned, Options, Signature

__all__ = [
    "UnaryCall",
    "assign",
    "assign_many",
    "assign_stream",
    "cancel",
    "get",
    "list_signatures",
    "shutdown",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UnaryCall(Generic[T]):
    """One request-response call (AssignStream's request is an iterator).

    Attributes:
        method: the name of the RPC, an attribute of the generated stub.
        request: what is sent.
        answer: turns the response into what the caller gets.
        metadata: sent with this call only, after the client's own.
    """

    method: str
    request: Any
    answer: Callable[[Any], T]
    metadata: tuple[tuple[str, str], ...] = ()


def assign(
    name: str,
    args: Sequence[object],
    options: Options | action_pb2.ActionOptions | None,
    metadata: dict[str, str] | None,
) -> UnaryCall[Assigned]:
    return UnaryCall(
        "Assign", requests.assign(name, args, options, metadata), answers.assigned
    )


def assign_many(
    actions: Iterable[ActionRequest | action_pb2.Action],
) -> UnaryCall[list[Assigned]]:
    return UnaryCall("AssignMany", requests.assign_many(actions), answers.assigned_all)


def assign_stream(
    actions: Iterable[ActionRequest | action_pb2.Action], chunk: int
) -> UnaryCall[list[Assigned]]:
    return UnaryCall(
        "AssignStream", requests.assign_stream(actions, chunk), answers.assigned_all
    )


def get(action_id: str) -> UnaryCall[Action]:
    return UnaryCall("GetAction", requests.get(action_id), answers.action)


def cancel(action_id: str, reason: str) -> UnaryCall[Action]:
    return UnaryCall("Cancel", requests.cancel(action_id, reason), answers.action)


def list_signatures() -> UnaryCall[list[Signature]]:
    return UnaryCall("ListSignatures", requests.list_signatures(), answers.signatures)


def shutdown(admin_token: str, grace: timedelta | None) -> UnaryCall[ShutdownReport]:
    return UnaryCall(
        "Shutdown",
        requests.shutdown(grace),
        answers.shutdown_report,
        requests.admin_metadata(admin_token),
    )
