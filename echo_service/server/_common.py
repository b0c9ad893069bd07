"""Helpers the unary handlers, the Stream handler and Connect sessions share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio

from echo_service._proto.echo.v1 import action_pb2, echo_service_pb2
from echo_service.errors import FieldViolation, InvalidArgument, OutOfRange
from echo_service.server._convert import (
    STATES_FROM_PROTO,
    action_to_proto,
    timestamp,
)
from echo_service.server._feed import Feed, StreamFilter, open_feed
from echo_service.server._runtime import Runtime
from echo_service.telemetry import current_traceparent

__all__ = [
    "FINISHED_STATES",
    "MAX_ID_BYTES",
    "call_trace_context",
    "cancel",
    "heartbeat",
    "heartbeat_interval",
    "journal_head",
    "rename_paths",
    "require_id",
    "resume_point",
    "stream_filters",
    "subscribe",
]

_TRACE_KEYS = ("traceparent", "tracestate")
_MAX_FILTER_ENTRIES = 10_000
_MAX_SEQUENCE = 2**63 - 1
"""Journals keep sequences as signed 64-bit integers."""
MAX_ID_BYTES = 128
"""Engine ids are 32 hex digits; this leaves room and bounds what a caller's
id can cost (the journal lookup, and any message that names it)."""
FINISHED_STATES = frozenset(
    {
        action_pb2.ACTION_STATE_SUCCEEDED,
        action_pb2.ACTION_STATE_FAILED,
        action_pb2.ACTION_STATE_CANCELLED,
    }
)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def call_trace_context(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The W3C trace context an action without its own continues.

    The current span comes first: with the telemetry interceptor it is the
    call's server span, itself a child of the caller's, so the action's spans
    nest under the call. Without one, the call's own ``traceparent`` and
    ``tracestate`` metadata.
    """
    current = current_traceparent()
    if current:
        return current
    found: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key in _TRACE_KEYS and isinstance(value, str):
            found[key] = value
    return found


def rename_paths(exc: BaseException, old: str, new: str) -> BaseException:
    """The engine names the fields of a one-action assign ``actions[0]...``;
    for Assign and Connect the contract's field is ``action``."""
    if not isinstance(exc, InvalidArgument):
        return exc
    renamed = [
        FieldViolation(
            new + v.field[len(old) :] if v.field.startswith(old) else v.field,
            v.description,
        )
        for v in exc.violations
    ]
    return InvalidArgument(str(exc), renamed)


def heartbeat_interval(
    request: echo_service_pb2.StreamRequest, runtime: Runtime, path: str
) -> timedelta:
    """The stream's heartbeat interval, clamped to the configured bounds."""
    config = runtime.config
    if not request.HasField("heartbeat_interval"):
        return config.heartbeat_interval
    span = request.heartbeat_interval
    if span.seconds < 0 or span.nanos < 0 or span.nanos >= 1_000_000_000:
        raise InvalidArgument(
            "bad heartbeat interval",
            [FieldViolation(_join(path, "heartbeat_interval"), "must not be negative")],
        )
    wanted = span.ToTimedelta()
    return min(
        max(wanted, config.min_heartbeat_interval), config.max_heartbeat_interval
    )


def stream_filters(request: echo_service_pb2.StreamRequest, path: str) -> StreamFilter:
    """The request's filters, checked: no empty entry, ids as ``require_id``
    wants them, no unknown state, and a bounded count of each."""
    violations = []
    for name in ("action_ids", "action_names"):
        values = getattr(request, name)
        if len(values) > _MAX_FILTER_ENTRIES:
            violations.append(
                FieldViolation(
                    _join(path, name), f"at most {_MAX_FILTER_ENTRIES} entries"
                )
            )
        for i, value in enumerate(values):
            problem = _filter_entry_problem(value, ids=name == "action_ids")
            if problem is not None:
                violations.append(FieldViolation(_join(path, f"{name}[{i}]"), problem))
    states = []
    for i, value in enumerate(request.states):
        state = STATES_FROM_PROTO.get(value)
        if state is None:
            violations.append(
                FieldViolation(_join(path, f"states[{i}]"), f"not a state: {value}")
            )
        else:
            states.append(state)
    if violations:
        raise InvalidArgument("bad stream filter", violations)
    return StreamFilter(
        frozenset(request.action_ids),
        frozenset(request.action_names),
        frozenset(states),
    )


def _filter_entry_problem(value: str, *, ids: bool) -> str | None:
    if not value:
        return "empty"
    return _id_problem(value) if ids else None


def _id_problem(action_id: str) -> str | None:
    if len(action_id.encode()) > MAX_ID_BYTES:
        return f"longer than {MAX_ID_BYTES} bytes"
    if not action_id.isprintable():
        return "must be printable"
    return None


def require_id(action_id: str, field: str) -> None:
    """An action id as a request names it: present, short and printable."""
    problem = _id_problem(action_id) if action_id else "required"
    if problem is not None:
        raise InvalidArgument("bad action id", [FieldViolation(field, problem)])


async def resume_point(
    request: echo_service_pb2.StreamRequest, runtime: Runtime, path: str
) -> int | None:
    """The request's ``after_sequence`` (None when unset), checked against
    the journal's head.

    A sequence beyond the head would hide every event until the journal
    caught up with it, so it is refused OUT_OF_RANGE. The head is read after
    the request arrived, and the head never moves back: a client that saw
    sequence N (delivered only once committed) finds the head at N or above,
    and resuming from it is accepted.
    """
    if not request.HasField("after_sequence"):
        return None
    after = request.after_sequence
    field = _join(path, "after_sequence")
    if after > _MAX_SEQUENCE:
        raise InvalidArgument(
            "bad after_sequence", [FieldViolation(field, "at most 2^63 - 1")]
        )
    head = await journal_head(runtime)
    if after > head:
        raise OutOfRange(
            f"after_sequence {after} is beyond the journal's head {head}",
            [FieldViolation(field, f"beyond the journal's head {head}")],
        )
    return after


async def journal_head(rt: Runtime) -> int:
    """The journal's last committed sequence, read on the pool: a shared
    journal answers it with a database round trip, which must not hold the
    event loop (memory and SQLite keep it in memory, so the hop is all it
    costs them, once per stream opened)."""
    return await rt.blocking(lambda: rt.engine.last_sequence)


def heartbeat(last_sequence: int) -> echo_service_pb2.Heartbeat:
    return echo_service_pb2.Heartbeat(
        time=timestamp(datetime.now(UTC)), last_sequence=last_sequence
    )


async def cancel(
    rt: Runtime, request: echo_service_pb2.CancelRequest, path: str
) -> echo_service_pb2.CancelResponse:
    """Cancel for the unary RPC and for sessions (``path`` prefixes fields)."""
    require_id(request.id, _join(path, "id"))
    view = await rt.blocking(rt.engine.cancel, request.id, request.reason)
    return echo_service_pb2.CancelResponse(action=action_to_proto(view, rt.signatures))


async def subscribe(
    rt: Runtime,
    *,
    after: int | None,
    only: StreamFilter,
) -> tuple[Feed, int]:
    """Open a feed and tell from which sequence on it is complete.

    A live request (``after`` None) starts from the journal's last sequence,
    read before subscribing, and the subscription replays from there: an
    event committed between the read and the subscription is replayed rather
    than lost, so the stream holds every event above the number it reports.
    """
    start = await journal_head(rt) if after is None else after
    feed = await open_feed(
        rt.engine,
        after=start,
        only=only,
        buffer=rt.config.stream_buffer,
        run_blocking=rt.blocking,
    )
    feed.delivered = start
    return feed, start
