"""Echo's error tree, shared by every layer.

Each class maps to exactly one canonical gRPC status code; the server does the
mapping at its edge (``echo_service.server``), so the engine and the store
never import gRPC.

    EchoError
    ├── InvalidArgument      INVALID_ARGUMENT     bad input, with field violations
    │   └── OutOfRange       OUT_OF_RANGE         past what exists now (a sequence)
    ├── NotFound             NOT_FOUND            no action with that id
    ├── FailedPrecondition   FAILED_PRECONDITION  e.g. cancelling a finished action
    ├── QueueFull            RESOURCE_EXHAUSTED   bounded queue is full, retry later
    ├── Unavailable          UNAVAILABLE          shutting down, or store unreachable
    ├── PermissionDenied     PERMISSION_DENIED    admin RPC without the admin token
    ├── Unauthenticated      UNAUTHENTICATED      missing or wrong bearer token
    ├── SlowConsumer         RESOURCE_EXHAUSTED   a listener fell behind its buffer
    └── StoreError           INTERNAL             the journal failed; cause chained
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

__all__ = [
    "EchoError",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "QueueFull",
    "SlowConsumer",
    "StoreError",
    "Unauthenticated",
    "Unavailable",
]


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: a dotted path such as ``actions[2].args[0]`` and why."""

    field: str
    description: str


class EchoError(Exception):
    """Base of every error Echo raises on purpose."""


class InvalidArgument(EchoError):
    """The request does not fit the contract or the plan's signature."""

    def __init__(self, message: str, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations: tuple[FieldViolation, ...] = tuple(violations)


class OutOfRange(InvalidArgument):
    """A well-formed value past what exists now, such as a sequence beyond the
    journal's head; asking again later may succeed."""


class NotFound(EchoError):
    """No action, or no other named thing, with the given identity."""


class FailedPrecondition(EchoError):
    """The request is well formed but the target's state forbids it."""


class QueueFull(EchoError):
    """The bounded queue is full; the caller should retry after ``retry_after``."""

    def __init__(self, message: str, retry_after: timedelta) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(EchoError):
    """The service cannot take the request now (draining, store down)."""

    def __init__(self, message: str, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermissionDenied(EchoError):
    """The caller is known but may not do this (no or wrong admin token)."""


class Unauthenticated(EchoError):
    """The caller did not present valid credentials."""


class SlowConsumer(EchoError):
    """A listener's bounded buffer overflowed; it must resume from a sequence."""

    def __init__(self, message: str, last_sequence: int) -> None:
        super().__init__(message)
        self.last_sequence = last_sequence


class StoreError(EchoError):
    """The journal failed to read or write; the cause is chained."""
