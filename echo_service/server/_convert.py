"""Translation between the contract's messages and the engine's records.

Incoming messages are checked against the contract as they are converted:
every problem becomes a ``FieldViolation`` with the field's path, and all of
a request's problems are reported together rather than the first alone.
The plan's signature check (``check_args``) runs here too, so a client learns
of a bad argument and a bad option in one answer.

Rules that hold in both directions:

* Integers stay integers: ``int_value`` is an ``int``; JSON travels as text
  and is parsed with Python's ``json``, which keeps ``1`` as ``1`` and keeps
  every digit of a large integer. An ``int`` result beyond 64 bits goes out
  as ``json_value`` text rather than losing digits.
* Presence is explicit: an option is taken only when the client set it
  (``HasField`` on messages and ``optional`` scalars), so an explicit zero
  means zero and an unset field means the default.
* Results and arguments go out typed by the signature when there is one: a
  JSON output is always ``json_value`` (even a bare string or ``null``), a
  NONE output is no value at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar, cast

from google.protobuf import any_pb2, duration_pb2, timestamp_pb2

from echo_service._proto.echo.v1 import action_pb2, echo_service_pb2
from echo_service.engine import (
    ActionErrorInfo,
    ActionEvent,
    ActionOptions,
    ActionSignature,
    ActionSpec,
    ActionView,
    ErrorKind,
    PackedMessage,
    RetryPolicy,
    State,
    TypeRef,
    ValueType,
    check_args,
)
from echo_service.errors import FieldViolation, InvalidArgument

__all__ = [
    "STATES_FROM_PROTO",
    "EventMessages",
    "Limits",
    "action_to_proto",
    "duration",
    "event_to_proto",
    "signature_to_proto",
    "spec_from_proto",
    "timestamp",
    "value_to_proto",
]

_M = TypeVar("_M")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_DURATION_SECONDS = 315_576_000_000  # the Duration message's own bound
_NANOS = 1_000_000_000
_MAX_NEXT_ACTION_DEPTH = 16
_OUTPUT_ONLY = {
    "id": "output only: the server assigns the id",
    **{
        name: "output only"
        for name in (
            "state",
            "attempt",
            "parent_id",
            "result",
            "error",
            "create_time",
            "update_time",
        )
    },
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DEFAULT_OPTIONS = ActionOptions()


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits of an incoming action, from the contract.

    Attributes:
        max_idempotency_key_bytes: UTF-8 length of ``options.idempotency_key``.
        max_metadata_key_bytes: UTF-8 length of one metadata or trace key.
        max_metadata_value_bytes: UTF-8 length of one metadata or trace value.
        max_metadata_entries: entries in ``metadata``; bounds memory per action.
        max_non_retryable_types: entries in ``non_retryable_error_types``.
    """

    max_idempotency_key_bytes: int = 256
    max_metadata_key_bytes: int = 256
    max_metadata_value_bytes: int = 4096
    max_metadata_entries: int = 256
    max_non_retryable_types: int = 100


