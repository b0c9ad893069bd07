"""The system clock waits sanely whatever deadline it is given."""

from __future__ import annotations

import threading
import time

from echo_service.engine import SystemClock


def test_a_deadline_centuries_away_waits_until_notified_instead_of_failing() -> None:
    clock = SystemClock()
    cond = threading.Condition()
    waiting = threading.Event()
    outcome: list[BaseException | None] = []

    def wait() -> None:
        try:
            with cond:
                waiting.set()
                clock.wait(cond, time.time() + 1e13)
            outcome.append(None)
        except BaseException as exc:  # recorded for the assertion below
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert waiting.wait(5)
    with cond:
        cond.notify_all()
    waiter.join(5)

    assert not waiter.is_alive()
    assert outcome == [None]
