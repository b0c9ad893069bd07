"""The records a client sends and receives, and their proto conversions.

Every option is None unless set; only what is set goes on the wire, so the
server tells an explicit zero (``priority=0``, ``maximum_attempts=0``, a zero
delay) from "use the default".
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from google.protobuf import duration_pb2, timestamp_pb2

from echo_client._proto.echo.v1 import action_pb2, echo_service_pb2
from echo_client._values import from_value, to_value

__all__ = [
    "Action",
    "ActionError",
    "ActionRequest",
    "Assigned",
    "Event",
    "Options",
    "Parameter",
    "RetryPolicy",
    "Signature",
    "State",
    "StreamEnd",
]


class State(enum.StrEnum):
    """Where an action is; ``PROGRESS`` appears on events only."""

    UNSPECIFIED = "unspecified"
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    PROGRESS = "progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)
"""The states the contract marks final: an action has no event after one."""

StateLike = State | str | int
"""A state as a caller names it: a ``State``; its name in any case, with or
without the contract's ``ACTION_STATE_`` prefix; or an ``ActionState``
number of the contract."""

_INT32 = range(-(2**31), 2**31)


def _state(value: int) -> State:
    name = action_pb2.ActionState.Name(value).removeprefix("ACTION_STATE_")
    return State(name.lower())


def state_to_proto(value: StateLike) -> action_pb2.ActionState:
    """The contract's number of a state, for a stream's filter.

    A number is sent as it is: the server, not the client, refuses
    UNSPECIFIED or a number outside the enum (with INVALID_ARGUMENT), as it
    does for the other clients.

    Raises:
        ValueError: a name that is not a state's, or a number beyond int32.
        TypeError: neither a ``State``, a name nor a number.
    """
    if isinstance(value, State):
        number = action_pb2.ActionState.Value(f"ACTION_STATE_{value.name}")
    elif isinstance(value, str):
        name = value.upper().removeprefix("ACTION_STATE_")
        try:
            number = action_pb2.ActionState.Value(f"ACTION_STATE_{name}")
        except ValueError:
            raise ValueError(f"not a state: {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        if value not in _INT32:
            raise ValueError(f"a state number is an int32, not {value}")
        number = value
    else:
        raise TypeError(f"a state is a State, its name or its number, not {value!r}")
    # The stubs type the field's values as the enum; any int32 goes on the wire.
    return cast(action_pb2.ActionState, number)


def _duration(span: timedelta) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(span)
    return out


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return out


def _time(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed attempts are retried; None fields take the server's default.

    Attributes:
        initial_interval: delay before the first retry (default 1s).
        backoff_coefficient: growth of each further delay (default 2.0).
        maximum_interval: cap on one delay (default 100 x initial_interval).
        maximum_attempts: attempts in all; 1 means no retry, 0 unlimited.
        non_retryable_error_types: handler error types never retried.
        jitter: spread of each delay, 0 to 1 (default 0.2).
    """

    initial_interval: timedelta | None = None
    backoff_coefficient: float | None = None
    maximum_interval: timedelta | None = None
    maximum_attempts: int | None = None
    non_retryable_error_types: Sequence[str] = ()
    jitter: float | None = None

    def to_proto(self) -> action_pb2.RetryPolicy:
        out = action_pb2.RetryPolicy(
            non_retryable_error_types=list(self.non_retryable_error_types)
        )
        if self.initial_interval is not None:
            out.initial_interval.CopyFrom(_duration(self.initial_interval))
        if self.backoff_coefficient is not None:
            out.backoff_coefficient = self.backoff_coefficient
        if self.maximum_interval is not None:
            out.maximum_interval.CopyFrom(_duration(self.maximum_interval))
        if self.maximum_attempts is not None:
            out.maximum_attempts = self.maximum_attempts
        if self.jitter is not None:
            out.jitter = self.jitter
        return out