class _Violations:
    """Collects the problems of one request, each under its field path."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))


@dataclass(frozen=True, slots=True)
class _Inbound:
    """What converting one request needs besides the message itself."""

    signatures: Mapping[str, ActionSignature]
    limits: Limits
    call_trace: Mapping[str, str]
    problems: _Violations


# -- incoming -------------------------------------------------------------


def spec_from_proto(
    action: action_pb2.Action,
    *,
    path: str,
    signatures: Mapping[str, ActionSignature],
    limits: Limits,
    call_trace_context: Mapping[str, str],
) -> ActionSpec:
    """Check ``action`` against the contract and its signature; convert it.

    Raises:
        InvalidArgument: with every violation found, paths under ``path``
            (``"action"`` or ``"actions[3]"``).
    """
    problems = _Violations()
    inbound = _Inbound(signatures, limits, call_trace_context, problems)
    spec = _spec(action, path, inbound, depth=0)
    if problems.items or spec is None:
        raise InvalidArgument(f"invalid {path}", problems.items)
    return spec


def _spec(
    action: action_pb2.Action, path: str, inbound: _Inbound, *, depth: int
) -> ActionSpec | None:
    problems, signatures, limits = inbound.problems, inbound.signatures, inbound.limits
    before = len(problems.items)
    signature: ActionSignature | None = None
    if not action.name:
        problems.add(f"{path}.name", "required")
    else:
        signature = signatures.get(action.name)
        if signature is None:
            problems.add(f"{path}.name", f"no action named {action.name!r} in the plan")
    # One C call lists every field set; the output-only ones must not be.
    for descriptor, _ in action.ListFields():
        if descriptor.name in _OUTPUT_ONLY:
            why = _OUTPUT_ONLY[descriptor.name]
            problems.add(f"{path}.{descriptor.name}", why)

    args = [_arg(v, f"{path}.args[{i}]", problems) for i, v in enumerate(action.args)]
    if signature is not None and len(problems.items) == before:
        try:
            args = list(check_args(signature, args))
        except InvalidArgument as exc:
            for v in exc.violations:
                problems.add(f"{path}.{v.field}", v.description)

    options: ActionOptions | None = ActionOptions()
    if action.HasField("options"):
        options = _options(action.options, f"{path}.options", inbound, depth=depth)
    metadata = _string_map(action.metadata, f"{path}.metadata", limits, problems)
    trace = _string_map(action.trace_context, f"{path}.trace_context", limits, problems)
    if not trace:
        trace = dict(inbound.call_trace)
    if len(problems.items) > before or options is None:
        return None
    return ActionSpec(
        name=action.name,
        args=tuple(args),
        options=options,
        metadata=metadata,
        trace_context=trace,
    )


def _arg(value: action_pb2.Value, path: str, problems: _Violations) -> object:
    kind = value.WhichOneof("kind")
    if kind is None:
        problems.add(path, "a Value must have one kind set")
        return None
    if kind == "json_value":
        return _parse_json(value.json_value, path, problems)
    if kind == "message_value":
        any_msg = value.message_value
        if not any_msg.type_url:
            problems.add(f"{path}.message_value.type_url", "required")
        return PackedMessage(type_url=any_msg.type_url, value=any_msg.value)
    return getattr(value, kind)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _parse_json(text: str, path: str, problems: _Violations) -> object:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        problems.add(f"{path}.json_value", f"not valid JSON: {exc}")
        return None


def _options(
    msg: action_pb2.ActionOptions, path: str, inbound: _Inbound, *, depth: int
) -> ActionOptions | None:
    problems, limits = inbound.problems, inbound.limits
    before = len(problems.items)
    delay: timedelta | None = None
    not_before: datetime | None = None
    schedule = msg.WhichOneof("schedule")
    if schedule == "delay":
        delay = _duration(msg.delay, f"{path}.delay", problems, minimum=timedelta(0))
    elif schedule == "not_before":
        not_before = _timestamp(msg.not_before, f"{path}.not_before", problems)
    attempt_timeout = None
    if msg.HasField("attempt_timeout"):
        attempt_timeout = _duration(
            msg.attempt_timeout, f"{path}.attempt_timeout", problems, positive=True
        )
    deadline = None
    if msg.HasField("deadline"):
        deadline = _timestamp(msg.deadline, f"{path}.deadline", problems)
    retry = None
    if msg.HasField("retry_policy"):
        retry = _retry_policy(
            msg.retry_policy, f"{path}.retry_policy", limits, problems
        )
    key = msg.idempotency_key or None
    if key is not None and len(key.encode()) > limits.max_idempotency_key_bytes:
        problems.add(
            f"{path}.idempotency_key",
            f"longer than {limits.max_idempotency_key_bytes} bytes",
        )
    next_action = None
    if msg.HasField("next_action"):
        if depth >= _MAX_NEXT_ACTION_DEPTH:
            problems.add(
                f"{path}.next_action",
                f"next actions nest deeper than {_MAX_NEXT_ACTION_DEPTH}",
            )
        else:
            next_action = _spec(
                msg.next_action, f"{path}.next_action", inbound, depth=depth + 1
            )
    if len(problems.items) > before:
        return None
    return ActionOptions(
        delay=delay,
        not_before=not_before,
        priority=msg.priority if msg.HasField("priority") else 0,
        attempt_timeout=attempt_timeout,
        deadline=deadline,
        retry_policy=retry,
        idempotency_key=key,
        next_action=next_action,
    )


def _retry_policy(
    msg: action_pb2.RetryPolicy, path: str, limits: Limits, problems: _Violations
) -> RetryPolicy | None:
    before = len(problems.items)
    default = RetryPolicy()
    initial = default.initial_interval
    if msg.HasField("initial_interval"):
        # Compared with None, not tested for truth: a zero timedelta is falsy,
        # and an explicit "0s" means no delay, not the default.
        given = _duration(
            msg.initial_interval,
            f"{path}.initial_interval",
            problems,
            minimum=timedelta(0),
        )
        if given is not None:
            initial = given
    coefficient = default.backoff_coefficient
    if msg.HasField("backoff_coefficient"):
        coefficient = msg.backoff_coefficient
        if not (math.isfinite(coefficient) and coefficient >= 1.0):
            problems.add(f"{path}.backoff_coefficient", "must be at least 1")
    maximum: timedelta | None = None
    if msg.HasField("maximum_interval"):
        maximum = _duration(
            msg.maximum_interval,
            f"{path}.maximum_interval",
            problems,
            minimum=timedelta(0),
        )
        if maximum is not None and maximum < initial:
            problems.add(
                f"{path}.maximum_interval", "must not be less than initial_interval"
            )
    attempts = default.maximum_attempts
    if msg.HasField("maximum_attempts"):
        attempts = msg.maximum_attempts
        if attempts < 0:
            problems.add(f"{path}.maximum_attempts", "must not be negative")
    jitter = default.jitter
    if msg.HasField("jitter"):
        jitter = msg.jitter
        if not (math.isfinite(jitter) and 0.0 <= jitter <= 1.0):
            problems.add(f"{path}.jitter", "must be between 0 and 1")
    types = list(msg.non_retryable_error_types)
    if len(types) > limits.max_non_retryable_types:
        problems.add(
            f"{path}.non_retryable_error_types",
            f"more than {limits.max_non_retryable_types} entries",
        )
    for i, name in enumerate(types):
        if not name or len(name) > 256:
            problems.add(
                f"{path}.non_retryable_error_types[{i}]", "must be 1 to 256 characters"
            )
    if len(problems.items) > before:
        return None
    return RetryPolicy(
        initial_interval=initial,
        backoff_coefficient=coefficient,
        maximum_interval=maximum,
        maximum_attempts=attempts,
        non_retryable_error_types=frozenset(types),
        jitter=jitter,
    )


def _duration(
    msg: duration_pb2.Duration,
    path: str,
    problems: _Violations,
    *,
    minimum: timedelta | None = None,
    positive: bool = False,
) -> timedelta | None:
    seconds, nanos = msg.seconds, msg.nanos
    if (
        abs(seconds) > _MAX_DURATION_SECONDS
        or abs(nanos) >= _NANOS
        or (seconds > 0 and nanos < 0)
        or (seconds < 0 and nanos > 0)
    ):
        problems.add(path, "not a valid Duration")
        return None
    value = timedelta(seconds=seconds, microseconds=nanos // 1000)
    if positive and value <= timedelta(0):
        problems.add(path, "must be positive")
        return None
    if minimum is not None and value < minimum:
        problems.add(path, "must not be negative")
        return None
    return value


def _timestamp(
    msg: timestamp_pb2.Timestamp, path: str, problems: _Violations
) -> datetime | None:
    try:
        return msg.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        problems.add(path, "not a valid Timestamp")
        return None


def _string_map(
    entries: Mapping[str, str], path: str, limits: Limits, problems: _Violations
) -> dict[str, str]:
    if len(entries) > limits.max_metadata_entries:
        problems.add(path, f"more than {limits.max_metadata_entries} entries")
        return {}
    out: dict[str, str] = {}
    for key, value in entries.items():
        if not key or len(key.encode()) > limits.max_metadata_key_bytes:
            problems.add(
                f"{path}[{key[:64]!r}]",
                f"keys must be 1 to {limits.max_metadata_key_bytes} bytes",
            )
        elif len(value.encode()) > limits.max_metadata_value_bytes:
            problems.add(
                f"{path}[{key!r}]",
                f"values must be at most {limits.max_metadata_value_bytes} bytes",
            )
        else:
            out[key] = value
    return out


# -- outgoing -------------------------------------------------------------

# The generated stubs type enum values as the enum class; Value() gives int.
_STATES: dict[State, action_pb2.ActionState] = {
    s: cast(
        action_pb2.ActionState, action_pb2.ActionState.Value(f"ACTION_STATE_{s.name}")
    )
    for s in State
}
STATES_FROM_PROTO: dict[int, State] = {v: s for s, v in _STATES.items()}
"""A contract state number to the engine's state (UNSPECIFIED is absent)."""
_KINDS: dict[ErrorKind, action_pb2.ErrorKind] = {
    k: cast(action_pb2.ErrorKind, action_pb2.ErrorKind.Value(f"ERROR_KIND_{k.name}"))
    for k in ErrorKind
    if f"ERROR_KIND_{k.name}" in action_pb2.ErrorKind.DESCRIPTOR.values_by_name
}
# The engine says LOST where the contract says INTERRUPTED: an attempt cut
# short by a stop, which runs again.
_KINDS.update(
    {
        k: action_pb2.ERROR_KIND_INTERRUPTED
        for k in ErrorKind
        if k.name in ("LOST", "INTERRUPTED")
    }
)
_VALUE_TYPES: dict[ValueType, action_pb2.ValueType] = {
    t: cast(action_pb2.ValueType, action_pb2.ValueType.Value(f"VALUE_TYPE_{t.name}"))
    for t in ValueType
}


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """A Timestamp of ``moment``; a naive datetime is taken as UTC."""
    span = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) - _EPOCH
    seconds = span.days * 86_400 + span.seconds
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=span.microseconds * 1000)


