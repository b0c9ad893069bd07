"""A cancellation token: first cancel wins, waiters wake, callbacks run once."""

from __future__ import annotations

import threading

from echo_service.engine import CancellationToken
from echo_service.engine._context import CancelCause


def test_a_waiter_wakes_when_the_token_is_cancelled() -> None:
    token = CancellationToken()
    woke: list[bool] = []
    waiting = threading.Thread(target=lambda: woke.append(token.wait(10)))
    waiting.start()

    assert token.cancel(CancelCause.CANCEL, "stop")
    waiting.join(10)

    assert woke == [True]
    assert (token.cancelled, token.cause, token.reason) == (
        True,
        CancelCause.CANCEL,
        "stop",
    )


def test_a_wait_after_the_cancel_returns_at_once_and_a_second_cancel_loses() -> None:
    token = CancellationToken()
    calls: list[int] = []
    token.on_cancel(lambda: calls.append(1))

    assert token.cancel(CancelCause.TIMEOUT)
    assert not token.cancel(CancelCause.CANCEL, "late")

    assert token.wait(0) and token.wait(None)
    assert token.cause is CancelCause.TIMEOUT
    token.on_cancel(lambda: calls.append(2))  # already cancelled: runs now
    assert calls == [1, 2]


def test_an_uncancelled_token_times_out_its_wait() -> None:
    token = CancellationToken()

    assert not token.wait(0.01)
    assert not token.cancelled
