"""Chores the engine repeats on its own clock: retention purges, lease renewals.

Each chore has a thread of its own, so a long purge never delays a lease
renewal. The thread waits through the engine's ``Clock``: with a
``ManualClock`` a test moves time and the chore runs, without sleeping.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from echo_service.engine._clock import Clock

__all__ = ["Periodic"]

logger = logging.getLogger(__name__)


class Periodic:
    """Runs ``task`` after ``first``, then every ``interval``.

    Runs are never repeated to catch up: after a clock jump, or a run longer
    than ``interval``, the next one runs at once and the count starts again
    from there. ``_cond`` guards ``_stopping``; the thread is the only caller
    of ``task``, so runs never overlap.
    """

    def __init__(
        self,
        clock: Clock,
        task: Callable[[], object],
        *,
        interval: timedelta,
        first: timedelta = timedelta(0),
        name: str,
    ) -> None:
        if interval <= timedelta(0):
            raise ValueError(f"{name}: the interval must be positive")
        self._clock = clock
        self._task = task
        self._interval = interval.total_seconds()
        self._first = first.total_seconds()
        self._name = name
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the run in progress, if any, and join the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        due = self._clock.now() + self._first
        while True:
            with self._cond:
                while not self._stopping and self._clock.now() < due:
                    self._clock.wait(self._cond, due)
                if self._stopping:
                    return
            # Counted from the start of the run: time that passes while the
            # task runs counts towards the next one (a late one runs at once).
            due = self._clock.now() + self._interval
            try:
                self._task()
            except Exception:
                logger.exception(
                    "%s failed; it runs again in %ss", self._name, self._interval
                )