def duration(span: timedelta) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(span)
    return out


def value_to_proto(
    value: object, ref: TypeRef | None = None
) -> action_pb2.Value | None:
    """``value`` as a Value, typed by ``ref`` when known; None for no value."""
    kind = ref.type if ref is not None else ValueType.ANY
    if kind is ValueType.NONE:
        return None
    if kind is ValueType.JSON:
        return action_pb2.Value(json_value=_json_text(value))
    if value is None:
        return None
    if isinstance(value, bool):
        return action_pb2.Value(bool_value=value)
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return action_pb2.Value(int_value=value)
        return action_pb2.Value(json_value=str(value))
    if isinstance(value, float):
        return action_pb2.Value(double_value=value)
    if isinstance(value, str):
        return action_pb2.Value(string_value=value)
    if isinstance(value, bytes | bytearray | memoryview):
        return action_pb2.Value(bytes_value=bytes(value))
    if isinstance(value, PackedMessage):
        return action_pb2.Value(
            message_value=any_pb2.Any(type_url=value.type_url, value=value.value)
        )
    return action_pb2.Value(json_value=_json_text(value))


def _json_text(value: object) -> str:
    try:
        return json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError):
        # The engine checks results against the output type, so this is a
        # value it let through as ANY; send its text rather than fail the call.
        return json.dumps(str(value), ensure_ascii=False)


