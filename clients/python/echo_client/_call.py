"""What every call shares: metadata, timeouts and reconnect backoff.

Deadlines: a call gets the timeout its caller gave, else the client's
default; a long operation (``wait``) hands each call the time that remains
of its own deadline, never more, and no deadline means none is sent (never a
huge "remaining" number that the transport would refuse).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import timedelta

import grpc
from opentelemetry.propagate import inject

__all__ = [
    "DEFAULT_TARGET",
    "RETRYABLE_STREAM_CODES",
    "Backoff",
    "Deadline",
    "call_metadata",
    "channel_options",
    "unary_timeout",
]

DEFAULT_TARGET = "localhost:50051"

# A stream broken with one of these is reopened; other codes are the answer.
RETRYABLE_STREAM_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)


def call_metadata(
    base: Sequence[tuple[str, str]], extra: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """The client's metadata, the call's, and the current W3C trace context."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return [*base, *extra, *((k.lower(), v) for k, v in carrier.items())]


def unary_timeout(timeout: timedelta | None, default: timedelta | None) -> float | None:
    """Seconds a unary call may take: its own timeout, else the client's
    default; None sends no deadline at all."""
    chosen = timeout if timeout is not None else default
    return None if chosen is None else chosen.total_seconds()


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Keep idle streams open through NATs and find dead servers.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]


class Deadline:
    """The end of an operation that spans several calls."""

    def __init__(self, timeout: timedelta | None) -> None:
        self._end = (
            None if timeout is None else time.monotonic() + timeout.total_seconds()
        )

    def remaining(self) -> float | None:
        """Seconds left (at least a tiny positive number), or None for none."""
        if self._end is None:
            return None
        return max(0.001, self._end - time.monotonic())

    def left(self) -> timedelta | None:
        """``remaining`` as the timeout of one call inside the operation."""
        seconds = self.remaining()
        return None if seconds is None else timedelta(seconds=seconds)

    @property
    def expired(self) -> bool:
        return self._end is not None and time.monotonic() >= self._end


class Backoff:
    """Jittered exponential delays for reconnecting a broken stream.

    Each delay is the previous one times two, from ``initial`` up to
    ``maximum``, scaled by a random factor in [0.5, 1.5) so that many clients
    cut off at once do not come back at once. ``give_up_after`` bounds the
    total time spent failing in a row.

    The delays start again from ``initial`` only on ``reset``, when the
    stream delivers again; ``alive`` (the server answered, but delivered
    nothing) restarts the give-up clock alone. So a server that ends every
    stream at once is reconnected ever more slowly, while a quiet stream
    cut now and then is never given up on.
    """

    def __init__(
        self,
        *,
        initial: timedelta = timedelta(milliseconds=100),
        maximum: timedelta = timedelta(seconds=5),
        give_up_after: timedelta | None = timedelta(seconds=60),
    ) -> None:
        self._initial = initial.total_seconds()
        self._maximum = maximum.total_seconds()
        self._limit = None if give_up_after is None else give_up_after.total_seconds()
        self._next = self._initial
        self._failing_since: float | None = None

    def reset(self) -> None:
        """The stream delivers: the next failure starts from the initial delay."""
        self._next = self._initial
        self._failing_since = None

    def alive(self) -> None:
        """The server answered, so the failures so far were not in a row;
        the delay goes on growing."""
        self._failing_since = None

    def next_delay(self) -> float | None:
        """Seconds to wait before the next try, or None to give up."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif self._limit is not None and now - self._failing_since > self._limit:
            return None
        delay = self._next * random.uniform(0.5, 1.5)
        self._next = min(self._next * 2, self._maximum)
        return delay