@dataclass(frozen=True, slots=True)
class Options:
    """When and how an action runs; every field optional.

    Attributes:
        delay: run no earlier than this long after acceptance.
        not_before: run no earlier than this time (excludes ``delay``).
        priority: higher runs first; default 0.
        attempt_timeout: limit of one attempt.
        deadline: no attempt starts after it; a running one is cancelled.
        retry_policy: how failures are retried.
        idempotency_key: a repeat with the same key returns the first action.
        next_action: assigned when this one succeeds.
    """

    delay: timedelta | None = None
    not_before: datetime | None = None
    priority: int | None = None
    attempt_timeout: timedelta | None = None
    deadline: datetime | None = None
    retry_policy: RetryPolicy | None = None
    idempotency_key: str | None = None
    next_action: ActionRequest | None = None

    def to_proto(self) -> action_pb2.ActionOptions:
        out = action_pb2.ActionOptions()
        if self.delay is not None:
            out.delay.CopyFrom(_duration(self.delay))
        if self.not_before is not None:
            out.not_before.CopyFrom(_timestamp(self.not_before))
        if self.priority is not None:
            out.priority = self.priority
        if self.attempt_timeout is not None:
            out.attempt_timeout.CopyFrom(_duration(self.attempt_timeout))
        if self.deadline is not None:
            out.deadline.CopyFrom(_timestamp(self.deadline))
        if self.retry_policy is not None:
            out.retry_policy.CopyFrom(self.retry_policy.to_proto())
        if self.idempotency_key:
            out.idempotency_key = self.idempotency_key
        if self.next_action is not None:
            out.next_action.CopyFrom(self.next_action.to_proto())
        return out


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """An action to assign: a name, positional arguments, options, metadata."""

    name: str
    args: Sequence[object] = ()
    options: Options | action_pb2.ActionOptions | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def to_proto(self) -> action_pb2.Action:
        out = action_pb2.Action(
            name=self.name,
            args=[to_value(a) for a in self.args],
            metadata=dict(self.metadata),
        )
        if isinstance(self.options, Options):
            out.options.CopyFrom(self.options.to_proto())
        elif self.options is not None:
            out.options.CopyFrom(self.options)
        return out


@dataclass(frozen=True, slots=True)
class ActionError:
    """A failed attempt's error: the handler's own type and message."""

    type: str
    message: str
    kind: str
    non_retryable: bool = False
    details: str = ""

    @classmethod
    def from_proto(cls, error: action_pb2.ActionError) -> ActionError:
        kind = action_pb2.ErrorKind.Name(error.kind).removeprefix("ERROR_KIND_")
        return cls(
            type=error.type,
            message=error.message,
            kind=kind.lower(),
            non_retryable=error.non_retryable,
            details=error.details,
        )

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "message": self.message,
            "kind": self.kind,
        }
        if self.non_retryable:
            body["non_retryable"] = True
        return body


@dataclass(frozen=True, slots=True)
class Action:
    """An action as the server holds it."""

    id: str
    name: str
    state: State
    attempt: int
    args: tuple[object, ...] = ()
    result: object = None
    error: ActionError | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    parent_id: str | None = None

    @property
    def finished(self) -> bool:
        return self.state.finished

    @classmethod
    def from_proto(cls, action: action_pb2.Action) -> Action:
        return cls(
            id=action.id,
            name=action.name,
            state=_state(action.state),
            attempt=action.attempt,
            args=tuple(from_value(v) for v in action.args),
            result=from_value(action.result) if action.HasField("result") else None,
            error=(
                ActionError.from_proto(action.error)
                if action.HasField("error")
                else None
            ),
            metadata=dict(action.metadata),
            created_at=(
                _time(action.create_time) if action.HasField("create_time") else None
            ),
            updated_at=(
                _time(action.update_time) if action.HasField("update_time") else None
            ),
            parent_id=action.parent_id or None,
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (bytes and packed messages aside)."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "state": str(self.state),
            "attempt": self.attempt,
            "args": list(self.args),
        }
        if self.state is State.SUCCEEDED:
            body["result"] = self.result
        if self.error is not None:
            body["error"] = self.error.as_dict()
        if self.metadata:
            body["metadata"] = dict(self.metadata)
        for key, moment in (("created", self.created_at), ("updated", self.updated_at)):
            if moment is not None:
                body[key] = moment.isoformat().replace("+00:00", "Z")
        if self.parent_id:
            body["parent_id"] = self.parent_id
        return body