def _error_to_proto(error: ActionErrorInfo) -> action_pb2.ActionError:
    return action_pb2.ActionError(
        type=error.type,
        message=error.message,
        kind=_KINDS.get(error.kind, action_pb2.ERROR_KIND_UNSPECIFIED),
        non_retryable=error.non_retryable,
        details=error.details,
    )


def _retry_policy_to_proto(policy: RetryPolicy) -> action_pb2.RetryPolicy:
    out = action_pb2.RetryPolicy(
        initial_interval=duration(policy.initial_interval),
        backoff_coefficient=policy.backoff_coefficient,
        maximum_attempts=policy.maximum_attempts,
        non_retryable_error_types=sorted(policy.non_retryable_error_types),
        jitter=policy.jitter,
    )
    if policy.maximum_interval is not None:
        out.maximum_interval.CopyFrom(duration(policy.maximum_interval))
    return out


def _options_to_proto(
    options: ActionOptions, signatures: Mapping[str, ActionSignature]
) -> action_pb2.ActionOptions:
    out = action_pb2.ActionOptions(priority=options.priority)
    if options.delay is not None:
        out.delay.CopyFrom(duration(options.delay))
    elif options.not_before is not None:
        out.not_before.CopyFrom(timestamp(options.not_before))
    if options.attempt_timeout is not None:
        out.attempt_timeout.CopyFrom(duration(options.attempt_timeout))
    if options.deadline is not None:
        out.deadline.CopyFrom(timestamp(options.deadline))
    if options.retry_policy is not None:
        out.retry_policy.CopyFrom(_retry_policy_to_proto(options.retry_policy))
    if options.idempotency_key:
        out.idempotency_key = options.idempotency_key
    if options.next_action is not None:
        out.next_action.CopyFrom(_spec_to_proto(options.next_action, signatures))
    return out


def _args_to_proto(
    name: str, args: Sequence[object], signatures: Mapping[str, ActionSignature]
) -> list[action_pb2.Value]:
    signature = signatures.get(name)
    refs: list[TypeRef | None] = [None] * len(args)
    if signature is not None and len(signature.inputs) == len(args):
        refs = [p.type for p in signature.inputs]
    values = []
    for value, ref in zip(args, refs, strict=True):
        converted = value_to_proto(value, ref)
        values.append(converted if converted is not None else action_pb2.Value())
    return values


def _spec_to_proto(
    spec: ActionSpec, signatures: Mapping[str, ActionSignature]
) -> action_pb2.Action:
    return action_pb2.Action(
        name=spec.name,
        args=_args_to_proto(spec.name, spec.args, signatures),
        options=_options_to_proto(spec.options, signatures),
        metadata=dict(spec.metadata),
        trace_context=dict(spec.trace_context),
    )


