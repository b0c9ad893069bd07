"""What a handler sees while it runs, and the signals it can raise.

A handler is ``handler(ctx, *args)``, plain or ``async``. It learns of a
timeout, a cancel or a shutdown through ``ctx.cancellation``; it asks for a
retry with its own delay by raising ``Retry`` and stops retries by raising
``NonRetryable``.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from echo_service.engine._model import ActionSpec

__all__ = [
    "CancellationToken",
    "ContextCache",
    "ExecutionContext",
    "NonRetryable",
    "Retry",
]

T = TypeVar("T")


class Retry(Exception):
    """Raised by a handler to fail this attempt and retry after ``next_delay``.

    ``next_delay`` overrides the policy's backoff for this one retry; the
    attempt limit still applies. Raise it ``from`` the real error to have that
    error's type and message reported.
    """

    def __init__(
        self, message: str = "", *, next_delay: timedelta | None = None
    ) -> None:
        super().__init__(message or "retry requested")
        self.next_delay = next_delay


class NonRetryable(Exception):
    """Raised by a handler to fail the action now, whatever the policy says.

    Raise it ``from`` the real error to have that error's type reported.
    """


class CancelCause(enum.StrEnum):
    TIMEOUT = "timeout"
    DEADLINE = "deadline"
    CANCEL = "cancel"
    SHUTDOWN = "shutdown"
    LOST = "lost"  # the claim went to another runner (a lease ran out)


class CancellationToken:
    """Tells a running handler to stop. The first cancel wins; later ones
    change nothing."""

    __slots__ = ("_callbacks", "_cause", "_event", "_lock", "_reason")

    def __init__(self) -> None:
        # One per attempt, nearly never waited on: the event is made by the
        # first ``wait``. _lock guards _event's creation, _cause, _reason
        # and _callbacks.
        self._event: threading.Event | None = None
        self._lock = threading.Lock()
        self._cause: CancelCause | None = None
        self._reason = ""
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cause is not None

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def cause(self) -> CancelCause | None:
        return self._cause

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` seconds pass; True if cancelled."""
        with self._lock:
            if self._cause is not None:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def cancel(self, cause: CancelCause, reason: str = "") -> bool:
        """Cancel with ``cause``; False when it was already cancelled."""
        with self._lock:
            if self._cause is not None:
                return False
            self._reason = reason or str(cause)
            self._cause = cause  # after the reason: readers go by the cause
            callbacks, self._callbacks = self._callbacks, []
            event = self._event
        if event is not None:
            event.set()
        for callback in callbacks:
            callback()
        return True

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on cancel (now, if already cancelled)."""
        with self._lock:
            if self._cause is None:
                self._callbacks.append(callback)
                return
        callback()


class ContextCache:
    """A dict shared by every handler of one engine, safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}

    def get(self, key: str, default: object = None) -> Any:
        with self._lock:
            return self._data.get(key, default)

    def set(self, key: str, value: object) -> None:
        with self._lock:
            self._data[key] = value

    def pop(self, key: str, default: object = None) -> Any:
        with self._lock:
            return self._data.pop(key, default)

    def get_or_create(self, key: str, factory: Callable[[], T]) -> T:
        """Return the cached value, creating it once under the lock if absent."""
        with self._lock:
            if key not in self._data:
                self._data[key] = factory()
            value: T = self._data[key]
            return value


class ExecutionContext:
    """One attempt's view of the engine. Built by the processor per attempt."""

    __slots__ = (
        "_assign",
        "_progress",
        "action_id",
        "attempt",
        "cache",
        "cancellation",
        "config",
        "logger",
        "metadata",
        "name",
        "trace_id",
    )

    def __init__(
        self,
        *,
        action_id: str,
        name: str,
        attempt: int,
        metadata: Mapping[str, str],
        config: Mapping[str, object],
        cache: ContextCache,
        cancellation: CancellationToken,
        trace_id: str,
        progress: Callable[[float | None, str], None],
        assign: Callable[[ActionSpec], str],
    ) -> None:
        self.action_id = action_id
        self.name = name
        self.attempt = attempt
        self.metadata = metadata
        self.config = config
        self.cache = cache
        self.cancellation = cancellation
        self.trace_id = trace_id
        self._progress = progress
        self._assign = assign
        self.logger = logging.LoggerAdapter(
            logging.getLogger(f"echo.action.{name}"),
            {"action_id": action_id, "attempt": attempt, "trace_id": trace_id},
        )

    def progress(self, fraction: float | None = None, message: str = "") -> None:
        """Journal a progress event (0.0 to 1.0, and/or a message)."""
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ValueError("progress fraction must be between 0 and 1")
        self._progress(fraction, message)

    def assign(self, spec: ActionSpec) -> str:
        """Assign a child action; returns its id. A child due now runs on
        this worker's own deque, where idle workers may steal it."""
        return self._assign(spec)
