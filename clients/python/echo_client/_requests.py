"""The protobuf requests of every call, built from the caller's Python values.

Pure: no I/O and no clock, so the synchronous and the asyncio client send
the same messages for the same arguments. Values, options and their
durations and times are converted by the records of ``_types`` (only what is
set goes on the wire); this module puts them in the request of each RPC and
of each Connect message. Bad values raise here, before any call is made.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta

from echo_client._proto.echo.v1 import action_pb2, echo_service_pb2
from echo_client._types import (
    FINAL_STATES,
    ActionRequest,
    Options,
    StateLike,
    requests_to_proto,
    state_to_proto,
)

__all__ = [
    "RequestIds",
    "action",
    "admin_metadata",
    "assign",
    "assign_many",
    "assign_stream",
    "cancel",
    "connect_ack",
    "connect_assign",
    "connect_cancel",
    "connect_subscribe",
    "get",
    "list_signatures",
    "resume",
    "shutdown",
    "stream",
    "wait_stream",
]

_ADMIN_TOKEN_HEADER = "x-echo-admin-token"


def action(
    name: str,
    args: Sequence[object],
    options: Options | action_pb2.ActionOptions | None,
    metadata: dict[str, str] | None,
) -> action_pb2.Action:
    return ActionRequest(name, tuple(args), options, metadata or {}).to_proto()


def assign(
    name: str,
    args: Sequence[object],
    options: Options | action_pb2.ActionOptions | None,
    metadata: dict[str, str] | None,
) -> echo_service_pb2.AssignRequest:
    return echo_service_pb2.AssignRequest(action=action(name, args, options, metadata))


def assign_many(
    actions: Iterable[ActionRequest | action_pb2.Action],
) -> echo_service_pb2.AssignManyRequest:
    return echo_service_pb2.AssignManyRequest(actions=requests_to_proto(actions))


def assign_stream(
    actions: Iterable[ActionRequest | action_pb2.Action], chunk: int
) -> Iterator[echo_service_pb2.AssignStreamRequest]:
    """The messages of an AssignStream call, ``chunk`` actions each.

    Every action is converted now, so a bad value raises to the caller
    before the call opens; the messages themselves are made as the call
    reads them.

    Raises:
        ValueError: ``chunk`` is below 1.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}")
    protos = requests_to_proto(actions)
    return (
        echo_service_pb2.AssignStreamRequest(actions=protos[i : i + chunk])
        for i in range(0, len(protos), chunk)
    )


def get(action_id: str) -> echo_service_pb2.GetActionRequest:
    return echo_service_pb2.GetActionRequest(id=action_id)


def cancel(action_id: str, reason: str) -> echo_service_pb2.CancelRequest:
    return echo_service_pb2.CancelRequest(id=action_id, reason=reason)


def list_signatures() -> echo_service_pb2.ListSignaturesRequest:
    return echo_service_pb2.ListSignaturesRequest()


def shutdown(grace: timedelta | None) -> echo_service_pb2.ShutdownRequest:
    request = echo_service_pb2.ShutdownRequest()
    if grace is not None:
        request.grace.FromTimedelta(grace)
    return request


def admin_metadata(admin_token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries the server's admin token."""
    return ((_ADMIN_TOKEN_HEADER, admin_token),)


def stream(
    *,
    after: int | None,
    action_ids: Iterable[str],
    names: Iterable[str],
    heartbeat: timedelta | None,
    states: Iterable[StateLike] = (),
) -> echo_service_pb2.StreamRequest:
    """A Stream's (or a subscribe's) filter; empty filters ask for all.

    Raises:
        ValueError, TypeError: a state that is none (see ``state_to_proto``).
    """
    request = echo_service_pb2.StreamRequest(
        action_ids=list(action_ids),
        action_names=list(names),
        states=[state_to_proto(state) for state in states],
    )
    if after is not None:
        request.after_sequence = after
    if heartbeat is not None:
        request.heartbeat_interval.FromTimedelta(heartbeat)
    return request


def wait_stream(action_id: str) -> echo_service_pb2.StreamRequest:
    """The live final event of one action, which ``wait`` watches: the
    transitions before it would cross the wire for nothing."""
    return stream(
        after=None,
        action_ids=[action_id],
        names=(),
        heartbeat=None,
        states=FINAL_STATES,
    )


def resume(
    request: echo_service_pb2.StreamRequest, after: int | None
) -> echo_service_pb2.StreamRequest:
    """``request`` again, from ``after`` on when a sequence was seen."""
    out = echo_service_pb2.StreamRequest()
    out.CopyFrom(request)
    if after is not None:
        out.after_sequence = after
    return out


class RequestIds:
    """Names a session's requests ``r1``, ``r2``... unless the caller did.

    Any thread may take an id; the lock keeps each one unique.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _next
        self._next = itertools.count(1)

    def take(self, request_id: str | None) -> str:
        if request_id:
            return request_id
        with self._lock:
            return f"r{next(self._next)}"


def connect_assign(
    request_id: str,
    name: str,
    args: Sequence[object],
    options: Options | action_pb2.ActionOptions | None,
    metadata: dict[str, str] | None,
) -> echo_service_pb2.ConnectRequest:
    return echo_service_pb2.ConnectRequest(
        request_id=request_id, assign=assign(name, args, options, metadata)
    )


def connect_cancel(
    request_id: str, action_id: str, reason: str
) -> echo_service_pb2.ConnectRequest:
    return echo_service_pb2.ConnectRequest(
        request_id=request_id, cancel=cancel(action_id, reason)
    )


def connect_subscribe(
    request_id: str,
    *,
    after: int | None,
    action_ids: Iterable[str],
    names: Iterable[str],
    heartbeat: timedelta | None,
    states: Iterable[StateLike] = (),
) -> echo_service_pb2.ConnectRequest:
    return echo_service_pb2.ConnectRequest(
        request_id=request_id,
        subscribe=stream(
            after=after,
            action_ids=action_ids,
            names=names,
            heartbeat=heartbeat,
            states=states,
        ),
    )


def connect_ack(request_id: str, sequence: int) -> echo_service_pb2.ConnectRequest:
    return echo_service_pb2.ConnectRequest(
        request_id=request_id, ack=echo_service_pb2.Ack(sequence=sequence)
    )
