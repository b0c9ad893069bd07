"""Time, injected: the engine reads the clock and waits through it.

Every wait in the engine is a wait on a ``threading.Condition`` that the
caller holds, until something notifies it or the clock reaches a deadline.
``SystemClock`` turns the deadline into a timeout; ``ManualClock`` moves only
when a test calls ``advance`` and then notifies every waiter, so tests
control time without sleeping.

``Timers`` runs callbacks at clock times on one thread (attempt timeouts);
it waits through the clock too.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "TimerHandle", "Timers"]

logger = logging.getLogger(__name__)

_LONGEST_WAIT = 3600.0
"""Seconds; no single wait is longer, whatever the deadline."""


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds."""
        ...

    def wait(self, cond: threading.Condition, deadline: float | None) -> None:
        """Wait on ``cond`` (held by the caller) until notified or ``deadline``.

        May return early; callers loop on their own predicate.
        """
        ...


class SystemClock:
    """Wall-clock time; waits are condition timeouts."""

    def now(self) -> float:
        return time.time()

    def wait(self, cond: threading.Condition, deadline: float | None) -> None:
        if deadline is None:
            cond.wait()
            return
        remaining = deadline - time.time()
        if remaining > 0:
            # A far deadline (an action due in centuries) would overflow the
            # platform's timeout; waking early is allowed, callers re-check.
            cond.wait(min(remaining, _LONGEST_WAIT))


class ManualClock:
    """A clock that moves only on ``advance``: for tests and simulations.

    Waiters register their condition while they wait; ``advance`` notifies
    all of them after moving time, so each re-checks its deadline.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self._waiters: dict[int, threading.Condition] = {}
        self._ids = itertools.count()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float) -> None:
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else delta
        with self._lock:
            self._now += seconds
            waiters = list(self._waiters.values())
        for cond in waiters:
            with cond:
                cond.notify_all()

    def wait(self, cond: threading.Condition, deadline: float | None) -> None:
        key = next(self._ids)
        with self._lock:
            # Registered before the time check: an advance after this point
            # notifies us, one before it shows in the check.
            self._waiters[key] = cond
            due = deadline is not None and self._now >= deadline
        try:
            if not due:
                cond.wait()
        finally:
            with self._lock:
                del self._waiters[key]


class TimerHandle:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        # A plain flag: the timer thread skips cancelled entries lazily.
        self.cancelled = True


class Timers:
    """One thread that runs callbacks at clock times. Callbacks must be quick."""

    def __init__(self, clock: Clock, *, name: str = "echo-timers") -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, TimerHandle]] = []  # guarded by _cond
        self._seq = itertools.count()
        self._stopping = False
        self._name = name
        self._thread: threading.Thread | None = None  # started on first use

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        handle = TimerHandle(when, callback)
        with self._cond:
            if self._stopping:
                raise RuntimeError("timers are closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=self._name, daemon=True
                )
                self._thread.start()
            first = not self._heap or when < self._heap[0][0]
            heapq.heappush(self._heap, (when, next(self._seq), handle))
            if first:
                self._cond.notify()
        return handle

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if self._heap and self._heap[0][0] <= self._clock.now():
                        handle = heapq.heappop(self._heap)[2]
                        break
                    self._clock.wait(
                        self._cond, self._heap[0][0] if self._heap else None
                    )
            try:
                handle.callback()
            except Exception:
                logger.exception("a timer callback raised")