def _output_ref(name: str, signatures: Mapping[str, ActionSignature]) -> TypeRef | None:
    signature = signatures.get(name)
    return None if signature is None else signature.output


def action_to_proto(
    view: ActionView, signatures: Mapping[str, ActionSignature]
) -> action_pb2.Action:
    """The journaled action as the contract's Action, output fields set."""
    out = action_pb2.Action(
        id=view.id,
        name=view.name,
        args=_args_to_proto(view.name, view.args, signatures),
        options=(
            None
            if view.options == _DEFAULT_OPTIONS
            else _options_to_proto(view.options, signatures)
        ),
        metadata=dict(view.metadata),
        trace_context=dict(view.trace_context),
        state=_STATES[view.state],
        attempt=view.attempt,
        create_time=timestamp(view.created_at),
        update_time=timestamp(view.updated_at),
        parent_id=view.parent_id or "",
    )
    if view.state is State.SUCCEEDED:
        result = value_to_proto(view.result, _output_ref(view.name, signatures))
        if result is not None:
            out.result.CopyFrom(result)
    if view.error is not None:
        out.error.CopyFrom(_error_to_proto(view.error))
    return out


def event_to_proto(
    event: ActionEvent, signatures: Mapping[str, ActionSignature]
) -> action_pb2.ActionEvent:
    out = action_pb2.ActionEvent(
        sequence=event.sequence,
        action_id=event.action_id,
        action_name=event.name,
        state=_STATES[event.state],
        attempt=event.attempt,
        time=timestamp(event.at),
        trace_id=event.trace_id,
    )
    if event.state is State.SUCCEEDED:
        result = value_to_proto(event.result, _output_ref(event.name, signatures))
        if result is not None:
            out.result.CopyFrom(result)
    if event.error is not None:
        out.error.CopyFrom(_error_to_proto(event.error))
    if event.progress is not None:
        progress = action_pb2.Progress(message=event.progress.message)
        if event.progress.fraction is not None:
            progress.fraction = event.progress.fraction
        out.progress.CopyFrom(progress)
    if event.retry_delay is not None:
        out.retry_delay.CopyFrom(duration(event.retry_delay))
    return out


class EventMessages:
    """Each event converted once, shared by every listener of one server.

    Every stream sees the same events in the same ascending order, so a
    small cache keyed by sequence serves them all; the oldest entries go
    first. Loop only: no lock. The messages handed out are shared and must
    not be changed by their users (copying them into a response is fine).
    """

    def __init__(
        self, signatures: Mapping[str, ActionSignature], *, capacity: int = 4096
    ) -> None:
        self._signatures = signatures
        self._capacity = capacity
        self._events: dict[int, action_pb2.ActionEvent] = {}
        self._stream: dict[int, echo_service_pb2.StreamResponse] = {}

    def event(self, event: ActionEvent) -> action_pb2.ActionEvent:
        message = self._events.get(event.sequence)
        if message is None:
            message = event_to_proto(event, self._signatures)
            self._put(self._events, event.sequence, message)
        return message

    def stream_response(self, event: ActionEvent) -> echo_service_pb2.StreamResponse:
        """The whole ``StreamResponse`` of an event: identical on every Stream."""
        message = self._stream.get(event.sequence)
        if message is None:
            message = echo_service_pb2.StreamResponse(event=self.event(event))
            self._put(self._stream, event.sequence, message)
        return message

    def _put(self, cache: dict[int, _M], key: int, message: _M) -> None:
        if len(cache) >= self._capacity:
            del cache[next(iter(cache))]
        cache[key] = message


def _type_ref_to_proto(ref: TypeRef) -> action_pb2.TypeRef:
    return action_pb2.TypeRef(
        type=_VALUE_TYPES[ref.type], message_type=ref.message_type
    )


def signature_to_proto(signature: ActionSignature) -> action_pb2.ActionSignature:
    return action_pb2.ActionSignature(
        name=signature.name,
        inputs=[
            action_pb2.Parameter(
                name=p.name,
                type=_type_ref_to_proto(p.type),
                description=p.description,
                max_bytes=p.max_bytes,
            )
            for p in signature.inputs
        ],
        output=_type_ref_to_proto(signature.output),
        description=signature.description,
    )


def field_violations_to_proto(
    violations: Sequence[FieldViolation],
) -> list[echo_service_pb2.FieldViolation]:
    return [
        echo_service_pb2.FieldViolation(field=v.field, description=v.description)
        for v in violations
    ]
