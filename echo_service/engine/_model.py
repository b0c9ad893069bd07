"""The engine's public records: what a client asks for and what it sees back.

Every option keeps "not set" (None) apart from an explicit zero: a zero
delay, priority 0 or ``maximum_attempts=0`` (unlimited) mean what they say,
and only None falls back to a default.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from echo_service.engine._executor import WorkerStats
from echo_service.store import State

__all__ = [
    "ActionErrorInfo",
    "ActionEvent",
    "ActionOptions",
    "ActionSpec",
    "ActionView",
    "Assigned",
    "DrainReport",
    "EngineStats",
    "ErrorKind",
    "Progress",
    "RetryPolicy",
    "State",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed attempts are retried.

    Attributes:
        initial_interval: delay before the first retry.
        backoff_coefficient: each further delay is this many times the last.
        maximum_interval: cap on one delay; None means 100 x initial_interval.
        maximum_attempts: attempts in all, the first included; 0 is unlimited
            and 1 means no retries.
        non_retryable_error_types: exception type names that stop at once.
        jitter: each delay is spread uniformly by +/- this fraction of itself
            (0 to 1), then capped at maximum_interval.
    """

    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta | None = None
    maximum_attempts: int = 3
    non_retryable_error_types: frozenset[str] = frozenset()
    jitter: float = 0.2

    @property
    def effective_maximum_interval(self) -> timedelta:
        if self.maximum_interval is None:
            return self.initial_interval * 100
        return self.maximum_interval


@dataclass(frozen=True, slots=True)
class ActionOptions:
    """How and when to run an action. ``delay`` and ``not_before`` exclude
    each other; ``priority`` is higher-first; ``retry_policy`` None takes the
    engine's default; ``next_action`` is assigned after a success."""

    delay: timedelta | None = None
    not_before: datetime | None = None
    priority: int = 0
    attempt_timeout: timedelta | None = None
    deadline: datetime | None = None
    retry_policy: RetryPolicy | None = None
    idempotency_key: str | None = None
    next_action: ActionSpec | None = None


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """What a client asks for. ``trace_context`` is a W3C carrier
    (``traceparent``, ``tracestate``) that the action's spans continue."""

    name: str
    args: tuple[object, ...] = ()
    options: ActionOptions = field(default_factory=ActionOptions)
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    trace_context: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


class ErrorKind(enum.StrEnum):
    """Why an attempt failed."""

    HANDLER = "handler"  # the handler raised
    TIMEOUT = "timeout"  # the attempt ran past its attempt_timeout
    CANCELLED = "cancelled"  # cancelled on request
    DEADLINE = "deadline"  # the action's overall deadline passed
    HOOK = "hook"  # a before-attempt hook raised
    INVALID_RESULT = "invalid_result"  # the result did not fit the output type
    LOST = "lost"  # the attempt was cut short by a stop; it runs again


@dataclass(frozen=True, slots=True)
class ActionErrorInfo:
    """A structured error: the handler's own exception type name and message."""

    type: str
    message: str
    kind: ErrorKind
    non_retryable: bool = False
    details: str = ""


@dataclass(frozen=True, slots=True)
class ActionView:
    """An action as it stands in the journal."""

    id: str
    name: str
    args: tuple[object, ...]
    options: ActionOptions
    metadata: Mapping[str, str]
    trace_context: Mapping[str, str]
    state: State
    attempt: int
    result: object | None
    error: ActionErrorInfo | None
    created_at: datetime
    updated_at: datetime
    parent_id: str | None


@dataclass(frozen=True, slots=True)
class Progress:
    fraction: float | None
    message: str


@dataclass(frozen=True, slots=True)
class ActionEvent:
    """One journaled state change, numbered by the global ``sequence``."""

    sequence: int
    action_id: str
    name: str
    state: State
    attempt: int
    at: datetime
    result: object | None = None
    error: ActionErrorInfo | None = None
    progress: Progress | None = None
    retry_delay: timedelta | None = None
    trace_id: str = ""


@dataclass(frozen=True, slots=True)
class Assigned:
    """The answer to one assign; ``duplicate`` when the idempotency key was
    seen before and ``action`` is the first action with it."""

    action: ActionView
    duplicate: bool


@dataclass(frozen=True, slots=True)
class EngineStats:
    """``waiting``: unfinished actions in the journal; ``running``: attempts
    on a worker now; ``in_flight``: claimed by this engine and not finished."""

    waiting: int
    running: int
    in_flight: int
    workers: tuple[WorkerStats, ...]


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What ``drain`` saw: attempts that finished within the grace, attempts
    told to stop through their token, and those that had not returned when
    ``drain`` gave up on them (their threads stay busy)."""

    finished: int
    interrupted: int
    abandoned: int