@dataclass(frozen=True, slots=True)
class Assigned:
    """An assign's answer; ``duplicate`` when an idempotency key matched."""

    action: Action
    duplicate: bool

    @classmethod
    def from_proto(cls, response: echo_service_pb2.AssignResponse) -> Assigned:
        return cls(Action.from_proto(response.action), response.duplicate)


@dataclass(frozen=True, slots=True)
class Event:
    """One state change of one action, numbered by the global ``sequence``."""

    sequence: int
    action_id: str
    action_name: str
    state: State
    attempt: int
    time: datetime
    result: object = None
    error: ActionError | None = None
    progress: float | None = None
    progress_message: str = ""
    retry_delay: timedelta | None = None
    trace_id: str = ""

    @property
    def finished(self) -> bool:
        return self.state.finished

    @classmethod
    def from_proto(cls, event: action_pb2.ActionEvent) -> Event:
        progress = event.progress if event.HasField("progress") else None
        return cls(
            sequence=event.sequence,
            action_id=event.action_id,
            action_name=event.action_name,
            state=_state(event.state),
            attempt=event.attempt,
            time=_time(event.time),
            result=from_value(event.result) if event.HasField("result") else None,
            error=(
                ActionError.from_proto(event.error) if event.HasField("error") else None
            ),
            progress=(
                progress.fraction
                if progress is not None and progress.HasField("fraction")
                else None
            ),
            progress_message=progress.message if progress is not None else "",
            retry_delay=(
                event.retry_delay.ToTimedelta()
                if event.HasField("retry_delay")
                else None
            ),
            trace_id=event.trace_id,
        )

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "sequence": self.sequence,
            "id": self.action_id,
            "name": self.action_name,
            "state": str(self.state),
            "attempt": self.attempt,
            "time": self.time.isoformat().replace("+00:00", "Z"),
        }
        if self.state is State.SUCCEEDED:
            body["result"] = self.result
        if self.error is not None:
            body["error"] = self.error.as_dict()
        if self.progress is not None:
            body["progress"] = self.progress
        if self.progress_message:
            body["progress_message"] = self.progress_message
        if self.retry_delay is not None:
            body["retry_delay"] = f"{self.retry_delay.total_seconds():g}s"
        return body


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Why the server ended a stream or session on purpose."""

    reason: str
    retryable: bool
    last_sequence: int


@dataclass(frozen=True, slots=True)
class Parameter:
    """One input of a signature; ``type`` is a lower-case type name."""

    name: str
    type: str
    message_type: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Signature:
    """The declared shape of an action in the server's plan."""

    name: str
    inputs: tuple[Parameter, ...]
    output: str
    output_message_type: str = ""
    description: str = ""

    @classmethod
    def from_proto(cls, signature: action_pb2.ActionSignature) -> Signature:
        return cls(
            name=signature.name,
            inputs=tuple(
                Parameter(
                    name=p.name,
                    type=_type_name(p.type.type),
                    message_type=p.type.message_type,
                    description=p.description,
                )
                for p in signature.inputs
            ),
            output=_type_name(signature.output.type),
            output_message_type=signature.output.message_type,
            description=signature.description,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputs": [
                {"name": p.name, "type": p.type}
                | ({"message_type": p.message_type} if p.message_type else {})
                for p in self.inputs
            ],
            "output": self.output,
            "description": self.description,
        }


def _type_name(value: int) -> str:
    return action_pb2.ValueType.Name(value).removeprefix("VALUE_TYPE_").lower()


def requests_to_proto(
    actions: Iterable[ActionRequest | action_pb2.Action],
) -> list[action_pb2.Action]:
    return [a if isinstance(a, action_pb2.Action) else a.to_proto() for a in actions]
